"""Make the README's pictures with the `vaezoo` commands shown under them.

Inputs are real test images from tests/fixtures (MNIST test, CIFAR-10 (JPEG q75 copy) test)
and one rendered dSprites image, written to docs/images/inputs/ as PNG files first, as a
user's files would be.

    python scripts/readme_pictures.py
"""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from vaezoo.data import DSprites

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IMAGES = os.path.join(ROOT, "docs", "images")

COMMANDS = [
    "vaezoo sample cvae-mnist -n 40 --columns 10 -o docs/images/cvae-mnist-samples.png",
    "vaezoo sample vae-mnist -n 32 -o docs/images/vae-mnist-samples.png",
    "vaezoo reconstruct vae-mnist docs/images/inputs/mnist_0.png docs/images/inputs/mnist_1.png "
    "docs/images/inputs/mnist_2.png docs/images/inputs/mnist_3.png docs/images/inputs/mnist_4.png "
    "docs/images/inputs/mnist_5.png -o docs/images/vae-mnist-reconstructions.png",
    "vaezoo interpolate vae-mnist docs/images/inputs/mnist_0.png docs/images/inputs/mnist_1.png --steps 10 "
    "-o docs/images/vae-mnist-interpolation.png",
    "vaezoo sample hvae-mnist -n 32 -o docs/images/hvae-mnist-samples.png",
    "vaezoo sample vq-vae-cifar -n 32 -o docs/images/vq-vae-cifar-samples.png",
    "vaezoo reconstruct vq-vae-cifar " + " ".join(f"docs/images/inputs/cifar_{i}.png" for i in range(8))
    + " -o docs/images/vq-vae-cifar-reconstructions.png",
    "vaezoo traverse beta-vae-dsprites --image docs/images/inputs/dsprites_0.png "
    "-o docs/images/beta-vae-dsprites-traversals.png",
    "vaezoo reconstruct rq-vae-cifar " + " ".join(f"docs/images/inputs/cifar_{i}.png" for i in range(8))
    + " --quality 1 2 3 4 5 6 7 8 -o docs/images/rq-vae-cifar-qualities.png",
]


def write_inputs():
    folder = os.path.join(IMAGES, "inputs")
    os.makedirs(folder, exist_ok=True)
    with np.load(os.path.join(ROOT, "tests", "fixtures", "mnist_test_200.npz")) as d:
        for i in range(6):
            Image.fromarray(d["x"][i].squeeze()).save(os.path.join(folder, f"mnist_{i}.png"))
    with np.load(os.path.join(ROOT, "tests", "fixtures", "cifar10_jpeg_test_200.npz")) as d:
        for i in range(8):  # one image from each of the first 8 classes
            Image.fromarray(d["x"][20 * i]).save(os.path.join(folder, f"cifar_{i}.png"))
    sprites = DSprites()  # a heart, scale 0.8, orientation 0, left of centre, upper half
    index = sprites.index_of([[2, 3, 0, 10, 12]])
    Image.fromarray(sprites.render(index)[0, ..., 0] * np.uint8(255)).save(os.path.join(folder, "dsprites_0.png"))


DEMO_COMMAND = "vaezoo demo --workdir {workdir}"


def demo_picture():
    """Run README command 1 in a fresh workdir; keep its picture and the metrics it printed.

    docs/images/demo.json records the run (the Trainer's metrics.json, plus command, date,
    hardware and code revision); scripts/readme_tables.py writes the README caption from it.
    """
    import datetime
    import json
    import shutil
    import tempfile

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from common import git_revision, hardware_description

    with tempfile.TemporaryDirectory() as workdir:
        command = DEMO_COMMAND.format(workdir=workdir)
        print("$", command, flush=True)
        subprocess.run(command.split(), cwd=ROOT, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        shutil.copyfile(os.path.join(workdir, "demo.png"), os.path.join(IMAGES, "demo.png"))
        with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        metrics.pop("picture", None)  # a path inside the temporary workdir
    record = {"command": DEMO_COMMAND.format(workdir="demo"), "metrics": metrics,
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "hardware": hardware_description(), "code": git_revision()}
    with open(os.path.join(IMAGES, "demo.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"ELBO {metrics['elbo']:.2f} nats -> docs/images/demo.png, docs/images/demo.json")


def main():
    """`python scripts/readme_pictures.py [NAME ...]`: all pictures, or those whose command
    mentions a NAME (`demo` for the demo picture)."""
    write_inputs()
    only = sys.argv[1:]
    if not only or "demo" in only:
        demo_picture()
    for command in COMMANDS:
        if only and not any(name in command for name in only):
            continue
        print("$", command, flush=True)
        subprocess.run(command.split(), cwd=ROOT, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


if __name__ == "__main__":
    main()
