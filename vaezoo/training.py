"""The Trainer: one custom loop on `tf.distribute` for every strategy, resumable from a workdir.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388), so the
Trainer runs its own loop (`strategy.run` over an `experimental_distribute_dataset`); it calls
the same per-batch objective as `model.fit` (`model.per_replica_loss`), which averages the
per-example losses over the GLOBAL batch.

A training config is a dict (or a YAML/JSON file) with the sections:

```yaml
model: {class: BetaVAE, config: {input_shape: [64, 64, 1], latent_dim: 10, beta: 4.0}}
data: {source: dsprites, subset: 20000, preprocess: scale}
eval_data: {...}        # optional; default: `data` without shuffling
train: {steps: 500, batch_size: 64, learning_rate: 1.0e-3, ...}   # see TRAIN_DEFAULTS
smoke: {train: {steps: 20}}   # deep-merged over the rest with --smoke
```

The workdir gets `config.json`, `checkpoints/` (tf.train.CheckpointManager: model, optimizer,
step, RNG state), `tensorboard/` (scalars and image summaries), PNG grids at each evaluation,
`final/model.keras` and `final/model.weights.h5`, and `metrics.json`.
"""

import copy
import logging
import math
import os
import shutil
import sys
import tempfile
import time

from vaezoo import validation
from vaezoo import workdir as workdirs  # the on-disk layout (a Trainer's `workdir` is a path)
from vaezoo.io import atomic_path, write_json

log = logging.getLogger("vaezoo")

TRAIN_DEFAULTS = {
    "steps": 500,
    "batch_size": 64,
    "optimizer": "adam",  # "adam", "adamw" or "sgd"
    "learning_rate": 1e-3,
    "lr_schedule": "constant",  # or "cosine" (decays to 0 at `steps`)
    "warmup_steps": 0,  # linear learning-rate warm-up
    "log_every": 50,
    "checkpoint_every": 100,
    "keep_checkpoints": 3,
    "eval_every": 0,  # 0: evaluate only at the end
    "eval_batches": 8,
    "seed": 0,
    "strategy": "auto",
    "on_nonfinite": "stop",  # or "skip": drop the update, count it, go on
    "max_nonfinite": 100,  # with "skip": stop after this many skipped steps
    "mixed_precision": None,  # None, "mixed_float16" or "mixed_bfloat16"
    "jit_compile": False,
}
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}  # names in keras.optimizers
CONFIG_SECTIONS = {"name", "description", "model", "data", "eval_data", "train", "smoke", "prior_train",
                   "init"}  # init: provenance of a fine-tuning run's starting weights (set by --init)
PRIOR_TRAIN_DEFAULTS = {"epochs": 10, "batch_size": 64, "learning_rate": 1e-3, "max_images": None}


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss; the last good checkpoint is kept intact."""


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint of the current step was saved before stopping."""


class WorkerLostError(RuntimeError):
    """Multi-worker training lost a peer; restarting the job resumes from the last checkpoint."""


class _PreemptionWatch:
    """Save a checkpoint and stop at the next step boundary when SIGTERM arrives.

    Multi-worker jobs use TensorFlow's `PreemptionCheckpointHandler`, which agrees on the
    step with every worker before saving; single-host jobs catch SIGTERM themselves.
    """

    def __init__(self, trainer):
        import signal
        import threading

        import tensorflow as tf

        self.trainer, self.requested, self.handler, self.previous = trainer, False, None, None
        if trainer.strategy_name == "multi_worker":
            self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
                trainer.strategy.cluster_resolver, trainer.manager)
        elif threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        self.requested = True

    def check(self, step):
        """True (after saving at `step`) when training must stop now."""
        if self.handler is not None:
            self.handler.save_checkpoint_if_preempted()
            return False
        if self.requested:
            self.trainer.manager.save(checkpoint_number=step)
            self.close()
            return True
        return False

    def close(self):
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None


