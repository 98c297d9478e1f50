"""Training throughput side by side: vaezoo's Trainer against the usual alternatives.

Same architecture, batch and data for every peer, measured in one run:

- `vaezoo`: `vaezoo.training.Trainer`'s compiled train step (tf.data input pipeline included).
- `keras-fit`: a plain Keras 3 `keras.Model` subclass with a `GradientTape` `train_step`, as
  the keras.io VAE and VQ-VAE examples write it, trained with `model.fit` on an in-memory
  `tf.data` pipeline. It uses vaezoo's network builders, so the layers are identical.
- `sonnet` (VQ-VAE only): `dm-sonnet`'s `snt.nets.VectorQuantizerEMA` between the same Keras
  encoder and decoder, trained by a `tf.function` GradientTape step as in Sonnet's example.
- `pytorch`: a plain PyTorch module with the same layers and padding (parameter counts and
  output shapes are tested equal by tests/test_benchmarks.py where PyTorch is installed;
  skipped otherwise; initializers are each framework's defaults), Adam,
  a hand-written loop over in-memory tensors (the cheapest input path of all peers).
- `pythae` (if installed): pythae's `VAE` / `VQVAE(use_ema=True)` models with the same
  encoder and decoder as pythae `BaseEncoder`/`BaseDecoder`s, stepped by the same torch loop
  (pythae's own trainer adds logging and checkpointing on top of exactly this forward/loss).

Peers that are not installed are reported as `n/a`; the run in RESULTS.md had them installed
with `pip install torch==2.13.0 pythae dm-sonnet` (the CPU build of torch).

Models: a Gaussian conv VAE on 28x28x1 (encoder 2 stride-2 4x4 convs [32, 64], dense 256,
16 latents; Gaussian likelihood with scale 0.1) and the VQ-VAE of the Sonnet CIFAR-10 example on
32x32x3 (128 hidden channels, 2 residual blocks of 32, 512 codes of dimension 64, EMA codebook
with decay 0.99, commitment 0.25). TensorFlow peers run with XLA off and on (`jit_compile`);
PyTorch peers run eagerly (XLA does not apply; their xla column reads `n/a`).

Every measurement runs in its own subprocess (no thread pool, graph cache or allocator shared
between peers); the first steps (tracing, compilation) are not timed. One process's figure
varies by several percent on a small machine, so each row is measured `--repeats` times,
interleaved round-robin over the rows (slow drifts of the machine hit every peer alike), and
the table gives the median with the range. Prints the table with images/s and the ratio of the
medians to the fastest peer of the same model, and appends it to benchmarks/RESULTS.md.

    python benchmarks/peer_throughput.py                      # default: ~7 minutes on 2 cores
    python benchmarks/peer_throughput.py --full               # batch 128, 100 steps (GPU)
    python benchmarks/peer_throughput.py --peers vaezoo keras-fit --models vae-conv-28
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, hardware_description, markdown_table  # noqa: E402

VAE = {"input_shape": [28, 28, 1], "latent_dim": 16, "filters": [32, 64], "hidden": 256, "scale": 0.1}
VQ = {"input_shape": [32, 32, 3], "hidden": 128, "residual": 32, "blocks": 2, "codes": 512, "code_dim": 64,
      "decay": 0.99, "commitment": 0.25}
MODELS = ("vae-conv-28", "vqvae-32")
PEERS = ("vaezoo", "keras-fit", "sonnet", "pytorch", "pythae")
TORCH_PEERS = ("pytorch", "pythae")


def _images(model, count, seed=0):
    import numpy as np

    shape = VAE["input_shape"] if model == "vae-conv-28" else VQ["input_shape"]
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


# --------------------------------------------------------------------------- TensorFlow peers
def _vaezoo_spec(model):
    if model == "vae-conv-28":
        return {"class": "VAE", "config": {
            "input_shape": VAE["input_shape"], "latent_dim": VAE["latent_dim"],
            "likelihood": {"type": "gaussian", "scale": VAE["scale"]},
            "encoder": {"type": "conv", "filters": VAE["filters"], "hidden": VAE["hidden"]}}}
    return {"class": "VQVAE", "config": {
        "input_shape": VQ["input_shape"], "num_embeddings": VQ["codes"], "embedding_dim": VQ["code_dim"],
        "hidden_channels": VQ["hidden"], "residual_channels": VQ["residual"],
        "num_residual_blocks": VQ["blocks"], "commitment_cost": VQ["commitment"], "ema": True,
        "decay": VQ["decay"], "prior": None}}


def run_vaezoo(model, xla, batch_size, steps, warmup):
    from train_throughput import measure

    shape = tuple(VAE["input_shape"] if model == "vae-conv-28" else VQ["input_shape"])
    return measure(_vaezoo_spec(model), shape, "one_device", xla, batch_size, steps, warmup, 1)["images_per_s"]


def _tf_dataset(model, batch_size):
    import tensorflow as tf

    images = _images(model, 512).astype("float32") / 255.0
    return tf.data.Dataset.from_tensor_slices(images).cache().repeat().shuffle(512).batch(
        batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _keras_networks(model):
    """The exact encoder/decoder Keras layers vaezoo builds (fresh, untrained)."""
    from vaezoo import networks
    from vaezoo.models.vqvae import VQVAE

    if model == "vae-conv-28":
        spec = {"type": "conv", "filters": VAE["filters"], "hidden": VAE["hidden"]}
        return (networks.build_encoder(spec, VAE["input_shape"], 2 * VAE["latent_dim"]),
                networks.build_decoder(spec, VAE["latent_dim"], VAE["input_shape"]))
    vq = VQVAE(**_vaezoo_spec(model)["config"])
    return vq.encoder, vq.decoder


def _gaussian_nll(x, mean):
    import tensorflow as tf

    scale = VAE["scale"]
    per_pixel = 0.5 * tf.square((x - mean) / scale) + math.log(scale) + 0.5 * math.log(2 * math.pi)
    return tf.reduce_sum(per_pixel, axis=[1, 2, 3])


def _tape_model(encoder, decoder, loss_fn, quantizer=None):
    """A keras.io-style model: `train_step` with a GradientTape around `loss_fn(self, x)`."""
    import keras
    import tensorflow as tf

    class TapeModel(keras.Model):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = encoder, decoder
            self.quantizer = quantizer
            self.quantizer_layer = quantizer.layer if quantizer else None  # tracks its variables
            self.loss_tracker = keras.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.loss_tracker]

        def train_step(self, x):
            with tf.GradientTape() as tape:
                loss = loss_fn(self, x)
            grads = tape.gradient(loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

    return TapeModel()


def _keras_vae(model):
    """The keras.io VAE objective: reparameterised sample, Gaussian NLL plus analytic KL."""
    import tensorflow as tf

    def loss_fn(net, x):
        mean, raw_scale = tf.split(net.encoder(x), 2, axis=-1)
        std = tf.nn.softplus(raw_scale) + 1e-4
        z = mean + std * tf.random.normal(tf.shape(mean))
        nll = _gaussian_nll(x, net.decoder(z))
        kl = tf.reduce_sum(0.5 * (tf.square(mean) + tf.square(std) - 1.0) - tf.math.log(std), axis=-1)
        return tf.reduce_mean(nll + kl)

    return _tape_model(*_keras_networks(model), loss_fn)


class _KerasEMAQuantizer:
    """Nearest-code lookup with EMA codebook updates, written as the keras.io VQ-VAE layer plus EMA."""

    def __init__(self):
        import keras

        codes, dim = VQ["codes"], VQ["code_dim"]
        init = keras.initializers.VarianceScaling(distribution="uniform")
        self.layer = keras.layers.Layer()
        self.embeddings = self.layer.add_weight(shape=(dim, codes), initializer=init, trainable=False, name="embeddings")
        self.cluster_size = self.layer.add_weight(shape=(codes,), initializer="zeros", trainable=False, name="n")
        self.embed_sum = self.layer.add_weight(shape=(dim, codes), initializer="zeros", trainable=False, name="sum")
        self.embed_sum.assign(self.embeddings)

    def __call__(self, z):
        import tensorflow as tf

        flat = tf.reshape(z, [-1, VQ["code_dim"]])
        distances = (tf.reduce_sum(flat**2, 1, keepdims=True) - 2 * flat @ self.embeddings
                     + tf.reduce_sum(self.embeddings**2, 0, keepdims=True))
        onehot = tf.one_hot(tf.argmin(distances, axis=1), VQ["codes"])
        quantized = tf.reshape(onehot @ tf.transpose(self.embeddings), tf.shape(z))
        decay = VQ["decay"]
        self.cluster_size.assign(decay * self.cluster_size + (1 - decay) * tf.reduce_sum(onehot, 0))
        self.embed_sum.assign(decay * self.embed_sum + (1 - decay) * tf.transpose(flat) @ onehot)
        n = tf.reduce_sum(self.cluster_size)
        smoothed = (self.cluster_size + 1e-5) / (n + VQ["codes"] * 1e-5) * n
        self.embeddings.assign(self.embed_sum / smoothed)
        commitment = tf.reduce_mean(tf.square(z - tf.stop_gradient(quantized)))
        return z + tf.stop_gradient(quantized - z), commitment


def _keras_vqvae(model):
    """The Sonnet example's VQ-VAE objective: MSE over the data variance plus commitment."""
    import tensorflow as tf

    def loss_fn(net, x):
        quantized, commitment = net.quantizer(net.encoder(x))
        return tf.reduce_mean(tf.square(net.decoder(quantized) - x)) / 0.06 + VQ["commitment"] * commitment

    return _tape_model(*_keras_networks(model), loss_fn, quantizer=_KerasEMAQuantizer())


