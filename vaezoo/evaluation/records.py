"""What a metric is to `evaluate`: one `Metric` record, and the `EvaluationRun` it reads.

A record carries everything about one metric: its name, a one-line description, the protocol
a card prints, when it applies (and the reason when it does not), what it checks before any
computation, the result keys it writes, and its computation. `vaezoo.evaluation.METRICS`
collects the records of every concern module; adding a metric is one record there.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np


def _always(model, inputs):
    return None


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What `evaluate` was given besides the model and the data: decides what applies."""

    outliers: object = None
    classifier: object = None
    factors: object = None


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric: description, protocol, applicability and computation.

    Args:
        name: the name `evaluate` accepts; also its main result key.
        description: one line, for `vaezoo eval --help`, tables and cards.
        compute: `compute(run) -> dict` of result keys, reading an `EvaluationRun`.
        keys: every result key `compute` writes that is a measurement (cards record these).
        bookkeeping: result keys that describe the measurement (counts, settings, chance
            levels); left out of cards.
        applies: `applies(model, inputs) -> None`, or the reason the metric does not apply
            to that model or misses an input (`Inputs`).
        prepare: `prepare(run)`, run for every planned metric before any computation:
            checks options and may cache what it derives (`run.cached`).
        takes: the `Inputs` fields the metric uses (`"outliers"`, `"classifier"`,
            `"factors"`); `evaluate` refuses outliers that no planned metric takes.
        card_protocol: `card_protocol(metric, results, report, data) -> str`, the protocol a
            card records, given the record itself, the results, the `vaezoo eval` report and a
            description of the evaluated data; default `"{description}; {data}"`.

    Example:
        >>> Metric("mean_brightness", "mean pixel value of the evaluated images",
        ...        compute=lambda run: {"mean_brightness": float(run.images.mean())},
        ...        keys=("mean_brightness",))
    """

    name: str
    description: str
    compute: Callable
    keys: tuple
    bookkeeping: tuple = ()
    applies: Callable = _always
    prepare: Optional[Callable] = None
    takes: tuple = ()
    card_protocol: Optional[Callable] = None

    def protocol_for_card(self, results, report, data):
        if self.card_protocol is None:
            return f"{self.description}; {data}"
        return self.card_protocol(self, results, report, data)


@dataclasses.dataclass(frozen=True)
class Options:
    """The settings of one `evaluate` call (see its docstring), validated by it."""

    k: int = 64
    batch_size: int = 128
    score: str = "elbo"
    samples_per_class: int = 100
    active_threshold: float = 0.01
    data_variance: Optional[float] = None
    max_parallel_samples: int = 4096
    seed: Optional[int] = None
    disentanglement_points: tuple = (10000, 5000)
    progress: bool = False


class EvaluationRun:
    """The model, data, inputs and options of one `evaluate` call, and the values its metrics share.

    Per-example values that several metrics need (ELBOs, IWAE estimates, reconstruction
    errors, code grids, anomaly scores) are computed once, on first use, through `cached`.

    Args:
        model: the model.
        images: float32 images in [0, 1], validated.
        condition: one condition per image, or None.
        inputs: the `Inputs` (outliers as validated `(images, conditions)`).
        options: the `Options`.
    """

    def __init__(self, model, images, condition, inputs, options):
        self.model = model
        self.images = images
        self.condition = condition
        self.inputs = inputs
        self.options = options
        self._cache = {}

    def cached(self, key, compute):
        """`compute()` the first time `key` is asked for, the stored value after that."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


# --------------------------------------------------------------------------- shared helpers
def batches(n, batch_size):
    """Slices of `range(n)` of at most `batch_size` items."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def as_float64(x):
    return np.asarray(x, dtype=np.float64)


def condition_kwargs(condition, index=None):
    """`{"condition": condition[index]}`, or `{}` for an unconditional evaluation."""
    if condition is None:
        return {}
    return {"condition": condition if index is None else condition[index]}


def stderr(values):
    """Standard error of the mean of `values` (NaN for fewer than two)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