def deep_merge(base, override):
    """Recursively merge dict `override` into a copy of `base`."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(config, smoke=False, steps=None):
    """Read a config (dict or YAML/JSON path), apply `smoke` and `steps`, validate, fill defaults."""
    if isinstance(config, (str, os.PathLike)):
        import yaml

        path = os.fspath(config)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No config file at {path!r}.")
        with open(path, encoding="utf-8") as f:
            try:
                config = yaml.safe_load(f)
            except yaml.YAMLError as error:
                raise validation.ConfigError(f"{path!r} is not valid YAML: {error}") from None
        if not isinstance(config, dict):
            raise validation.ConfigError(f"{path!r} must hold a mapping with sections {sorted(CONFIG_SECTIONS)}.")
    config = copy.deepcopy(dict(config))
    if "family" in config:  # a zoo card: its recipe is the training config
        from vaezoo.cards import card_to_training_config, validate_card

        config = card_to_training_config(validate_card(config))
    validation.check_keys(config, CONFIG_SECTIONS, "training config")
    for section in ("model", "data"):
        if section not in config:
            raise validation.ConfigError(f"The training config needs a {section!r} section.")
    if smoke:
        config = deep_merge(config, config.get("smoke", {}))
    train = dict(config.get("train") or {})
    validation.check_keys(train, TRAIN_DEFAULTS, "train section")
    train = {**TRAIN_DEFAULTS, **train}
    if steps is not None:
        train["steps"] = steps
    validation.check_int("steps", train["steps"], 1)
    validation.check_int("batch_size", train["batch_size"], 1)
    validation.check_positive("learning_rate", train["learning_rate"])
    if train["on_nonfinite"] not in ("stop", "skip"):
        raise validation.ConfigError(f"on_nonfinite must be 'stop' or 'skip', got {train['on_nonfinite']!r}.")
    if train["optimizer"] not in OPTIMIZERS:
        raise validation.ConfigError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {train['optimizer']!r}.")
    if train["lr_schedule"] not in ("constant", "cosine"):
        raise validation.ConfigError(f"lr_schedule must be 'constant' or 'cosine', got {train['lr_schedule']!r}.")
    if train["mixed_precision"] not in (None, "mixed_float16", "mixed_bfloat16"):
        raise validation.ConfigError(
            f"mixed_precision must be null, 'mixed_float16' or 'mixed_bfloat16', got {train['mixed_precision']!r}.")
    config["train"] = train
    if "prior_train" in config:
        prior = dict(config["prior_train"] or {})
        validation.check_keys(prior, PRIOR_TRAIN_DEFAULTS, "prior_train section")
        config["prior_train"] = {**PRIOR_TRAIN_DEFAULTS, **prior}
    return config


def learning_rate_schedule(train):
    import keras

    base, steps, warmup = train["learning_rate"], train["steps"], train["warmup_steps"]
    if train["lr_schedule"] == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else base, max(steps - warmup, 1), warmup_target=base if warmup else None,
            warmup_steps=warmup)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(0.0, 1, warmup_target=base, warmup_steps=warmup, alpha=1.0)
    return base


class Trainer:
    """Trains a model from a config in a workdir, on any `tf.distribute` strategy.

    Args:
        config: a training config dict or YAML/JSON path (see module docstring).
        workdir: folder for checkpoints, summaries, pictures and the final model. Running
            again with the same workdir resumes from the newest checkpoint.
        smoke: apply the config's `smoke` overrides (tiny, fast run).
        steps: override `train.steps`.
        strategy: a `tf.distribute.Strategy` or a strategy name; default `train.strategy`.
        verbose: show a progress bar with ETA.
        init: a vaezoo model whose weights start the run (fine-tuning); it must have the
            config's architecture. Ignored when the workdir holds a checkpoint (the run
            resumes). `vaezoo train CONFIG --init MODEL` resolves MODEL (zoo name, preset,
            hub URI, ...) through `vaezoo.registry.resolve_model` and passes it here.
        init_name: what `init` was called, recorded as `init` in the workdir's config.json.

    Example:
        >>> trainer = Trainer("zoo_configs/beta-vae-dsprites.yaml", "runs/bvae", smoke=True)
        >>> metrics = trainer.run()
        >>> metrics["elbo"]
    """

    def __init__(self, config, workdir, smoke=False, steps=None, strategy=None, verbose=True, init=None,
                 init_name=None):
        import tensorflow as tf

        from vaezoo import data
        from vaezoo import strategy as strategies

        self.config = load_config(config, smoke=smoke, steps=steps)
        self.init = init
        if init is not None:
            self.config["init"] = str(init_name or getattr(init, "name", "model"))  # provenance in config.json
        elif self.config.get("init"):
            raise validation.ConfigError(
                f"The config starts from init: {self.config['init']}; pass that model as "
                f"init=vaezoo.load({self.config['init']!r}) (`vaezoo train` does this itself).")
        self.workdir = os.path.abspath(workdir)
        self.verbose = verbose
        train = self.config["train"]
        self.train_cfg = train
        if isinstance(strategy, tf.distribute.Strategy):
            self.strategy, self.strategy_name = strategy, "given"
        else:
            self.strategy_name = strategies.choose_strategy_name(strategy or train["strategy"])
            self.strategy = strategies.make_strategy(self.strategy_name)
        self.replicas = self.strategy.num_replicas_in_sync
        if train["batch_size"] % self.replicas:
            raise ValueError(
                f"batch_size {train['batch_size']} is not divisible by the {self.replicas} replicas of "
                f"{type(self.strategy).__name__}; use a multiple of {self.replicas}.")
        if train["jit_compile"] and self.replicas > 1 and not tf.config.list_logical_devices("GPU") \
                and self.strategy_name != "tpu":
            raise ValueError(
                f"jit_compile (XLA) with {self.replicas} replicas on CPU devices is not supported by "
                "TensorFlow (an XLA cluster cannot use variables of another CPU device); use XLA with one "
                "device, or on GPUs/TPUs.")
        self.is_chief = strategies.is_chief(self.strategy)
        described = f"{self.strategy_name} ({type(self.strategy).__name__}), {self.replicas} replica(s)"
        log.info("strategy: %s", described)
        if self.verbose:
            print(f"[vaezoo] strategy {described}, global batch {train['batch_size']}", flush=True)
        self._data = data

    # ------------------------------------------------------------------ setup
    def _build(self):
        import keras
        import tensorflow as tf

        from vaezoo.models import model_from_config

        train = self.train_cfg
        # Layers take their dtype policy when built: set it for the model only, then restore.
        previous_policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(train["mixed_precision"] or "float32")
        try:
            with self.strategy.scope():
                self.model = model_from_config(self.config["model"])
                self.model.build_from_images()
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
        with self.strategy.scope():
            optimizer_class = getattr(keras.optimizers, OPTIMIZERS[train["optimizer"]])
            optimizer = optimizer_class(learning_rate_schedule(train))
            if train["mixed_precision"] == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
            self.nonfinite_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_count")
        # The model's SeedGenerator is not a tracked child of the model, so its state (the
        # posterior noise stream) is named here; without it a resumed run repeats earlier draws.
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, nonfinite_count=self.nonfinite_count,
            seed_state=self.model.seed_generator.state)
        # In multi-worker training every worker must save (the save is collective), but only
        # the chief's checkpoint is kept; the others write to a temporary folder.
        if self.is_chief:
            ckpt_dir = os.path.join(self.workdir, workdirs.CHECKPOINTS)
        else:
            ckpt_dir = tempfile.mkdtemp(prefix="vaezoo-worker-ckpt-")
        self._ckpt_dir = ckpt_dir
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=train["keep_checkpoints"])
        restored = self.manager.restore_or_initialize()
        if restored is None and not self.is_chief:
            # A restarted non-chief worker resumes from the chief's checkpoint.
            latest = tf.train.latest_checkpoint(os.path.join(self.workdir, workdirs.CHECKPOINTS))
            if latest:
                self.checkpoint.restore(latest)
                restored = latest
        self.start_step = int(self.optimizer.iterations.numpy())
        if restored and self.verbose:
            print(f"[vaezoo] resumed from {restored} at step {self.start_step}", flush=True)
        if not restored and self.init is not None:
            self._start_from(self.init)

    def _start_from(self, init):
        """Copy `init`'s weights into the freshly built model (fine-tuning), refusing another
        architecture with an error that names both."""
        ours, theirs = self.model, init
        theirs.build_from_images()
        where = f"--init {self.config['init']}"
        if type(theirs).__name__ != type(ours).__name__:
            raise ValueError(f"{where} is a {type(theirs).__name__}, but the config's model is a "
                             f"{type(ours).__name__}; fine-tune a model of the config's architecture.")
        shapes = [tuple(v.shape) for v in ours.weights]
        given = [tuple(v.shape) for v in theirs.weights]
        if shapes != given:
            first = next((i for i, (a, b) in enumerate(zip(shapes, given)) if a != b), min(len(shapes), len(given)))
            detail = (f"weight {ours.weights[first].path}: {shapes[first]} vs {given[first]}"
                      if first < min(len(shapes), len(given)) else f"{len(shapes)} vs {len(given)} weights")
            raise ValueError(f"{where} does not have the config's architecture ({detail}); the config's model "
                             "section must match the model being fine-tuned.")
        for variable, value in zip(ours.weights, theirs.weights):
            variable.assign(value.numpy())
        if self.verbose:
            print(f"[vaezoo] weights from {self.config['init']}", flush=True)

    def _dataset(self, spec, shuffle, repeat, skip_batches=0):
        # A resumed run starts at the data position of the restored step.
        ds = self._data.make_dataset(spec, self.train_cfg["batch_size"], seed=self.train_cfg["seed"], shuffle=shuffle,
                                     repeat=repeat, skip_batches=skip_batches)
        return self.strategy.experimental_distribute_dataset(ds)

    def _make_train_step(self):
        import tensorflow as tf

        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        skip = self.train_cfg["on_nonfinite"] == "skip"
        nonfinite = self.nonfinite_count

        def step_fn(batch):
            with tf.GradientTape() as tape:
                loss, terms = model.per_replica_loss(batch, training=True, step=optimizer.iterations)
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            # every replica must take the same branch: agree on finiteness across replicas
            context = tf.distribute.get_replica_context()
            bad = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(~tf.math.is_finite(loss), tf.float32))
            if skip:
                def apply():
                    optimizer.apply(grads, model.trainable_variables)
                    return tf.constant(0.0)

                def drop():
                    optimizer.iterations.assign_add(1)
                    return tf.constant(1.0)

                skipped = tf.cond(bad > 0, drop, apply)
            else:
                optimizer.apply(grads, model.trainable_variables)
                skipped = tf.cast(bad > 0, tf.float32)
            means = {k: tf.reduce_mean(v) for k, v in terms.items()}
            return loss, means, skipped

        if self.train_cfg["jit_compile"]:  # XLA compiles the per-replica step, not the input pipeline
            step_fn = tf.function(step_fn, jit_compile=True)

        @tf.function
        def train_step(iterator):
            loss, means, skipped = strategy.run(step_fn, args=(next(iterator),))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
            means = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in means.items()}
            # identical on every replica (the flag was all-reduced), so the mean is that value
            skipped = tf.cast(strategy.reduce(tf.distribute.ReduceOp.MEAN, skipped, axis=None) > 0, tf.int64)
            nonfinite.assign_add(skipped)
            return loss, means, skipped

        return train_step

    # ------------------------------------------------------------------ evaluation
    def evaluate(self):
        """Mean ELBO (nats), its terms and bits/dim over `train.eval_batches` batches of eval data."""
        import tensorflow as tf

        spec = self.config.get("eval_data") or self.config["data"]
        # Shuffled with a fixed seed: the same examples every evaluation, drawn from the whole
        # split (class-sorted files such as the CIFAR copy would otherwise give one class).
        ds = self._data.make_dataset(spec, self.train_cfg["batch_size"], seed=self.train_cfg["seed"] + 1,
                                     shuffle=True, repeat=True)
        sums, count = {}, 0
        for batch in ds.take(self.train_cfg["eval_batches"]):
            x, condition = self.model.unpack_batch(batch)
            terms = self.model.loss_terms(x, condition, training=False)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(tf.reduce_sum(v))
            count += int(x.shape[0])
        metrics = {k: v / count for k, v in sums.items()}
        metrics["elbo"] = -(metrics["nll"] + metrics["kl"])
        metrics["bits_per_dim"] = -metrics["elbo"] / (self.model.num_dims * math.log(2.0))
        metrics["examples"] = count
        self._last_eval_batch, self._last_eval_condition = x, condition
        return metrics

    def _write_pictures(self, step, writer):
        import numpy as np
        import tensorflow as tf

        from vaezoo import visualize

        x = self._last_eval_batch[:8]
        kw, sample_kw = {}, {}
        if self.model.conditional:  # the images' own conditions; samples cycle through the classes
            kw = {"condition": self._last_eval_condition[:8]}
            classes = getattr(self.model, "num_classes", None)
            sample_kw = {"condition": np.arange(16) % classes if classes else self.model.dummy_condition(16)}
        recon = self.model.reconstruct(x, **kw)
        samples = self.model.sample(16, seed=0, **sample_kw)
        path = os.path.join(self.workdir, f"pictures/step_{step:07d}.png")
        visualize.save_rows_png({"input": x, "reconstruction": recon, "samples": samples[:8],
                                 "more samples": samples[8:]}, path, scale=2)
        with writer.as_default(step=step):
            tf.summary.image("reconstructions", tf.concat([x, recon], axis=2), max_outputs=8)
            tf.summary.image("samples", samples, max_outputs=16)
        return path

    # ------------------------------------------------------------------ loop
    def run(self):
        """Train to `train.steps` (resuming if possible), evaluate, save; returns final metrics."""
        import tensorflow as tf

        train = self.train_cfg
        self._build()
        if self.is_chief:
            os.makedirs(self.workdir, exist_ok=True)
            write_json(self.config, os.path.join(self.workdir, workdirs.RUN_CONFIG))
        tb_dir = os.path.join(self.workdir, "tensorboard") if self.is_chief else tempfile.mkdtemp()
        writer = tf.summary.create_file_writer(tb_dir)
        total = train["steps"]
        step = self.start_step
        iterator = iter(self._dataset(self.config["data"], shuffle=True, repeat=True, skip_batches=step))
        train_step = self._make_train_step()
        progress = _Progress(total, step, self.verbose)
        started, first = time.time(), step
        eval_every = train["eval_every"]
        preemption = _PreemptionWatch(self)
        try:
            while step < total:
                try:
                    loss, means, skipped = train_step(iterator)
                except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                        tf.errors.CancelledError) as error:
                    if self.replicas == 1 or self.strategy_name != "multi_worker":
                        raise
                    raise WorkerLostError(
                        f"Lost contact with another worker at step {step + 1} ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:300]}). Restart every worker with the same command; "
                        f"training resumes from the chief's last checkpoint in {self.workdir}/checkpoints.") from None
                step += 1
                self._check_finite(float(loss), step)
                if preemption.check(step):
                    raise Preempted(
                        f"SIGTERM received: saved a checkpoint at step {step} in {self._ckpt_dir}; "
                        f"rerun the same command to resume.")
                if step % train["log_every"] == 0 or step == total:
                    values = {k: float(v) for k, v in means.items()}
                    with writer.as_default(step=step):
                        for k, v in values.items():
                            tf.summary.scalar(f"train/{k}", v)
                        tf.summary.scalar("train/images_per_second",
                                          (step - first) * train["batch_size"] / max(time.time() - started, 1e-9))
                    values["nonfinite"] = int(self.nonfinite_count.numpy())
                    progress.update(step, values)
                if step % train["checkpoint_every"] == 0 or step == total:
                    self.manager.save(checkpoint_number=step)
                if eval_every and step % eval_every == 0 and step != total:
                    self._log_eval(step, writer)
        finally:
            preemption.close()
        if "prior_train" in self.config and self.is_chief:
            self._train_prior()
        metrics = self._log_eval(step, writer)
        metrics["steps"] = step
        metrics["nonfinite_steps"] = int(self.nonfinite_count.numpy())
        metrics["weights_sha256"] = workdirs.weights_fingerprint(self.model)
        if self.verbose:
            print(f"[vaezoo] final weights sha256 {metrics['weights_sha256']}", flush=True)
        if self.is_chief:
            self._save_final(metrics)
        else:
            shutil.rmtree(self._ckpt_dir, ignore_errors=True)
            shutil.rmtree(tb_dir, ignore_errors=True)
        return metrics

    def _train_prior(self):
        """Second stage for models with a learned prior over codes (VQ-VAE): fit it on the
        codes of the training images, then checkpoint it."""
        import numpy as np
        import tensorflow as tf

        prior_cfg = self.config["prior_train"]
        if self.model.latent_kind != "code_grid":
            raise validation.ConfigError(f"prior_train is set but {type(self.model).__name__} has no prior to fit.")
        marker = os.path.join(self.workdir, "prior_done.json")
        weights = os.path.join(self.workdir, "prior", "prior.weights.h5")
        if os.path.exists(marker) and os.path.exists(weights):  # resumed after the prior stage finished
            self.model.prior.load_weights(weights)
            return
        spec = dict(self.config["data"])
        ds = self._data.make_dataset(spec, prior_cfg["batch_size"], seed=self.train_cfg["seed"], shuffle=False,
                                     repeat=False, drop_remainder=False)
        codes, limit = [], prior_cfg["max_images"]
        for batch in ds:
            x, _ = self.model.unpack_batch(batch)
            codes.append(self.model.encode_to_codes(x))
            if limit and sum(int(c.shape[0]) for c in codes) >= limit:
                break
        codes = tf.concat(codes, axis=0)
        if self.verbose:
            print(f"[vaezoo] prior stage: {prior_cfg['epochs']} epoch(s) on the codes of {int(codes.shape[0])} "
                  f"training images", flush=True)
        with self.strategy.scope():
            history = self.model.fit_prior(codes, epochs=prior_cfg["epochs"], batch_size=prior_cfg["batch_size"],
                                           learning_rate=prior_cfg["learning_rate"],
                                           verbose=2 if self.verbose else 0)
        # The stage's result is its own file: the step checkpoint of this step already exists,
        # and re-saving under the same number does not replace it.
        os.makedirs(os.path.dirname(weights), exist_ok=True)
        with atomic_path(weights) as tmp:
            self.model.prior.save_weights(tmp)
        write_json({"loss": [float(v) for v in np.asarray(history.history["loss"])]}, marker)

    def _check_finite(self, loss_value, step):
        """Apply the non-finite-loss policy: stop (default) or count the skipped step."""
        if math.isfinite(loss_value):
            return
        train = self.train_cfg
        count = int(self.nonfinite_count.numpy())
        log.warning("non-finite loss at step %d (%d so far)", step, count)
        if train["on_nonfinite"] == "stop":
            raise NonFiniteLossError(
                f"Loss became {loss_value} at step {step}. Training stopped; the last good "
                f"checkpoint in {self._ckpt_dir} is intact. Lower the learning rate, or set "
                f"train.on_nonfinite: skip to drop such steps.")
        if count > train["max_nonfinite"]:
            raise NonFiniteLossError(
                f"{count} steps had a non-finite loss (max_nonfinite={train['max_nonfinite']}); stopping.")

    def _log_eval(self, step, writer):
        import tensorflow as tf

        metrics = self.evaluate()
        with writer.as_default(step=step):
            for k, v in metrics.items():
                tf.summary.scalar(f"eval/{k}", v)
        if self.is_chief:
            metrics["picture"] = self._write_pictures(step, writer)
        if self.verbose:
            print(f"\n[vaezoo] step {step}: eval ELBO {metrics['elbo']:.3f} nats "
                  f"(nll {metrics['nll']:.3f}, kl {metrics['kl']:.3f}; {metrics['bits_per_dim']:.4f} bits/dim "
                  f"over {metrics['examples']} examples)", flush=True)
        return metrics

    def _save_final(self, metrics):
        workdirs.save_final(self.workdir, self.model, self.config["model"], metrics)


class _Progress:
    """Keras' progress bar (with ETA) on a terminal; one log line per update otherwise."""

    keys = ("loss", "nll", "kl", "nonfinite")

    def __init__(self, total, start, verbose):
        import keras

        self.total, self.start, self.verbose = total, start, verbose
        self.tty = sys.stdout.isatty()
        self.started = time.time()
        if verbose and self.tty:
            self.bar = keras.utils.Progbar(total, stateful_metrics=list(self.keys))
            if start:
                self.bar.update(start)

    def update(self, step, values):
        if not self.verbose:
            return
        shown = [(k, values[k]) for k in self.keys if k in values]
        if self.tty:
            self.bar.update(step, shown)
            return
        rate = (step - self.start) / max(time.time() - self.started, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        text = " ".join(f"{k} {v:.4g}" for k, v in shown)
        print(f"[vaezoo] step {step}/{self.total} {text} ({rate:.2f} steps/s, ETA {eta:.0f}s)", flush=True)


def train(config, workdir, smoke=False, steps=None, strategy=None, verbose=True, init=None, init_name=None):
    """Train from a config into `workdir` and return the final evaluation metrics.

    See `Trainer` for the arguments (`init`: a model to fine-tune); the model is available as
    `Trainer(...).model`.
    """
    return Trainer(config, workdir, smoke=smoke, steps=steps, strategy=strategy, verbose=verbose, init=init,
                   init_name=init_name).run()

