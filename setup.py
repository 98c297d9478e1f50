"""Packaging for vaezoo. `pip install .` installs the library and the `vaezoo` command."""

from setuptools import find_packages, setup

setup(
    name="vaezoo",
    version="0.1.0",
    description="A TensorFlow / Keras 3 model zoo of variational autoencoders with serving exports.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["vaezoo", "vaezoo.*"]) + ["vaezoo.zoo_configs"],
    # the zoo's cards live at the repository root (zoo_configs/) and install inside the package
    package_dir={"vaezoo.zoo_configs": "zoo_configs"},
    package_data={"vaezoo": ["pretrained/*", "configs/*.yaml"], "vaezoo.zoo_configs": ["*.yaml"]},
    install_requires=[
        # Tested with TensorFlow 2.21, Keras 3.15, TFP 0.25 (see README).
        "tensorflow>=2.16,<2.22",
        "tensorflow-probability[tf]>=0.24",
        "keras>=3.0",
        "tensorflow-datasets>=4.9",
        "tensorboard>=2.16",
        "ai-edge-litert>=1.0",
        "pyyaml>=6.0",
        "pillow>=10.0",
        "numpy>=1.26",
        "constriction>=0.4",  # entropy coding of .vqz files (vaezoo.codec)
    ],
    extras_require={
        "notebooks": ["nbclient>=0.10", "nbformat>=5", "ipykernel>=6", "matplotlib>=3.8"],
        "test": ["pytest>=8", "hypothesis>=6", "nbclient>=0.10", "nbformat>=5", "ipykernel>=6", "matplotlib>=3.8",
                 "tensorflow-serving-api>=2.16,<2.22", "grpcio>=1.60", "huggingface_hub>=1.0", "kagglehub>=0.3.13",
                 "scikit-image>=0.22",  # its bundled sample photos (tests/test_codec.py: large images)
                 "bjontegaard>=1.3"],  # BD-rate (tests/test_rate_distortion.py)
        # benchmarks/: sample photos, plots and BD-rate (benchmarks/rate_distortion.py); tested with
        # scikit-image 0.26, matplotlib 3.11, bjontegaard 1.3.0
        "benchmarks": ["scikit-image>=0.22", "matplotlib>=3.8", "bjontegaard>=1.3"],
        # hf:// and kaggle:// model URIs and `vaezoo upload` (vaezoo.hub); tested with
        # huggingface_hub 2.4 and kagglehub 1.0.3
        "hub": ["huggingface_hub>=1.0", "kagglehub>=0.3.13"],
        # gRPC client (vaezoo.serving.GrpcClient). tensorflow-serving-api X.Y requires
        # tensorflow >= X.Y, so its bound follows tensorflow's (<2.22): 2.21 with TF 2.21.
        "serving": ["tensorflow-serving-api>=2.16,<2.22", "grpcio>=1.60"],
    },
    entry_points={"console_scripts": ["vaezoo=vaezoo.cli:main"]},
    license="Apache-2.0",
)
