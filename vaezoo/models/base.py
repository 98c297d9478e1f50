"""The contract every vaezoo model family follows.

A model maps images (uint8 in [0, 255] or float in [0, 1], channels last) to a posterior
distribution and latents back to a likelihood distribution. Families implement four hooks:

- `_encode(x, condition)` -> posterior `tfd.Distribution` (x: float32 in [0, 1])
- `_decode(z, condition)` -> likelihood `tfd.Distribution`
- `_loss_terms(x, condition, training, step)` -> dict of per-example tensors with a `loss`
  entry (what is minimised) and `nll`/`kl` (so `elbo = -(nll + kl)`)
- `_log_importance_weights(x, condition, num_samples)` -> `(num_samples, batch)` tensor of
  `log p(x, z) - log q(z | x)` with z ~ q, for the IWAE bound
- `_sample_noise(n, seed)` -> the random draws of `n` samples (a tensor, or a list of
  tensors, each with the sample on axis 0), from an int32 `(2,)` stateless seed
- `_sample_from_noise(noise, condition, temperature)` -> images in [0, 1] from those draws
  (deterministic; `_sample(n, condition, seed, temperature)` composes the two)
- `_score_terms(x, condition)` -> dict of per-example `nll`, `kl` with the posterior mean in
  place of the posterior sample (deterministic)

and inherit validated public methods (`encode`, `decode`, `sample`, `sample_per_seed`,
`reconstruct`, `elbo`, `iwae`, `loss_terms`, `score_terms`, `posterior_means`,
`latent_statistics`), Keras `train_step`/`test_step` (so `compile(); fit()` works), and the
config round trip (constructor arguments are the config). Every public method also works on
graph tensors (inside a `tf.function` or an export), where only static shapes and dtypes are
checked.

Compiled cores: called eagerly, a public method validates its arguments in Python, then runs
its computation as one `tf.function` per model and method (`LatentVariableModel._core`,
traced with `reduce_retracing=True`: at most two traces per method whatever the batch
sizes; integers such as `n`, `k` and the temperature go in as tensors, so their values do
not retrace either). Random draws keep their seed semantics inside: an integer seed becomes
a `(2,)` tensor argument, `seed=None` advances the model's `SeedGenerator` (a variable the
function updates). Called in a graph (an export, a user's `tf.function`), the same
computation is inlined. `model.compiled_methods = False` runs everything eagerly (debugging).

What the rest of the package needs to know about a model it asks the model: `latent_kind`
(what the latent is) and `conditional` (whether it takes a condition) are class attributes;
`check_model` is the one check that an object is a vaezoo model of an accepted kind.
"""

import math
import os

import keras
import numpy as np
import tensorflow as tf

from vaezoo import validation


#: the values of `LatentVariableModel.latent_kind`, with what each means.
LATENT_KINDS = {
    "vector": "one Gaussian latent vector per image, as in VAE, BetaVAE and CVAE",
    "code_grid": "code grids of codebook indices, as in VQVAE",
    "hierarchy": "one Gaussian latent vector per layer, as in HierarchicalVAE",
    "residual_code_grid": "stacks of code grids, one per residual-quantizer depth, as in RQVAE (a prefix decodes)",
}


class UnsupportedModelError(TypeError, ValueError):
    """A feature was given a model of a kind it does not support (see `check_model`)."""


def kl_warmup_weight(step, warmup_steps):
    """The KL weight `min(1, step / warmup_steps)` of a linear warm-up (Bowman et al., 2016).

    1.0 when `step` is None (evaluation) or the warm-up is off (`warmup_steps == 0`).
    """
    if step is None or warmup_steps == 0:
        return 1.0
    return tf.minimum(1.0, tf.cast(step, tf.float32) / float(warmup_steps))


