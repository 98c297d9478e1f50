"""Disentanglement metrics as evaluation records (their maths is in `vaezoo.disentanglement`).

They are measured on fresh draws from a `FactorSampler` (`factors=`), not on the evaluated data.
"""

import numpy as np

from vaezoo import validation
from vaezoo.evaluation.records import Metric


def _check_factors(model, factors):
    from vaezoo.disentanglement import FactorSampler

    if not isinstance(factors, FactorSampler):
        raise TypeError(f"factors must be a vaezoo.disentanglement.FactorSampler, got {type(factors).__name__}.")
    _, observation = factors.sample(1, np.random.default_rng(0))
    if tuple(observation.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"factors produce observations of shape {tuple(observation.shape[1:])}; "
                         f"the model takes {tuple(model.image_shape)}.")


def _check_points(points):
    if not (isinstance(points, (tuple, list)) and len(points) == 2):
        raise ValueError(f"disentanglement_points must be (num_train, num_eval), got {points!r}.")
    validation.check_int("disentanglement_points[0] (num_train)", points[0], 1)
    validation.check_int("disentanglement_points[1] (num_eval)", points[1], 1)
    return int(points[0]), int(points[1])


def _applies(model, inputs, name):
    if model.latent_kind != "vector" or model.conditional:
        return f"{name} needs an unconditional single-layer Gaussian VAE (VAE, BetaVAE); got {type(model).__name__}"
    if inputs.factors is None:
        return (f"{name} needs ground-truth factors: pass factors= (a vaezoo.disentanglement.FactorSampler, "
                "e.g. FactorSampler.dsprites()); `vaezoo eval` does this for dsprites data")
    return None


def _prepare(run):
    run.cached("disentanglement_points", lambda: _check_points(run.options.disentanglement_points))
    _check_factors(run.model, run.inputs.factors)


def _representation(run):
    from vaezoo import disentanglement

    batch_size = max(run.options.batch_size, 256)
    return run.cached("representation", lambda: disentanglement.mean_representation(run.model, batch_size=batch_size))


def _mig(run):
    from vaezoo import disentanglement

    mig = disentanglement.mig(_representation(run), run.inputs.factors, seed=run.options.seed or 0)
    return {"mig": mig["score"], "mig_per_factor": [float(v) for v in mig["per_factor"]]}


def _score(name):
    def compute(run):
        from vaezoo import disentanglement

        num_train, num_eval = run.cached("disentanglement_points", None)
        score = getattr(disentanglement, name)(_representation(run), run.inputs.factors, num_train=num_train,
                                               num_eval=num_eval, seed=run.options.seed or 0,
                                               progress=run.options.progress)
        return {name: score["score"], "disentanglement_points": [num_train, num_eval]}

    return compute


def _card_protocol(metric, results, report, data):
    if metric.name == "mig":
        points = "10,000 points"
    else:
        num_train, num_eval = results["disentanglement_points"]
        points = f"{num_train} training and {num_eval} evaluation points"
    return (f"{metric.description}; fresh draws of the dSprites factor grid (FactorSampler.dsprites()), "
            f"{points}, seed {report['seed']}; representation = posterior mean")


def _record(name, description, compute, keys, bookkeeping=()):
    return Metric(name, description, compute, keys=keys, bookkeeping=bookkeeping,
                  applies=lambda model, inputs: _applies(model, inputs, name), prepare=_prepare,
                  takes=("factors",), card_protocol=_card_protocol)


MIG = _record("mig", "mutual information gap (Chen et al.) of the posterior means, 10,000 factor draws, 20 bins",
              _mig, keys=("mig", "mig_per_factor"))
BETA_VAE_SCORE = _record(
    "beta_vae_score", "BetaVAE score (Higgins et al.): logistic-regression accuracy on |z1 - z2| of 64 pairs",
    _score("beta_vae_score"), keys=("beta_vae_score",), bookkeeping=("disentanglement_points",))
FACTOR_VAE_SCORE = _record(
    "factor_vae_score", "FactorVAE score (Kim & Mnih): majority-vote accuracy on the least-variant dimension",
    _score("factor_vae_score"), keys=("factor_vae_score",), bookkeeping=("disentanglement_points",))
RECORDS = (MIG, BETA_VAE_SCORE, FACTOR_VAE_SCORE)
