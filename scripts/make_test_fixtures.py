"""Write the small real-image fixtures the tests ship (tests/fixtures/*.npz) from ../shared/data.

MNIST and Fashion-MNIST: the first 200 test images (original order) and labels.
CIFAR-10 (JPEG q75 copy): the first 20 test images of each class (200), decoded to uint8.

    python scripts/make_test_fixtures.py
"""

import os

import numpy as np

from vaezoo.data import load_image_tar, load_npz

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHARED = os.path.join(ROOT, "..", "shared", "data")
OUT = os.path.join(ROOT, "tests", "fixtures")


def main():
    os.makedirs(OUT, exist_ok=True)
    x, y = load_npz(os.path.join(SHARED, "mnist.npz"), "x_test", "y_test")
    np.savez_compressed(os.path.join(OUT, "mnist_test_200.npz"), x=x[:200], y=y[:200])
    x, y = load_npz(os.path.join(SHARED, "fashion_mnist.npz"), "x_test", "y_test")
    np.savez_compressed(os.path.join(OUT, "fashion_mnist_test_200.npz"), x=x[:200], y=y[:200])
    x, y = load_image_tar(os.path.join(SHARED, "cifar10_jpeg.tar.gz"), "test")
    pick = np.concatenate([np.flatnonzero(y == c)[:20] for c in range(10)])
    np.savez_compressed(os.path.join(OUT, "cifar10_jpeg_test_200.npz"), x=x[pick], y=y[pick])
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