def run_keras_fit(model, xla, batch_size, steps, warmup):
    import keras

    net = _keras_vae(model) if model == "vae-conv-28" else _keras_vqvae(model)
    net.compile(optimizer=keras.optimizers.Adam(3e-4), jit_compile=xla)
    dataset = _tf_dataset(model, batch_size)
    net.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    net.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def run_sonnet(model, xla, batch_size, steps, warmup):
    import keras
    import sonnet as snt
    import tensorflow as tf

    if model != "vqvae-32":
        raise ValueError("the sonnet peer is the VQ-VAE only")
    encoder, decoder = _keras_networks(model)
    quantizer = snt.nets.VectorQuantizerEMA(embedding_dim=VQ["code_dim"], num_embeddings=VQ["codes"],
                                           commitment_cost=VQ["commitment"], decay=VQ["decay"])
    optimizer = keras.optimizers.Adam(3e-4)

    @tf.function(jit_compile=xla)
    def train_step(x):
        with tf.GradientTape() as tape:
            vq = quantizer(encoder(x), is_training=True)
            recon = tf.reduce_mean(tf.square(decoder(vq["quantize"]) - x)) / 0.06
            loss = recon + vq["loss"]
        variables = encoder.trainable_weights + decoder.trainable_weights
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    iterator = iter(_tf_dataset(model, batch_size))
    for _ in range(warmup):
        float(train_step(next(iterator)))
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(next(iterator))
    float(loss)
    return steps * batch_size / (time.perf_counter() - start)


