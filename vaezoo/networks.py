"""Encoder and decoder backbones (MLP, conv, residual) built from plain config dicts.

A spec is a dict with a `type` and that type's options, e.g.
`{"type": "conv", "filters": [32, 64], "hidden": 256}`. Encoders map images to a flat vector
of `output_size` raw parameters; decoders map a flat latent to an image-shaped tensor of raw
likelihood parameters. Conv and residual nets halve the spatial size once per entry in
`filters`, so any height and width divisible by `2 ** len(filters)` works. `activation`
(default `"relu"`) is the nonlinearity of the conv and dense layers; residual blocks keep ReLU
as in the VQ-VAE paper. On sparse images such as dSprites (96% background), a ReLU encoder can
die early in training (every unit inactive, the posterior constant); `vaezoo demo` uses
`"leaky_relu"` for that reason.
"""

import keras

from vaezoo.validation import ConfigError, check_keys

DEFAULTS = {
    "mlp": {"hidden": [512, 256], "activation": "relu"},
    "conv": {"filters": [32, 64], "hidden": 256, "activation": "relu"},
    "resnet": {"filters": [64, 128], "blocks": 2, "hidden": 256, "activation": "relu"},
}


@keras.saving.register_keras_serializable(package="vaezoo")
class ResidualBlock(keras.layers.Layer):
    """`x + conv1x1(relu(conv3x3(relu(x))))`, the block of the VQ-VAE paper.

    Args:
        channels: channels of the input and output.
        hidden_channels: channels of the 3x3 conv (default: `channels`).

    Example:
        >>> block = ResidualBlock(64, 32)
        >>> block(keras.ops.zeros([1, 8, 8, 64])).shape
        (1, 8, 8, 64)
    """

    def __init__(self, channels, hidden_channels=None, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.hidden_channels = int(hidden_channels or channels)
        self.conv3 = keras.layers.Conv2D(self.hidden_channels, 3, padding="same")
        self.conv1 = keras.layers.Conv2D(self.channels, 1)

    def call(self, x):
        h = self.conv3(keras.ops.relu(x))
        return x + self.conv1(keras.ops.relu(h))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "hidden_channels": self.hidden_channels}


def resolve_spec(spec):
    """Fill a network spec with defaults and check its keys; returns a new dict."""
    spec = {"type": spec} if isinstance(spec, str) else dict(spec or {"type": "conv"})
    kind = spec.get("type", "conv")
    if kind not in DEFAULTS:
        raise ConfigError(f"Unknown network type {kind!r}; expected one of {sorted(DEFAULTS)}.")
    check_keys(spec, {"type", *DEFAULTS[kind]}, f"{kind} network spec")
    spec = {"type": kind, **DEFAULTS[kind], **spec}
    try:
        keras.activations.get(spec["activation"])
    except (ValueError, TypeError):
        raise ConfigError(f"Unknown activation {spec['activation']!r} in {kind} network spec; expected a Keras "
                          "activation name such as 'relu', 'leaky_relu', 'elu' or 'silu'.") from None
    return spec


def _downsampling(spec, image_shape):
    levels = len(spec["filters"])
    height, width = image_shape[0], image_shape[1]
    factor = 2**levels
    if height % factor or width % factor:
        raise ValueError(
            f"A {spec['type']} network with {levels} stride-2 stages needs height and width "
            f"divisible by {factor}; got image shape {tuple(image_shape)}."
        )
    return height // factor, width // factor


def build_encoder(spec, image_shape, output_size, name="encoder"):
    """Image `(batch, *image_shape)` -> `(batch, output_size)` raw posterior parameters."""
    spec = resolve_spec(spec)
    layers = [keras.Input(tuple(image_shape))]
    if spec["type"] == "mlp":
        layers.append(keras.layers.Flatten())
        layers += [keras.layers.Dense(units, activation=spec["activation"]) for units in spec["hidden"]]
    else:
        _downsampling(spec, image_shape)
        for filters in spec["filters"]:
            layers.append(keras.layers.Conv2D(filters, 4, strides=2, padding="same", activation=spec["activation"]))
            if spec["type"] == "resnet":
                layers += [ResidualBlock(filters, max(filters // 2, 1)) for _ in range(spec["blocks"])]
        layers += [keras.layers.Flatten(), keras.layers.Dense(spec["hidden"], activation=spec["activation"])]
    layers.append(keras.layers.Dense(output_size))
    return keras.Sequential(layers, name=name)


def build_decoder(spec, latent_size, output_shape, name="decoder"):
    """Latent `(batch, latent_size)` -> `(batch, *output_shape)` raw likelihood parameters.

    `output_shape` is `(height, width, params_channels)`.
    """
    spec = resolve_spec(spec)
    height, width, channels = output_shape
    layers = [keras.Input((latent_size,))]
    if spec["type"] == "mlp":
        layers += [keras.layers.Dense(units, activation=spec["activation"]) for units in reversed(spec["hidden"])]
        layers += [keras.layers.Dense(height * width * channels), keras.layers.Reshape(output_shape)]
        return keras.Sequential(layers, name=name)
    small_h, small_w = _downsampling(spec, output_shape)
    filters = list(reversed(spec["filters"]))
    layers += [
        keras.layers.Dense(spec["hidden"], activation=spec["activation"]),
        keras.layers.Dense(small_h * small_w * filters[0], activation=spec["activation"]),
        keras.layers.Reshape((small_h, small_w, filters[0])),
    ]
    for i, f in enumerate(filters):
        if spec["type"] == "resnet":
            layers += [ResidualBlock(f, max(f // 2, 1)) for _ in range(spec["blocks"])]
        out = filters[i + 1] if i + 1 < len(filters) else f
        layers.append(keras.layers.Conv2DTranspose(out, 4, strides=2, padding="same", activation=spec["activation"]))
    layers.append(keras.layers.Conv2D(channels, 3, padding="same"))
    return keras.Sequential(layers, name=name)


def build_conditional_encoder(spec, image_shape, condition_size, output_size, name="encoder"):
    """`[image (batch, *image_shape), condition (batch, condition_size)]` -> `(batch, output_size)`.

    The same backbone as `build_encoder`, with the condition concatenated to the flattened
    features: an MLP sees `[flatten(x), c]` at its input, a conv/resnet net sees
    `[flatten(conv(x)), c]` at its dense layer. So the condition costs `condition_size`
    extra inputs to one Dense layer, however large the image.
    """
    spec = resolve_spec(spec)
    image = keras.Input(tuple(image_shape), name="image")
    condition = keras.Input((int(condition_size),), name="condition")
    h = image
    if spec["type"] == "mlp":
        hidden = list(spec["hidden"])
    else:
        _downsampling(spec, image_shape)
        for filters in spec["filters"]:
            h = keras.layers.Conv2D(filters, 4, strides=2, padding="same", activation=spec["activation"])(h)
            if spec["type"] == "resnet":
                for _ in range(spec["blocks"]):
                    h = ResidualBlock(filters, max(filters // 2, 1))(h)
        hidden = [spec["hidden"]]
    h = keras.layers.Concatenate()([keras.layers.Flatten()(h), condition])
    for units in hidden:
        h = keras.layers.Dense(units, activation=spec["activation"])(h)
    return keras.Model([image, condition], keras.layers.Dense(output_size)(h), name=name)
