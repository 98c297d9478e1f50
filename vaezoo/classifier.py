"""The reference classifier used to score class-conditional samples (CVAE conditional accuracy).

The architecture is defined here, from a plain config, so shipped weights load into it
without any pickled code: `load_reference_classifier("mnist")` builds the network from the
config stored beside the weights (`vaezoo/pretrained/mnist_classifier.json`) and loads
`mnist_classifier.weights.h5`. `scripts/train_reference_classifier.py` trains and writes both.

Example:
    >>> from vaezoo.classifier import load_reference_classifier
    >>> classifier = load_reference_classifier("mnist")   # float images in [0, 1], (n, 28, 28, 1)
    >>> logits = classifier(x_test[:8] / 255.0)           # (8, 10)
    >>> vaezoo.evaluation.conditional_accuracy(cvae, classifier, samples_per_class=100)
"""

import json
import os

from vaezoo import validation

#: the default architecture (a small two-block CNN; 98.2% MNIST test accuracy after one epoch).
DEFAULT_CONFIG = {
    "input_shape": [28, 28, 1],
    "num_classes": 10,
    "filters": [32, 64],
    "hidden": 128,
    "dropout": 0.25,
}
#: name -> file stem of shipped reference classifiers in vaezoo/pretrained/.
PRETRAINED = {"mnist": "mnist_classifier"}


def pretrained_dir():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")


def build_classifier(input_shape=(28, 28, 1), num_classes=10, filters=(32, 64), hidden=128, dropout=0.25,
                     name="reference_classifier"):
    """A small CNN classifier: float images in [0, 1] `(batch, *input_shape)` -> `(batch, K)` logits.

    Per entry of `filters`: a 3x3 conv (ReLU) and a 2x2 max-pool; then dropout, a dense layer
    of `hidden` units (ReLU), dropout and the logits.

    Args:
        input_shape: image shape `(height, width, channels)`.
        num_classes: number of classes K.
        filters: channels of each conv block.
        hidden: width of the dense layer.
        dropout: dropout rate in training.
    """
    import keras

    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}.")
    validation.check_int("num_classes", num_classes, 2)
    validation.check_int("hidden", hidden, 1)
    for f in filters:
        validation.check_int("filters entries", f, 1)
    validation.check_positive("dropout", dropout, allow_zero=True)
    layers = [keras.Input(input_shape)]
    for f in filters:
        layers += [keras.layers.Conv2D(int(f), 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(2)]
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(int(hidden), activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(int(num_classes), name="logits"),
    ]
    return keras.Sequential(layers, name=name)


def load_reference_classifier(name="mnist", weights=None, config=None):
    """A reference classifier with its weights, built from its config (no code is loaded).

    Args:
        name: a shipped classifier (`PRETRAINED`), used when `weights` is not given.
        weights: path to a `.weights.h5` file; its config is read from the `.json` beside it
            (same stem) if present, else `config` or `DEFAULT_CONFIG`.
        config: architecture arguments of `build_classifier` (overrides the stored config).

    Raises:
        FileNotFoundError: no weights file (the message says how to train one).
    """
    if weights is None:
        if name not in PRETRAINED:
            raise ValueError(f"Unknown reference classifier {name!r}; shipped: {', '.join(sorted(PRETRAINED))}.")
        weights = os.path.join(pretrained_dir(), f"{PRETRAINED[name]}.weights.h5")
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"No classifier weights at {weights!r}. Train them with "
            "`python scripts/train_reference_classifier.py --data PATH/TO/mnist.npz`."
        )
    stored = {}
    sidecar = weights[: -len(".weights.h5")] + ".json" if weights.endswith(".weights.h5") else None
    if sidecar and os.path.isfile(sidecar):
        with open(sidecar, encoding="utf-8") as f:
            stored = json.load(f).get("config", {})
    arguments = {**DEFAULT_CONFIG, **stored, **(config or {})}
    model = build_classifier(**arguments)
    model.load_weights(weights)
    return model
