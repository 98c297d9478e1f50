"""How far a transform codec trained from scratch on this CPU gets (a feasibility study for issue 16).

    # train one lambda per process (each on one core; resumable: rerun the same command)
    python benchmarks/transform_coding_study.py train --lmbda 0.01 --workdir runs/tc/lam0.01 --steps 16000
    python benchmarks/transform_coding_study.py train --lmbda 0.04 --workdir runs/tc/lam0.04 --steps 16000
    # then: rq-vae-cifar on the same test images, the table, RESULTS.md
    python benchmarks/transform_coding_study.py report runs/tc/lam0.01 runs/tc/lam0.04

Issue 16 asks for a BD-rate of -50% against WebP; `rq-vae-cifar` reaches -29.9%, so its bytes
would have to fall by about 29% at every quality. The levers measured inside the RQ design are
worth a few percent each, and the notes point at "an autoencoder trained for rate and
distortion" instead. This study measures where such a codec gets on this machine: a mean-scale
hyperprior with a masked-convolution spatial context (Balle et al. 2018, Minnen et al. 2018),
trained from scratch on CIFAR-10 (JPEG q75 copy) for `rate + lambda * 255^2 * MSE`, evaluated
every `--eval-every` steps on 1,000 evenly spaced test images.

- Model: analysis 5x5/2 conv, GDN, 5x5/2 conv, GDN, 3x3 conv to an 8 x 8 x `--latent` latent
  y; synthesis mirrored with inverse GDN; hyper-analysis to a 2 x 2 x `--channels`/2 latent z
  (factorized: one discretized logistic per channel); hyper-synthesis and a 5x5 masked
  convolution over y feed 1x1 layers that give each element's Gaussian mean and scale
  (at least 0.11).
- Training: additive uniform noise for the rate, straight-through rounding into the synthesis,
  Adam at 3e-4 then 3e-5 for the last 20% of the steps, batch 32, horizontal flips, gradient
  norm clipped at 5.
- Evaluation (not a file format): y rounded around the hyperprior mean, z rounded around its
  location; the rate is the ideal code length `-log2 P` of every rounded element under the
  discretized Gaussian (y) and logistic (z) -- what an exact range coder would approach -- plus
  18 bytes per image (the 16 a `.vqz` one-image file adds to its payload, and about 2 of
  coder flush). PSNR of the 8-bit decodings.
- Peer in the same report: `rq-vae-cifar`'s one-image `.vqz` files of the same images at every
  quality (real files, code search of width 4), and the bytes it needs at each point's PSNR.

Not a codec and not a zoo model: it answers whether training one here is a path to the goal.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, hardware_description, markdown_table  # noqa: E402

TITLE = "Transform-coding feasibility study: a hyperprior codec trained from scratch here vs rq-vae-cifar (CIFAR-10 (JPEG q75 copy))"
HEADER_BYTES = 18  # a .vqz one-image file's 16 bytes over its payload, and about 2 of range-coder flush
LOG = "log.jsonl"


def cifar_arrays(limit_test=1000):
    """uint8 CIFAR-10 (JPEG q75 copy) training images (all) and `limit_test` evenly spaced test images."""
    from vaezoo import data
    from vaezoo.registry import resolve_model

    spec = resolve_model("rq-vae-cifar").data_spec
    train, _ = data.load_split(spec, "train", limit=0)
    test, _ = data.load_split(spec, "test", limit=limit_test, spread=True)
    as_uint8 = lambda x: np.round(x * 255).astype(np.uint8)  # noqa: E731
    return as_uint8(train), as_uint8(test)


def gaussian_bits(values, mean, scale):
    """Ideal bits of integer-spaced `values` under a Gaussian discretized to unit bins (scale >= 0.11)."""
    import tensorflow as tf

    scale = tf.maximum(scale, 0.11)
    cdf = lambda t: 0.5 * tf.math.erfc(-t / np.sqrt(2.0))  # noqa: E731
    p = cdf((values - mean + 0.5) / scale) - cdf((values - mean - 0.5) / scale)
    return -tf.math.log(tf.maximum(p, 1e-9)) / np.log(2.0)


def logistic_bits(values, location, log_scale):
    """Ideal bits of integer-spaced `values` under a logistic discretized to unit bins."""
    import tensorflow as tf

    s = tf.exp(log_scale)
    p = tf.sigmoid((values - location + 0.5) / s) - tf.sigmoid((values - location - 0.5) / s)
    return -tf.math.log(tf.maximum(p, 1e-9)) / np.log(2.0)


class HyperpriorCodec:
    """The study's codec: analysis/synthesis with GDN, a hyperprior and a masked-conv context.

    Args:
        channels: convolution channels N (the hyper-latent has N/2).
        latent: channels M of the 8 x 8 latent (for a 32 x 32 image).

    Example:
        codec = HyperpriorCodec(channels=128, latent=96)
        reconstruction, bits = codec.forward(images, train=False)
    """

    def __init__(self, channels=128, latent=96):
        import tensorflow as tf

        layers, n, m = tf.keras.layers, channels, latent
        gdn, masked = _layer_classes()
        seq = tf.keras.Sequential
        self.latent = m
        self.analysis = seq([layers.Conv2D(n, 5, 2, "same"), gdn(), layers.Conv2D(n, 5, 2, "same"), gdn(),
                             layers.Conv2D(m, 3, 1, "same")])
        self.synthesis = seq([layers.Conv2DTranspose(n, 3, 1, "same"), gdn(True), layers.Conv2DTranspose(n, 5, 2, "same"),
                              gdn(True), layers.Conv2DTranspose(3, 5, 2, "same")])
        self.hyper_analysis = seq([layers.Conv2D(n, 3, 1, "same"), layers.LeakyReLU(), layers.Conv2D(n, 5, 2, "same"),
                                   layers.LeakyReLU(), layers.Conv2D(n // 2, 5, 2, "same")])
        self.hyper_synthesis = seq([layers.Conv2DTranspose(n, 5, 2, "same"), layers.LeakyReLU(),
                                    layers.Conv2DTranspose(n, 5, 2, "same"), layers.LeakyReLU(),
                                    layers.Conv2D(2 * m, 3, 1, "same")])
        self.context = masked(2 * m)
        self.parameters = seq([layers.Conv2D(2 * m, 1), layers.LeakyReLU(), layers.Conv2D(2 * m, 1), layers.LeakyReLU(),
                               layers.Conv2D(2 * m, 1)])
        self.z_location = tf.Variable(tf.zeros(n // 2))
        self.z_log_scale = tf.Variable(tf.zeros(n // 2))

    def trainable_variables(self):
        nets = (self.analysis, self.synthesis, self.hyper_analysis, self.hyper_synthesis, self.context, self.parameters)
        return [v for net in nets for v in net.trainable_variables] + [self.z_location, self.z_log_scale]

    def forward(self, x, train):
        """`(reconstruction, bits per image)`: noisy rates and straight-through rounding when training;
        rounded latents and their ideal code lengths otherwise."""
        import tensorflow as tf

        y = self.analysis(x)
        z = self.hyper_analysis(y)
        if train:
            z_hat = z + tf.random.uniform(tf.shape(z), -0.5, 0.5)
        else:
            z_hat = tf.round(z - self.z_location) + self.z_location
        z_bits = tf.reduce_sum(logistic_bits(z_hat, self.z_location, self.z_log_scale), [1, 2, 3])
        hyper = self.hyper_synthesis(z_hat)
        if train:
            y_hat = y + tf.random.uniform(tf.shape(y), -0.5, 0.5)
        else:  # rounded around the hyperprior's mean, which the decoder has before y
            y_hat = tf.round(y - hyper[..., :self.latent]) + hyper[..., :self.latent]
        params = self.parameters(tf.concat([hyper, self.context(y_hat)], -1))
        mean, scale = params[..., :self.latent], tf.nn.softplus(params[..., self.latent:])
        y_bits = tf.reduce_sum(gaussian_bits(y_hat, mean, scale), [1, 2, 3])
        decoded = y + tf.stop_gradient(tf.round(y) - y) if train else y_hat
        return self.synthesis(decoded), y_bits + z_bits


def _layer_classes():
    import tensorflow as tf

    class GDN(tf.keras.layers.Layer):
        """Generalized divisive normalization (inverse: multiplies), with ReLU-clamped parameters."""

        def __init__(self, inverse=False, **kwargs):
            super().__init__(**kwargs)
            self.inverse = inverse

        def build(self, shape):
            c = shape[-1]
            self.beta = self.add_weight(shape=(c,), initializer="ones", name="beta")
            self.gamma = self.add_weight(shape=(c, c), initializer=tf.keras.initializers.Constant(0.1 * np.eye(c)),
                                         name="gamma")

        def call(self, x):
            gamma = tf.nn.relu(self.gamma) + 1e-6
            norm = tf.sqrt(tf.nn.relu(self.beta) + 1e-6 + tf.einsum("bhwc,cd->bhwd", x * x, gamma))
            return x * norm if self.inverse else x / norm

    class MaskedConv(tf.keras.layers.Layer):
        """A k x k convolution that sees only the elements before the centre in raster order."""

        def __init__(self, filters, size=5, **kwargs):
            super().__init__(**kwargs)
            self.filters, self.size = filters, size

        def build(self, shape):
            k, c = self.size, self.size // 2
            self.w = self.add_weight(shape=(k, k, shape[-1], self.filters), initializer="glorot_uniform", name="w")
            self.b = self.add_weight(shape=(self.filters,), initializer="zeros", name="b")
            mask = np.ones((k, k, 1, 1), np.float32)
            mask[c, c:] = 0
            mask[c + 1:] = 0
            self.mask = tf.constant(mask)

        def call(self, x):
            return tf.nn.conv2d(x, self.w * self.mask, 1, "SAME") + self.b

    return GDN, MaskedConv


def evaluate(codec, test, batch=100):
    """`(mean bits per image, mean PSNR of the 8-bit decodings)` on uint8 images."""
    import tensorflow as tf

    bits, errors = [], []
    for i in range(0, len(test), batch):
        x = tf.constant(test[i:i + batch].astype(np.float32) / 255)
        decoded, b = codec.forward(x, train=False)
        decoded = tf.round(tf.clip_by_value(decoded, 0, 1) * 255) / 255
        bits.append(b.numpy()), errors.append(tf.reduce_mean(tf.square(decoded - x), [1, 2, 3]).numpy())
    errors = np.concatenate(errors)
    return float(np.concatenate(bits).mean()), float(np.mean(10 * np.log10(1 / np.maximum(errors, 1e-10))))


def train(lmbda, workdir, steps, train_images, test_images, channels=128, latent=96, batch=32, eval_every=2000):
    """Train (or resume) one lambda in `workdir`; appends one JSON line per evaluation to its log."""
    import tensorflow as tf

    os.makedirs(workdir, exist_ok=True)
    codec = HyperpriorCodec(channels, latent)
    optimizer = tf.keras.optimizers.Adam(1e-4)
    variables = None

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            decoded, bits = codec.forward(x, train=True)
            mse = tf.reduce_mean(tf.square(decoded - x))
            loss = tf.reduce_mean(bits) / (x.shape[1] * x.shape[2]) + lmbda * 255.0**2 * mse
        gradients, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), 5.0)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    codec.forward(tf.zeros((1,) + train_images.shape[1:], tf.float32), train=True)
    variables = codec.trainable_variables()
    done = tf.Variable(0)
    checkpoint = tf.train.Checkpoint(analysis=codec.analysis, synthesis=codec.synthesis,
                                     hyper_analysis=codec.hyper_analysis, hyper_synthesis=codec.hyper_synthesis,
                                     context=codec.context, parameters=codec.parameters, z_location=codec.z_location,
                                     z_log_scale=codec.z_log_scale, optimizer=optimizer, step=done)
    manager = tf.train.CheckpointManager(checkpoint, workdir, max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        print(f"resumed at step {int(done.numpy())}", flush=True)
    rng = np.random.default_rng(int(done.numpy()))
    start = time.time()
    while int(done.numpy()) < steps:
        s = int(done.numpy())
        optimizer.learning_rate.assign(3e-4 if s < 0.8 * steps else 3e-5)
        x = train_images[rng.integers(0, len(train_images), batch)].astype(np.float32) / 255
        flip = rng.random(batch) < 0.5
        x[flip] = x[flip, :, ::-1]
        loss = step(tf.constant(x))
        done.assign_add(1)
        if (s + 1) % eval_every == 0 or s + 1 == steps:
            bits, psnr = evaluate(codec, test_images)
            record = {"step": s + 1, "lam": lmbda, "payload_B": bits / 8, "psnr": psnr, "train_loss": float(loss),
                      "sec": round(time.time() - start)}
            manager.save()  # the checkpoint first: a log line always has its weights
            with open(os.path.join(workdir, LOG), "a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    return codec


def read_log(workdir):
    """The evaluation records of a training workdir, in step order."""
    with open(os.path.join(workdir, LOG)) as f:
        return sorted((json.loads(line) for line in f if line.strip()), key=lambda r: r["step"])


def bytes_at_psnr(ladder, psnr):
    """Bytes of a (bytes, PSNR) ladder at `psnr`: log-bytes interpolated linearly in PSNR (clamped)."""
    ladder = sorted(ladder, key=lambda p: p[1])
    return float(np.exp(np.interp(psnr, [p for _, p in ladder], np.log([b for b, _ in ladder]))))


def rq_ladder(test_images, model_name="rq-vae-cifar"):
    """`[(mean bytes of one-image .vqz files, mean 8-bit PSNR)]` of a zoo RQ-VAE at every quality."""
    import vaezoo
    from vaezoo import codec
    from vaezoo.evaluation.reconstruction import per_image_psnr

    model = vaezoo.load(model_name)
    ladder = []
    for quality in range(1, model.depth + 1):
        files = codec.compress_each(model, list(test_images), quality=quality)
        decoded = np.concatenate([np.asarray(d).reshape((-1,) + test_images.shape[1:])
                                  for d in codec.decompress_many(model, files)])
        decoded = np.round(np.clip(decoded, 0, 1) * 255)
        errors = ((test_images.astype(np.float64) - decoded) ** 2).mean(axis=(1, 2, 3)) / 255.0**2
        ladder.append((float(np.mean([len(f) for f in files])), float(np.mean(per_image_psnr(errors)))))
        print(f"{model_name} quality {quality}: {ladder[-1][0]:.1f} bytes, {ladder[-1][1]:.2f} dB", flush=True)
    return ladder


def report_rows(records, ladder):
    """One table row per evaluation record, against the ladder's bytes at its PSNR."""
    rows = []
    for r in records:
        total = r["payload_B"] + HEADER_BYTES
        rq = bytes_at_psnr(ladder, r["psnr"])
        rows.append({"lambda": r["lam"], "step": r["step"], "training time (min)": round(r["sec"] / 60),
                     "bytes per image (ideal payload + 18)": round(total, 1), "PSNR (dB)": round(r["psnr"], 2),
                     "rq-vae-cifar bytes at this PSNR": round(rq, 1), "bytes vs rq-vae-cifar": f"{total / rq:.2f}x"})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one lambda (resumable)")
    t.add_argument("--lmbda", type=float, required=True, help="distortion weight: loss = bits per pixel + lambda * 255^2 * MSE")
    t.add_argument("--workdir", required=True)
    t.add_argument("--steps", type=int, default=16000)
    t.add_argument("--eval-every", type=int, default=2000)
    t.add_argument("--threads", type=int, default=1, help="TensorFlow threads (default 1: one lambda per core)")
    r = sub.add_parser("report", help="rq-vae-cifar on the same images, the table, RESULTS.md")
    r.add_argument("workdirs", nargs="+")
    r.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    r.add_argument("--protocol-note", default="", help="a sentence added to the recorded protocol (how the logs were made)")
    args = parser.parse_args()

    import tensorflow as tf

    if args.command == "train":
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        train_images, test_images = cifar_arrays()
        train(args.lmbda, args.workdir, args.steps, train_images, test_images, eval_every=args.eval_every)
        return
    _, test_images = cifar_arrays()
    ladder = rq_ladder(test_images)
    records = [rec for w in args.workdirs for rec in read_log(w)]
    rows = report_rows(records, ladder)
    table = markdown_table(rows, list(rows[0]))
    ladder_text = "; ".join(f"q{q} {b:.1f} B {p:.2f} dB" for q, (b, p) in enumerate(ladder, 1))
    table += f"\nrq-vae-cifar on the same images (one-image .vqz files): {ladder_text}\n"
    print(table)
    if not args.no_append:
        protocol = (f"{len(test_images)} CIFAR-10 (JPEG q75 copy) test images evenly spaced over the class-sorted "
                    "split; trained on all 50,000 training images; study codec: ideal code lengths plus "
                    f"{HEADER_BYTES} bytes per image, 8-bit PSNR, every evaluation of each workdir's log; "
                    "rq-vae-cifar: real one-image .vqz files (the default code search, width 4; Keras path), "
                    "8-bit PSNR; see the script's docstring" + (f". {args.protocol_note}" if args.protocol_note else ""))
        append_results(TITLE, table, protocol, hardware_description())


if __name__ == "__main__":
    main()