# --------------------------------------------------------------------------- PyTorch peers
def _torch_networks(model):
    """The same layers as vaezoo's Keras networks, in PyTorch (channels first)."""
    from torch import nn

    if model == "vae-conv-28":
        f1, f2 = VAE["filters"]
        encoder = nn.Sequential(
            nn.Conv2d(1, f1, 4, 2, 1), nn.ReLU(), nn.Conv2d(f1, f2, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(f2 * 7 * 7, VAE["hidden"]), nn.ReLU(), nn.Linear(VAE["hidden"], 2 * VAE["latent_dim"]))
        decoder = nn.Sequential(
            nn.Linear(VAE["latent_dim"], VAE["hidden"]), nn.ReLU(), nn.Linear(VAE["hidden"], 7 * 7 * f2), nn.ReLU(),
            nn.Unflatten(1, (f2, 7, 7)), nn.ConvTranspose2d(f2, f1, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(f1, f1, 4, 2, 1), nn.ReLU(), nn.Conv2d(f1, 1, 3, 1, 1))
        return encoder, decoder

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(VQ["hidden"], VQ["residual"], 3, 1, 1), nn.ReLU(),
                                      nn.Conv2d(VQ["residual"], VQ["hidden"], 1))

        def forward(self, x):
            return x + self.body(x)

    h = VQ["hidden"]
    stack = lambda: [*(Residual() for _ in range(VQ["blocks"])), nn.ReLU()]  # noqa: E731
    encoder = nn.Sequential(nn.Conv2d(3, h // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(h // 2, h, 4, 2, 1), nn.ReLU(),
                            nn.Conv2d(h, h, 3, 1, 1), *stack(), nn.Conv2d(h, VQ["code_dim"], 1))
    decoder = nn.Sequential(nn.Conv2d(VQ["code_dim"], h, 3, 1, 1), *stack(), nn.ConvTranspose2d(h, h // 2, 4, 2, 1),
                            nn.ReLU(), nn.ConvTranspose2d(h // 2, 3, 4, 2, 1))
    return encoder, decoder


class _TorchEMAQuantizer:
    def __init__(self):
        import torch

        self.embeddings = torch.randn(VQ["codes"], VQ["code_dim"]) * 0.1
        self.cluster_size = torch.zeros(VQ["codes"])
        self.embed_sum = self.embeddings.clone()

    def __call__(self, z):
        import torch

        flat = z.permute(0, 2, 3, 1).reshape(-1, VQ["code_dim"])
        distances = torch.cdist(flat, self.embeddings)
        onehot = torch.nn.functional.one_hot(distances.argmin(1), VQ["codes"]).float()
        quantized = (onehot @ self.embeddings).view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        with torch.no_grad():
            decay = VQ["decay"]
            self.cluster_size.mul_(decay).add_(onehot.sum(0), alpha=1 - decay)
            self.embed_sum.mul_(decay).add_(onehot.t() @ flat, alpha=1 - decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + 1e-5) / (n + VQ["codes"] * 1e-5) * n
            self.embeddings = self.embed_sum / smoothed[:, None]
        commitment = torch.mean((z - quantized.detach()) ** 2)
        return z + (quantized - z).detach(), commitment


def _torch_loss_fn(model, peer):
    """(parameters, loss(x)) for the plain module or the pythae model."""
    import torch

    encoder, decoder = _torch_networks(model)
    if peer == "pythae":
        return _pythae_loss_fn(model, encoder, decoder)
    if model == "vae-conv-28":
        def loss(x):
            mean, raw_scale = encoder(x).chunk(2, dim=1)
            std = torch.nn.functional.softplus(raw_scale) + 1e-4
            z = mean + std * torch.randn_like(std)
            scale = VAE["scale"]
            nll = (0.5 * ((x - decoder(z)) / scale) ** 2 + math.log(scale) + 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))
            kl = (0.5 * (mean**2 + std**2 - 1) - std.log()).sum(1)
            return (nll + kl).mean()
    else:
        quantizer = _TorchEMAQuantizer()

        def loss(x):
            quantized, commitment = quantizer(encoder(x))
            return torch.mean((decoder(quantized) - x) ** 2) / 0.06 + VQ["commitment"] * commitment
    return [*encoder.parameters(), *decoder.parameters()], loss


def _pythae_loss_fn(model, encoder, decoder):
    from pythae.models import VAE as PythaeVAE
    from pythae.models import VAEConfig, VQVAE, VQVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, net, split):
            super().__init__()
            self.net, self.split = net, split

        def forward(self, x):
            out = self.net(x)
            if self.split:
                mean, log_var = out.chunk(2, dim=1)
                return ModelOutput(embedding=mean, log_covariance=log_var)
            return ModelOutput(embedding=out)

    class Decoder(BaseDecoder):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    if model == "vae-conv-28":
        config = VAEConfig(input_dim=(1, 28, 28), latent_dim=VAE["latent_dim"], reconstruction_loss="mse")
        net = PythaeVAE(config, encoder=Encoder(encoder, True), decoder=Decoder(decoder))
    else:
        config = VQVAEConfig(input_dim=(3, 32, 32), latent_dim=VQ["code_dim"], num_embeddings=VQ["codes"],
                             commitment_loss_factor=VQ["commitment"], use_ema=True, decay=VQ["decay"])
        net = VQVAE(config, encoder=Encoder(encoder, False), decoder=Decoder(decoder))
    net.train()
    return list(net.parameters()), lambda x: net({"data": x}, epoch=1).loss


def run_torch(model, peer, batch_size, steps, warmup):
    import torch

    torch.manual_seed(0)
    images = torch.from_numpy(_images(model, 512)).float().div(255.0).permute(0, 3, 1, 2).contiguous()
    batches = [images[i:i + batch_size] for i in range(0, len(images) - batch_size + 1, batch_size)]
    parameters, loss_fn = _torch_loss_fn(model, peer)
    optimizer = torch.optim.Adam(parameters, lr=3e-4)

    def step(i):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(batches[i % len(batches)])
        loss.backward()
        optimizer.step()
        return loss

    for i in range(warmup):
        float(step(i))
    start = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    float(loss)
    return steps * batch_size / (time.perf_counter() - start)


# --------------------------------------------------------------------------- driver
def run_one(model, peer, xla, batch_size, steps, warmup):
    """Images/s of one (model, peer, xla) row, in this process."""
    if peer in TORCH_PEERS:
        return run_torch(model, peer, batch_size, steps, warmup)
    runner = {"vaezoo": run_vaezoo, "keras-fit": run_keras_fit, "sonnet": run_sonnet}[peer]
    return runner(model, xla, batch_size, steps, warmup)


def _available(peer):
    module = {"sonnet": "sonnet", "pytorch": "torch", "pythae": "pythae"}.get(peer)
    if module is None:
        return None
    import importlib.util

    return None if importlib.util.find_spec(module) else f"n/a ({module} is not installed)"


def _rows(args):
    for model in args.models:
        for peer in args.peers:
            if peer == "sonnet" and model != "vqvae-32":
                continue
            for xla in ((None,) if peer in TORCH_PEERS else (False, True)):
                yield model, peer, xla


def _xla_label(xla):
    return "n/a" if xla is None else ("on" if xla else "off")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per row (median reported)")
    parser.add_argument("--full", action="store_true", help="batch 128 and 100 timed steps (for a GPU)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one row, print JSON
    args = parser.parse_args()
    if args.full:
        args.batch_size, args.steps = 128, 100
    if args.one:
        model, peer, xla = json.loads(args.one)
        print("RESULT " + json.dumps(run_one(model, peer, xla, args.batch_size, args.steps, args.warmup)))
        return

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = [{"model": model, "peer": peer, "xla": _xla_label(xla), "_key": (model, peer, xla), "_runs": []}
            for model, peer, xla in _rows(args)]
    for row in rows:
        row["images/s"] = _available(row["peer"]) or ""
    for repeat in range(args.repeats):
        for row in rows:
            if row["images/s"]:  # not installed, or failed before
                continue
            command = [sys.executable, os.path.abspath(__file__), "--one", json.dumps(row["_key"]),
                       "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                       "--warmup", str(args.warmup)]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not results:
                reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:120]
                row["images/s"] = f"failed: {reason}"
            else:
                row["_runs"].append(json.loads(results[-1][len("RESULT "):]))
            print(f"[{repeat + 1}/{args.repeats}] {row['model']:12s} {row['peer']:10s} xla={row['xla']:3s} "
                  f"{row['images/s'] or round(row['_runs'][-1], 1)}", flush=True)
    for row in rows:
        if not row["images/s"]:
            row["images/s"] = statistics.median(row["_runs"])
            row["range"] = f"{min(row['_runs']):.0f}-{max(row['_runs']):.0f}"
    for model in args.models:
        measured = [r for r in rows if r["model"] == model and isinstance(r["images/s"], float)]
        best = max((r["images/s"] for r in measured), default=None)
        for r in measured:
            r["ratio to fastest"] = r["images/s"] / best
    table = markdown_table(rows, ["model", "peer", "xla", "images/s", "range", "ratio to fastest"])
    print(table)
    append_results(
        "Training throughput: vaezoo vs plain Keras fit, dm-sonnet, PyTorch and pythae", table,
        protocol=(f"same architecture and synthetic uint8 images for every peer (Gaussian conv VAE 28x28x1, "
                  f"[32, 64] convs, dense 256, 16 latents; Sonnet-example VQ-VAE 32x32x3, 128 channels, 2 residual "
                  f"blocks, 512x64 EMA codebook); batch {args.batch_size}, {args.steps} timed steps after "
                  f"{args.warmup} warm-up steps, Adam; one process per measurement, median of {args.repeats} "
                  f"interleaved measurements per row (range = min-max); one device"),
        hardware=hardware_description() + _torch_version())


def _torch_version():
    try:
        import torch

        return f"; PyTorch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        return ""


if __name__ == "__main__":
    main()
