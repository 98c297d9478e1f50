"""The hierarchical VAE with top-down inference (LVAE, NVAE and VDVAE in miniature).

L stochastic layers z_0 (bottom, next to the image) ... z_{L-1} (top). The generative model
is `p(z_{L-1}) prod_l p(z_l | z_>l) p(x | z)`, with `p(z_{L-1}) = N(0, I)` and every lower
prior a diagonal Gaussian predicted from the top-down state. Inference shares the top-down
path (Sønderby et al., 2016): a bottom-up deterministic pass computes one feature vector per
layer, then the top-down pass goes down the same way the generator does and, at each layer,
corrects the prior with the bottom-up features (the residual parameterisation of NVAE):

    prior params     = prior_net_l(s_l)
    posterior params = prior params + posterior_net_l(concat(s_l, d_l))
    s_{l-1}          = cell_l(s_l + embed_l(z_l))

where `s_l` is the top-down state (`s_{L-1}` is empty: the top cell sees only `embed(z_{L-1})`)
and `d_l` the bottom-up features of layer l. The decoder network maps the final state to the
likelihood's parameters. The last layers of the prior and posterior nets start small and the
raw scales are offset by softplus^-1(1), so at initialisation every prior is close to N(0, I)
and every posterior close to its prior: training starts without the KL spikes that a prior
scale near its floor would cause (VDVAE damps its residual outputs at init for the same reason).
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from vaezoo import networks, validation
from vaezoo.distributions import DiagonalGaussian, StandardNormalPrior, build_likelihood, kl_divergence
from vaezoo.models.base import LatentVariableModel, kl_warmup_weight, kl_with_free_bits

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="vaezoo")
class DenseResidualCell(keras.layers.Layer):
    """`x + dense(relu(dense(relu(x))))`: the residual cell of the hierarchy's vector paths.

    Args:
        units: width of the input and output.
        hidden_units: width of the inner layer (default: `units`).

    Example:
        >>> cell = DenseResidualCell(64)
        >>> cell(keras.ops.zeros([2, 64])).shape
        (2, 64)
    """

    def __init__(self, units, hidden_units=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.hidden_units = int(hidden_units or units)
        self.inner = keras.layers.Dense(self.hidden_units)
        self.outer = keras.layers.Dense(self.units)

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer.build((*input_shape[:-1], self.hidden_units))

    def call(self, x):
        return x + self.outer(keras.ops.relu(self.inner(keras.ops.relu(x))))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "hidden_units": self.hidden_units}


#: softplus^-1(1): a raw scale of 0 plus this offset is a standard deviation of about 1.
_UNIT_RAW_SCALE = math.log(math.e - 1.0)


def _mlp(inputs, hidden, output, name):
    """Dense-relu-dense whose output starts small (VDVAE-style damped init of the last layer)."""
    last = keras.layers.Dense(output, kernel_initializer=keras.initializers.VarianceScaling(0.1))
    return keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(hidden, activation="relu"), last], name=name
    )


@keras.saving.register_keras_serializable(package="vaezoo")
class HierarchicalVAE(LatentVariableModel):
    """Hierarchical VAE with `num_latent_layers` Gaussian latent vectors and top-down inference.

    A bottom-up pass (the `encoder` backbone, then one residual cell per layer) gives features
    `d_0 ... d_{L-1}`; a top-down pass from the top latent, with one residual cell per layer,
    gives each layer's prior `p(z_l | z_>l)` and posterior `q(z_l | x, z_>l)`, whose parameters
    are the prior's plus a correction from `concat(top-down state, d_l)` (NVAE's residual
    normal). The top prior is N(0, I). Layer 0 is next to the image, layer L-1 is the top.

    The objective per example is `nll + w(step) * sum_l max(KL_l, free_bits)`: `KL_l` is the
    analytic KL of layer l given the sampled layers above it (so the per-layer KLs sum to the
    reported `kl`; see `kl_per_layer`), `w` ramps linearly from 0 to 1 over
    `kl_warmup_steps`, and free bits are applied per layer and per example (Kingma et al.,
    2016). `elbo`, the `nll`/`kl` terms and `iwae` are the bounds of the whole hierarchy.

    What the public methods take and return:
    - `encode(x)`: the top layer's posterior `q(z_{L-1} | x)` (the only one that depends on x
      alone), event shape `(latent_dim,)`.
    - `decode(z)`: `z` is a top latent `(batch, latent_dim)`; every lower layer is set to its
      prior mean given the layers above, so `decode` is deterministic.
    - `reconstruct(x)`: posterior means at every layer (deterministic).
    - `sample(n, temperature=t)`: ancestral sampling; `t` scales the prior standard deviation
      at every layer.
    - `kl_per_layer(x)`: a `(batch, L)` tensor of per-layer KLs in nats.

    Args:
        input_shape: image shape `(height, width, channels)`.
        num_latent_layers: number of stochastic layers L, >= 2.
        latent_dim: size of each layer's latent vector.
        hidden_dim: width of the deterministic bottom-up and top-down paths.
        encoder: network spec of the bottom-up backbone (see `vaezoo.networks`), e.g.
            `"resnet"` or `{"type": "resnet", "filters": [32, 64], "blocks": 1, "hidden": 128}`.
        decoder: network spec of the image decoder (top-down state -> likelihood
            parameters); `None` mirrors the encoder.
        likelihood: `"bernoulli"` (binary images), `"discretized_logistic"` (8-bit images),
            `"gaussian"`, or a dict with `type` and the layer's arguments.
        posterior_min_scale: floor of every posterior and prior standard deviation.
        kl_warmup_steps: steps over which the KL weight grows from 0 to 1 (0: off).
        free_bits: minimum KL per latent layer in nats (0: off).
        seed: integer seed for the model's random draws.

    Example:
        >>> model = vaezoo.HierarchicalVAE(input_shape=(28, 28, 1), num_latent_layers=3,
        ...                                latent_dim=16, kl_warmup_steps=1000, free_bits=0.5)
        >>> model.compile(optimizer="adam")
        >>> model.fit(images, epochs=1, batch_size=64)   # uint8 or [0, 1] floats
        >>> model.kl_per_layer(images[:8]).shape          # (batch, L)
        TensorShape([8, 3])
        >>> model.sample(16, seed=0, temperature=0.7).shape
        TensorShape([16, 28, 28, 1])

    References:
        Sønderby et al., "Ladder Variational Autoencoders", NeurIPS 2016.
        Vahdat & Kautz, "NVAE: A Deep Hierarchical Variational Autoencoder", NeurIPS 2020.
        Child, "Very Deep VAEs Generalize Autoregressive Models and Can Outperform Them on
        Images", ICLR 2021.
    """

    latent_kind = "hierarchy"

    def __init__(
        self,
        input_shape=(28, 28, 1),
        num_latent_layers=3,
        latent_dim=16,
        hidden_dim=128,
        encoder="resnet",
        decoder=None,
        likelihood="bernoulli",
        posterior_min_scale=1e-3,
        kl_warmup_steps=0,
        free_bits=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(input_shape=input_shape, seed=seed, **kwargs)
        validation.check_int("num_latent_layers", num_latent_layers, 2)
        validation.check_int("latent_dim", latent_dim, 1)
        validation.check_int("hidden_dim", hidden_dim, 1)
        validation.check_int("kl_warmup_steps", kl_warmup_steps, 0)
        validation.check_positive("free_bits", free_bits, allow_zero=True)
        self.num_latent_layers = int(num_latent_layers)
        self.latent_dim = int(latent_dim)
        self.hidden_dim = int(hidden_dim)
        self.encoder_spec = networks.resolve_spec(encoder)
        self.decoder_spec = networks.resolve_spec(decoder if decoder is not None else encoder)
        self.likelihood_spec = likelihood
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.free_bits = float(free_bits)

        L, d, h = self.num_latent_layers, self.latent_dim, self.hidden_dim
        self.posterior = DiagonalGaussian(posterior_min_scale, name="posterior")
        self.conditional_prior = DiagonalGaussian(posterior_min_scale, name="conditional_prior")
        self.prior = StandardNormalPrior((d,), name="prior")  # of the top layer
        self.likelihood = build_likelihood(likelihood)
        params = self.posterior.params_size(d)
        # bottom-up: backbone to a vector, then one residual cell per layer (index 0 = bottom)
        self.encoder = networks.build_encoder(self.encoder_spec, self.image_shape, h)
        self.bottom_up_cells = [DenseResidualCell(h, name=f"bottom_up_{l}") for l in range(L)]
        # top-down: per layer a posterior correction (the top one sees d_{L-1} only), a prior
        # (not the top), a latent embedding and a residual cell
        self.posterior_nets = [
            _mlp(h if l == L - 1 else 2 * h, h, params, f"posterior_net_{l}") for l in range(L)
        ]
        self.prior_nets = [_mlp(h, h, params, f"prior_net_{l}") for l in range(L - 1)]
        self.latent_embeddings = [keras.layers.Dense(h, name=f"embed_{l}") for l in range(L)]
        self.top_down_cells = [DenseResidualCell(h, name=f"top_down_{l}") for l in range(L)]
        likelihood_shape = (*self.image_shape[:2], self.likelihood.params_size(self.image_shape[-1]))
        self.decoder = networks.build_decoder(self.decoder_spec, h, likelihood_shape)
        # Create every weight now, inside whatever tf.distribute scope the model is made in.
        for layer in self.bottom_up_cells + self.top_down_cells:
            layer.build((None, h))
        for layer in self.latent_embeddings:
            layer.build((None, d))
        self.likelihood.build((None, *likelihood_shape))

    # ----------------------------------------------------------------- the two passes
    def _bottom_up(self, x):
        """Features `[d_0, ..., d_{L-1}]`, each `(batch, hidden_dim)`."""
        h = self.encoder(x)
        features = []
        for cell in self.bottom_up_cells:
            h = cell(h)
            features.append(h)
        return features

    def _unit_scale(self, params):
        """Shift the raw scales so that zero network outputs mean a standard deviation of ~1."""
        offset = tf.concat([tf.zeros([self.latent_dim]), tf.fill([self.latent_dim], _UNIT_RAW_SCALE)], 0)
        return params + tf.cast(offset, params.dtype)

    def _top_posterior(self, features):
        """q(z_{L-1} | x) from the top bottom-up features."""
        top = self.num_latent_layers - 1
        return self.posterior(self._unit_scale(self.posterior_nets[top](features[top])))

    def _step(self, state, layer, z):
        """Top-down state after latent `z` of `layer`."""
        embedded = self.latent_embeddings[layer](z)
        state = embedded if state is None else state + embedded
        return self.top_down_cells[layer](state)

    def _top_down(self, features=None, n=None, seed=None, temperature=1.0, use_mean=False, top=None, noise=None):
        """Run the top-down pass; returns a dict of per-layer lists (index = layer) and the state.

        With `features` (the bottom-up pass) each z_l comes from the posterior (its mean with
        `use_mean`, else a sample drawn with `seed`); without, from the prior, as its mean
        plus `temperature` times its standard deviation times `noise[l]` (standard normal
        draws `(n, latent_dim)`, see `_sample_noise`; the mean with `use_mean`), starting from
        the top latent `top` if given. Returns `z`, `prior` (untempered), `posterior`
        (posterior mode only) and `state`.
        """
        L = self.num_latent_layers
        seeds = None if use_mean or features is None else tf.random.experimental.stateless_split(seed, L)
        if features is not None:
            n = tf.shape(features[0])[0]
        elif noise is None and not use_mean and top is None:
            noise = self._sample_noise(n, seed)
        out = {"z": [None] * L, "prior": [None] * L, "posterior": [None] * L}
        state = None
        for layer in reversed(range(L)):
            if layer == L - 1:
                prior = self.prior()
            else:
                prior_params = self._unit_scale(self.prior_nets[layer](state))
                prior = self.conditional_prior(prior_params)
            if features is not None:
                if layer == L - 1:
                    posterior = self._top_posterior(features)
                else:
                    delta = self.posterior_nets[layer](tf.concat([state, features[layer]], -1))
                    posterior = self.posterior(prior_params + delta)
                z = posterior.mean() if use_mean else posterior.sample(seed=seeds[layer])
                out["posterior"][layer] = posterior
            elif layer == L - 1 and top is not None:
                z = top
            elif layer == L - 1:
                z = tf.zeros((n, self.latent_dim)) if use_mean else temperature * noise[layer]
            else:
                loc, scale = prior.loc, prior.scale
                z = loc if use_mean else loc + temperature * scale * noise[layer]
            out["prior"][layer] = prior
            out["z"][layer] = z
            state = self._step(state, layer, z)
        out["state"] = state
        return out

    def _likelihood(self, state):
        return self.likelihood(self.decoder(state))

    def _nll(self, x, state):
        return -self._likelihood(state).log_prob(self.likelihood.targets(x))

    def _forward(self, x, seed):
        """One posterior sample through the hierarchy: nll, per-layer KL `(batch, L)` and kl."""
        out = self._top_down(self._bottom_up(x), seed=seed)
        kls = [
            kl_divergence(q, p, z) for q, p, z in zip(out["posterior"], out["prior"], out["z"])
        ]
        kl_per_layer = tf.stack(kls, axis=-1)
        nll = self._nll(x, out["state"])
        return {"nll": nll, "kl_per_layer": kl_per_layer, "kl": tf.reduce_sum(kl_per_layer, -1)}

    # ----------------------------------------------------------------- hooks
    def _encode(self, x, condition=None):
        return self._top_posterior(self._bottom_up(x))

    def _decode(self, z, condition=None):
        out = self._top_down(n=tf.shape(z)[0], use_mean=True, top=z)
        return self._likelihood(out["state"])

    def _loss_terms(self, x, condition=None, training=False, step=None):
        terms = self._forward(x, self._next_seed())
        kl_for_loss = kl_with_free_bits(terms["kl_per_layer"], self.free_bits)
        loss = terms["nll"] + kl_warmup_weight(step, self.kl_warmup_steps) * kl_for_loss
        return {"loss": loss, "nll": terms["nll"], "kl": terms["kl"]}

    def _score_terms(self, x, condition=None):
        out = self._top_down(self._bottom_up(x), use_mean=True)
        kls = [kl_divergence(q, p, z) for q, p, z in zip(out["posterior"], out["prior"], out["z"])]
        return {"nll": self._nll(x, out["state"]), "kl": tf.add_n(kls)}

    def _posterior_means(self, x, condition=None):
        out = self._top_down(self._bottom_up(x), use_mean=True)
        return [q.mean() for q in out["posterior"]]

    def _log_importance_weights(self, x, condition, num_samples):
        # The bottom-up pass is deterministic: run it once and tile its features k times.
        features = [tf.tile(f, [num_samples, 1]) for f in self._bottom_up(x)]
        out = self._top_down(features, seed=self._next_seed())
        log_w = -self._nll(tf.tile(x, [num_samples, 1, 1, 1]), out["state"])
        for q, p, z in zip(out["posterior"], out["prior"], out["z"]):
            log_w += p.log_prob(z) - q.log_prob(z)
        return tf.reshape(log_w, (num_samples, -1))

    def _sample_noise(self, n, seed):
        # one stateless stream per layer: the draws `_top_down` made from `seed` before
        seeds = tf.random.experimental.stateless_split(seed, self.num_latent_layers)
        return [tf.random.stateless_normal((n, self.latent_dim), seed=seeds[layer])
                for layer in range(self.num_latent_layers)]

    def _sample_from_noise(self, noise, condition, temperature=1.0):
        out = self._top_down(n=tf.shape(noise[0])[0], temperature=temperature, noise=noise)
        return self.likelihood.image(self._likelihood(out["state"]))

    def _reconstruct(self, x, condition=None):
        """The posterior mean at every layer, decoded (what `reconstruct` returns)."""
        out = self._top_down(self._bottom_up(x), use_mean=True)
        return self.likelihood.image(self._likelihood(out["state"]))

    # ----------------------------------------------------------------- public API
    def call(self, x, condition=None, training=False):
        """Forward pass used by Keras: `reconstruct(x)` (float images in [0, 1])."""
        return self._reconstruct(validation.check_images(x, self.image_shape))

    def kl_per_layer(self, x, seed=None):
        """Per-layer KL(q(z_l | x, z_>l) || p(z_l | z_>l)) in nats, shape `(batch, L)`.

        Column l is layer l (0 = bottom). Each KL is analytic given one posterior sample of
        the layers above, drawn as in `loss_terms`; the columns sum to its `kl`.

        Args:
            x: images, uint8 in [0, 255] or float in [0, 1], shape `(batch, *input_shape)`.
            seed: integer for a reproducible draw; `None` draws from the model's generator.
        """
        x = self._images(x)
        return self._core("kl_per_layer", self._kl_per_layer_core, x, self._seed_pair(seed))

    def _kl_per_layer_core(self, x, seed):
        return self._forward(x, seed)["kl_per_layer"]

    def get_config(self):
        return {
            **super().get_config(),
            "num_latent_layers": self.num_latent_layers,
            "latent_dim": self.latent_dim,
            "hidden_dim": self.hidden_dim,
            "encoder": self.encoder_spec,
            "decoder": self.decoder_spec,
            "likelihood": self.likelihood_spec,
            "posterior_min_scale": self.posterior.min_scale,
            "kl_warmup_steps": self.kl_warmup_steps,
            "free_bits": self.free_bits,
        }