def kl_with_free_bits(kl_per_unit, free_bits):
    """Sum over the last axis of `max(KL_unit, free_bits)` (Kingma et al., 2016), per example.

    A unit is a latent dimension (VAE) or a latent layer (HierarchicalVAE); with
    `free_bits == 0` this is the plain sum.
    """
    if free_bits > 0:
        return tf.reduce_sum(tf.maximum(kl_per_unit, free_bits), axis=-1)
    return tf.reduce_sum(kl_per_unit, axis=-1)


def check_model(model, what, latent_kinds=tuple(LATENT_KINDS), conditional=(False, True)):
    """Raise `UnsupportedModelError` unless `model` is a vaezoo model `what` can work with.

    Args:
        model: the object to check.
        what: the feature asking, for the message (e.g. "The .vqz codec").
        latent_kinds: the accepted `latent_kind` values.
        conditional: the accepted values of `model.conditional`.

    Returns:
        `model.latent_kind`.
    """
    if not isinstance(model, LatentVariableModel):
        raise UnsupportedModelError(
            f"{what} works on vaezoo models (VAE, BetaVAE, CVAE, VQVAE, RQVAE, HierarchicalVAE or "
            f"subclasses), got {type(model).__name__}."
        )
    if model.latent_kind not in latent_kinds:
        accepted = "; or ".join(f"{kind} ({LATENT_KINDS[kind]})" for kind in latent_kinds)
        raise UnsupportedModelError(
            f"{what} needs a model whose latent_kind is {accepted}; {type(model).__name__}'s is "
            f"{model.latent_kind} ({LATENT_KINDS[model.latent_kind]})."
        )
    if model.conditional not in conditional:
        needs = "an unconditional model" if conditional == (False,) else "a conditional model"
        raise UnsupportedModelError(f"{what} needs {needs}; {type(model).__name__} has conditional={model.conditional}.")
    return model.latent_kind


class TrackedLossTraining:
    """Keras `train_step`/`test_step` around a model's `per_replica_loss(data, training, step)`.

    Shared by the image models and the PixelCNN prior: one `keras.metrics.Mean` per term in
    `self.trackers`, gradients of the (loss-scaled) GLOBAL-batch loss, `optimizer.apply`.
    """

    def update_trackers(self, terms):
        for name, tracker in self.trackers.items():
            tracker.update_state(tf.reduce_mean(terms[name]))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, terms = self.per_replica_loss(data, training=True, step=self.optimizer.iterations)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self.update_trackers(terms)

    def test_step(self, data):
        _, terms = self.per_replica_loss(data, training=False)
        return self.update_trackers(terms)


class LatentVariableModel(TrackedLossTraining, keras.Model):
    """Base class of every vaezoo model: validated public API on top of family hooks.

    Args:
        input_shape: image shape `(height, width, channels)`.
        seed: integer seed for the model's random draws (posterior samples in training,
            `sample()` without an explicit seed); `None` for a random seed.

    Example:
        >>> model = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=8)
        >>> x = np.random.rand(4, 28, 28, 1).astype("float32")
        >>> model.elbo(x).shape        # nats per example
        TensorShape([4])
        >>> model.iwae(x, k=64).shape  # tighter bound, still per example
        TensorShape([4])
    """

    #: names of the per-example terms `_loss_terms` returns; one Mean metric each.
    loss_term_names = ("loss", "nll", "kl")
    #: whether the family takes a condition (class label or vector) beside the image.
    conditional = False
    #: what the latent is: a key of `LATENT_KINDS` ("vector", "code_grid" or "hierarchy").
    latent_kind = "vector"
    #: the most images one `sample` / `sample_per_seed` call draws (the output and the networks'
    #: activations grow with it); set it on a model to raise it, `None` for no limit.
    max_samples_per_call = validation.MAX_SAMPLES_PER_CALL

    def __init__(self, input_shape=(28, 28, 1), seed=None, **kwargs):
        super().__init__(**kwargs)
        input_shape = tuple(int(d) for d in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}.")
        self.image_shape = input_shape
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_term_names}

    # ----------------------------------------------------------------- family hooks
    def _encode(self, x, condition=None):
        raise NotImplementedError

    def _decode(self, z, condition=None):
        raise NotImplementedError

    def _loss_terms(self, x, condition=None, training=False, step=None):
        raise NotImplementedError

    def _log_importance_weights(self, x, condition, num_samples):
        raise NotImplementedError

    def _sample_noise(self, n, seed):
        raise NotImplementedError

    def _sample_from_noise(self, noise, condition, temperature=1.0):
        raise NotImplementedError

    def _sample(self, n, condition, seed, temperature=1.0):
        return self._sample_from_noise(self._sample_noise(n, seed), condition, temperature)

    def _reconstruct(self, x, condition=None):
        posterior = self._encode(x, condition)
        return self.likelihood.image(self._decode(posterior.mean(), condition))

    def _score_terms(self, x, condition=None):
        raise NotImplementedError

    def _posterior_means(self, x, condition=None):
        return self._encode(x, condition).mean()

    def _latent_statistics(self, x, condition=None):
        posterior = self._encode(x, condition)
        return {"mean": tf.cast(posterior.mean(), tf.float32), "stddev": tf.cast(posterior.stddev(), tf.float32)}

    def check_condition(self, condition, batch_size):
        """Validate a condition for `batch_size` images; returns what the networks take.

        Unconditional families refuse any condition (`TypeError`); conditional ones (CVAE)
        check its dtype, shape and values and return a float32 `(batch, C)` tensor.
        """
        if condition is not None:
            raise TypeError(f"{type(self).__name__} is unconditional; got a condition.")
        return None

    def _check_latents(self, z):
        return validation.check_latents(z, self.latent_dim)

    # ----------------------------------------------------------------- helpers
    def _next_seed(self):
        """A stateless seed for TFP's `sample(seed=...)`, drawn from the model's generator."""
        return tf.cast(self.seed_generator.next(), tf.int32)

    def _seed_pair(self, seed):
        """Any accepted seed -> the int32 `(2,)` tensor of TensorFlow's stateless samplers.

        `None` draws from the model's generator; a Python integer >= 0 gives `[seed, 0]`; an
        integer tensor (a scalar, e.g. one element of an exported signature's `seed` input,
        or a `(2,)` pair) is used as it is, so the same code runs eagerly and in graphs.
        """
        if seed is None:
            return self._next_seed()
        if isinstance(seed, (tf.Tensor, tf.Variable)):
            seed = tf.cast(seed, tf.int32)
            return tf.stack([seed, tf.zeros_like(seed)]) if seed.shape.rank == 0 else seed
        validation.check_int("seed", seed, 0)
        return tf.constant([int(seed), 0], tf.int32)

    def _images(self, x, name="x"):
        return validation.check_images(x, self.image_shape, name=name)

    @property
    def num_dims(self):
        """Number of pixel dimensions per image (for bits/dim)."""
        return int(math.prod(self.image_shape))

    # ----------------------------------------------------------------- compiled cores
    #: run the public methods' computations as compiled `tf.function`s; False runs them
    #: eagerly (for debugging; the numbers are the same).
    compiled_methods = True

    #: compile the cores with XLA (`tf.function(jit_compile=True)`); set it before the first
    #: call (each core is made once, on first use). Off by default: measured on 2 CPU cores
    #: (`benchmarks/api_latency.py --xla`), XLA makes most batch-1 calls faster but batch-64
    #: calls slower (up to 7x), and cores with data-dependent shapes (`iwae`'s chunks) do not
    #: compile. Under XLA a seed still reproduces its draws, but they are other numbers than
    #: without it (XLA generates stateless random numbers with its own algorithm).
    jit_compile_cores = False

    #: how many argument signatures (shapes and dtypes) `_core` remembers the concrete
    #: function of, over all methods; past it the memo starts afresh (only a lookup is lost).
    max_memoized_signatures = 256

    def _core(self, name, fn, *args):
        """`fn(*args)`, run as this model's compiled core `name` when called eagerly.

        `fn` is a bound method of the model whose arguments are tensors or None (never
        Python numbers that vary: pass those as tensors). Each name gets one
        `tf.function(fn, reduce_retracing=True)` per model, made on first use, so a second
        batch size relaxes the batch dimension and later ones reuse that trace. The concrete
        function serving each argument signature (dtypes and shapes) is memoized and called
        directly: a repeated call skips `tf.function`'s dispatch (argument canonicalization
        and the trace-cache lookup, about as long as a small model's batch-1 run). In a
        graph (an export, a user's `tf.function`) `fn` runs inline.
        """
        if not self.compiled_methods or not tf.executing_eagerly():
            return fn(*args)
        state = self.__dict__.get("_compiled_state")
        if state is None:  # plain dicts, kept out of Keras' attribute tracking
            state = {"cores": {}, "concrete": {}}
            object.__setattr__(self, "_compiled_state", state)
        key = (name, *(None if arg is None else (arg.dtype, tuple(arg.shape)) for arg in args))
        concrete = state["concrete"].get(key)
        if concrete is not None:
            return concrete(*args)
        core = state["cores"].get(name)
        if core is None:
            core = state["cores"][name] = tf.function(fn, reduce_retracing=True,
                                                      jit_compile=True if self.jit_compile_cores else None)
        # a first call through `tf.function` itself: it traces if no trace fits, and creates
        # the weights of a model not built yet (which `get_concrete_function` cannot)
        result = core(*args)
        if len(state["concrete"]) >= self.max_memoized_signatures:
            state["concrete"].clear()
        state["concrete"][key] = core.get_concrete_function(*args)  # the trace that just ran
        return result

    def _trace_counts(self):
        """Traces made so far per compiled core (`experimental_get_tracing_count`): for tests."""
        state = self.__dict__.get("_compiled_state", {"cores": {}})
        return {name: core.experimental_get_tracing_count() for name, core in state["cores"].items()}

    def _elbo_core(self, x, condition):
        terms = self._loss_terms(x, condition, training=False)
        return -(terms["nll"] + terms["kl"])

    def _iwae_core(self, x, condition, k, chunk_size):
        def body(start, total):
            log_w = self._log_importance_weights(x, condition, tf.minimum(chunk_size, k - start))
            chunk = tf.cast(tf.reduce_logsumexp(log_w, axis=0), tf.float32)
            return start + chunk_size, tf.reduce_logsumexp(tf.stack([total, chunk]), axis=0)

        # logsumexp(-inf, chunk) == chunk exactly, so the first chunk starts the sum as it is
        start = tf.fill(tf.shape(x)[:1], tf.constant(-math.inf, tf.float32))
        _, total = tf.while_loop(lambda i, _: i < k, body, (tf.constant(0, tf.int32), start))
        return total - tf.math.log(tf.cast(k, tf.float32))

    def _score_terms_core(self, x, condition):
        terms = self._score_terms(x, condition)
        return {name: tf.cast(value, tf.float32) for name, value in terms.items()}

    def _sample_per_seed_core(self, seeds, condition, temperature):
        def one(seed):
            return tf.nest.map_structure(lambda t: t[0], self._sample_noise(1, self._seed_pair(seed)))

        probe = self._sample_noise(1, tf.zeros([2], tf.int32))  # only its structure is used
        spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape[1:], t.dtype), probe)
        noise = tf.map_fn(one, seeds, fn_output_signature=spec)
        return self._sample_from_noise(noise, condition, temperature)

    # ----------------------------------------------------------------- public API
    def encode(self, x, condition=None):
        """Posterior q(z | x) as a `tfd.Distribution` (batch shape `(batch,)`)."""
        x = self._images(x)
        return self._core("encode", self._encode, x, self.check_condition(condition, x.shape[0]))

    def decode(self, z, condition=None):
        """Likelihood p(x | z) as a `tfd.Distribution` over the likelihood's event space."""
        z = self._check_latents(z)
        return self._core("decode", self._decode, z, self.check_condition(condition, z.shape[0]))

    def sample(self, n, seed=None, condition=None, temperature=1.0):
        """Draw `n` images from the model, float32 in [0, 1], shape `(n, *input_shape)`.

        Args:
            n: number of images, >= 1.
            seed: integer >= 0 for reproducible samples (or an int32 tensor in a graph);
                `None` draws from the model's generator.
            condition: for conditional families, one condition per image.
            temperature: scales the prior's standard deviation; must be > 0.

        Raises:
            ValueError: `n` over `max_samples_per_call` (before anything is drawn).
        """
        validation.check_int("n", n, 1)
        validation.check_count_limit("n", n, self.max_samples_per_call, "model")
        validation.check_positive("temperature", temperature)
        condition = self.check_condition(condition, n)
        return self._core("sample", self._sample, tf.constant(int(n), tf.int32), condition, self._seed_pair(seed),
                          tf.constant(float(temperature), tf.float32))

    def sample_per_seed(self, seeds, condition=None, temperature=1.0):
        """One image per seed, drawn as one batch: row i is `sample(1, seed=seeds[i])`.

        What the exported `sample` signature serves: each row's random draws come from its
        own seed (so a row does not depend on what else is in the batch), and the network
        runs once on the whole batch.

        Args:
            seeds: integers >= 0, shape `(n,)` (an int tensor in a graph).
            condition: for conditional families, one condition per seed.
            temperature: as in `sample`; must be > 0.

        Returns:
            float32 images in [0, 1], shape `(n, *input_shape)`.

        Raises:
            ValueError: more seeds than `max_samples_per_call` (checked in Python when the
                count is known; an export checks it in the graph, see `export_saved_model`).
        """
        validation.check_positive("temperature", temperature)
        if not isinstance(seeds, (tf.Tensor, tf.Variable)):
            values = np.asarray(seeds)
            if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "iu" or values.min() < 0:
                raise ValueError(f"seeds must be a non-empty 1-D array of integers >= 0, got {seeds!r}.")
            seeds = tf.constant(values, tf.int32)
        elif seeds.shape.rank != 1 or not seeds.dtype.is_integer:
            raise ValueError(f"seeds must be a 1-D integer tensor, got {seeds!r}.")
        seeds = tf.cast(seeds, tf.int32)
        if seeds.shape[0] is not None:
            validation.check_count_limit("len(seeds)", seeds.shape[0], self.max_samples_per_call, "model")
        condition = self.check_condition(condition, seeds.shape[0])
        return self._core("sample_per_seed", self._sample_per_seed_core, seeds, condition,
                          tf.constant(float(temperature), tf.float32))

    def reconstruct(self, x, condition=None):
        """Decode the posterior mean of each image: float32 images in [0, 1]."""
        x = self._images(x)
        return self._core("reconstruct", self._reconstruct, x, self.check_condition(condition, x.shape[0]))

    def elbo(self, x, condition=None):
        """Evidence lower bound per example, in nats (one posterior sample, analytic KL)."""
        x = self._images(x)
        return self._core("elbo", self._elbo_core, x, self.check_condition(condition, x.shape[0]))

    def iwae(self, x, k=64, condition=None, chunk_size=256):
        """Importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i | x), per example, nats.

        The k samples are drawn in batched chunks of `chunk_size` and combined with a
        log-sum-exp, so memory stays bounded for k in the thousands. IWAE_1 is the ELBO;
        the bound tightens towards log p(x) as k grows (Burda et al., 2016).
        """
        validation.check_int("k", k, 1)
        validation.check_int("chunk_size", chunk_size, 1)
        x = self._images(x)
        condition = self.check_condition(condition, x.shape[0])
        return self._core("iwae", self._iwae_core, x, condition, tf.constant(int(k), tf.int32),
                          tf.constant(int(chunk_size), tf.int32))

    def score_terms(self, x, condition=None):
        """Deterministic negative-ELBO terms per example: dict of float32 `(batch,)` tensors.

        `nll` and `kl` in nats, computed like `elbo` but with the posterior mean in place of
        the posterior sample (at every layer of a hierarchy), so the numbers have no
        randomness and do not depend on the rest of the batch. For a VQ-VAE, whose posterior
        is a point mass, they are the exact ELBO's terms. The SavedModel `score` signature
        serves these.
        """
        x = self._images(x)
        return self._core("score_terms", self._score_terms_core, x, self.check_condition(condition, x.shape[0]))

    def posterior_means(self, x, condition=None):
        """Posterior means E_q[z | x]: `(batch, *latent)` for one latent, or, for a hierarchy,
        a list with one `(batch, latent_dim)` tensor per layer (0 = bottom)."""
        x = self._images(x)
        return self._core("posterior_means", self._posterior_means, x, self.check_condition(condition, x.shape[0]))

    def latent_statistics(self, x, condition=None):
        """What an image's latent is, as named float32/int32 tensors (the exports' `encode`).

        Gaussian latents: `mean` and `stddev` of q(z | x) (a hierarchy's top layer);
        a VQ-VAE: `codes` and `quantization_error` (see `VQVAE`).
        """
        x = self._images(x)
        return self._core("latent_statistics", self._latent_statistics, x,
                          self.check_condition(condition, x.shape[0]))

    def loss_terms(self, x, condition=None, training=False):
        """The per-batch objective as a dict of per-example tensors (`loss`, `nll`, `kl`, ...).

        Runs eagerly (training runs it inside `fit`'s or the Trainer's compiled step).
        """
        x = self._images(x)
        return self._loss_terms(x, self.check_condition(condition, x.shape[0]), training=training)

    def call(self, x, condition=None, training=False):
        """Forward pass used by Keras: the reconstruction of `x` (float images in [0, 1])."""
        x = validation.check_images(x, self.image_shape)
        return self._reconstruct(x, condition)

    # ----------------------------------------------------------------- Keras training
    def unpack_batch(self, data):
        """Split a dataset element into (images, condition). Labels are ignored if unconditional."""
        if isinstance(data, dict):
            x, condition = data["image"], data.get("condition", data.get("label"))
        elif isinstance(data, (tuple, list)):
            x, condition = data[0], (data[1] if len(data) > 1 else None)
        else:
            x, condition = data, None
        x = validation.check_images(x, self.image_shape, name="batch images")
        return x, (condition if self.conditional else None)

    def per_replica_loss(self, data, training, step=None):
        """Scalar loss for one replica's batch, averaged over the GLOBAL batch, and the terms.

        The single objective both `fit` (via `train_step`) and the distributed Trainer use.
        """
        x, condition = self.unpack_batch(data)
        terms = self._loss_terms(x, condition, training=training, step=step)
        loss = tf.nn.compute_average_loss(terms["loss"])
        if self.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
        return loss, terms

    def build_from_images(self):
        """Create every weight by running one forward pass on a dummy batch.

        Runs in the model's distribution strategy scope, so a model made inside
        `strategy.scope()` gets mirrored variables however it is first used.
        """
        if not self.built:
            with self.distribute_strategy.scope():
                x = tf.zeros((1, *self.image_shape))
                condition = self.dummy_condition(1)
                self._loss_terms(x, condition, training=False)
            self.built = True

    def dummy_condition(self, batch_size):
        return None

    def build(self, input_shape=None):
        self.build_from_images()

    # Weights are created by a forward pass, so make sure one ran before Keras needs them.
    def fit(self, *args, **kwargs):
        self.build_from_images()
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        self.build_from_images()
        return super().evaluate(*args, **kwargs)

    def save(self, *args, **kwargs):
        self.build_from_images()
        return super().save(*args, **kwargs)

    def save_weights(self, *args, **kwargs):
        self.build_from_images()
        return super().save_weights(*args, **kwargs)

    def load_weights(self, filepath, *args, **kwargs):
        """Load weights; a missing, truncated or mismatched file raises a ValueError naming it."""
        self.build_from_images()
        if not os.path.isfile(str(filepath)):
            raise FileNotFoundError(f"No weights file at {filepath!r}.")
        try:
            return super().load_weights(filepath, *args, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError) as error:  # h5py raises RuntimeError for damaged files
            raise ValueError(
                f"Could not load weights from {filepath!r} into {type(self).__name__} "
                f"(truncated, corrupt, or saved from another architecture): {str(error).splitlines()[0][:300]}"
            ) from None

    def count_params(self):
        self.build_from_images()
        return super().count_params()

    def summary(self, *args, **kwargs):
        self.build_from_images()
        return super().summary(*args, **kwargs)

    # Keras saving: every weight is created from the config alone, so no shapes are stored.
    def get_build_config(self):
        # Keras quotes this in its "Could not locate class" error when vaezoo is not imported
        return {"from_images": True,
                "requires": "vaezoo: run `import vaezoo` before keras.saving.load_model (pip install vaezoo)"}

    def build_from_config(self, config):
        self.build_from_images()

    # ----------------------------------------------------------------- config
    def get_config(self):
        """Constructor arguments as JSON-safe values (keras-hub style)."""
        return {"input_shape": list(self.image_shape), "seed": self.seed, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # ----------------------------------------------------------------- presets (KerasHub style)
    @classmethod
    def from_preset(cls, preset):
        """A model from a preset: a local folder written by `save_to_preset`, or a hub URI
        (`hf://ORG/REPO[@REVISION]`, `kaggle://OWNER/MODEL/keras/VARIANT[/VERSION]`).

        Every file is checked against the sha256 in the preset's `metadata.json` before the
        model is built from `config.json` (no code is loaded). The card goes with the model as
        `model.card`. Called on a family (`vaezoo.VAE.from_preset`), the preset must hold that
        family or a subclass; `vaezoo.load(preset)` takes any family.

        Args:
            preset: a preset folder or a hub URI.

        Example:
            >>> model = vaezoo.VAE.from_preset("presets/vae-mnist")
            >>> model = vaezoo.VAE.from_preset("hf://my-org/vae-mnist@v1")
        """
        from vaezoo import hub, presets

        source = os.fspath(preset)
        path = hub.fetch(source) if hub.is_uri(source) else source
        found = presets.read_preset(path, source=source)
        # every family module is loaded with this one (vaezoo.models imports them all), so the
        # preset's class is in Keras' registry under "vaezoo>NAME"
        family = keras.saving.get_registered_object(f"vaezoo>{found.family}")
        if family is None or not issubclass(family, cls):
            raise presets.PresetError(f"{source} holds a {found.family}, not a {cls.__name__}; "
                                      f"load it with vaezoo.load({source!r}).")
        try:
            model = family.from_config(found.config)
        except (TypeError, ValueError) as error:  # unknown or invalid constructor arguments
            raise presets.PresetError(f"{source}: config.json does not fit {found.family}: {error}") from None
        model.load_weights(found.weights)
        presets.remember_card_weights(model, found.card)
        object.__setattr__(model, "preset_metadata", found.metadata)  # plain dict, not tracked by Keras
        return model

    def save_to_preset(self, preset_dir, name=None, overwrite=False):
        """Write this model as a preset folder (see `vaezoo.save_preset`); returns the folder."""
        from vaezoo import presets

        return presets.save_preset(self, preset_dir, name=name, overwrite=overwrite)
