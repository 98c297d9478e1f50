"""Anomaly detection: scores per image and AUROC / average precision of inliers vs outliers."""

import numpy as np

from vaezoo.evaluation.likelihood import elbo_per_example, elbos, iwae_per_example, iwaes
from vaezoo.evaluation.reconstruction import errors, reconstruction_errors
from vaezoo.evaluation.records import Metric, as_float64

#: anomaly scores (higher = more anomalous).
SCORES = {
    "elbo": "negative ELBO (nats)",
    "iwae": "negative IWAE_k estimate (nats)",
    "reconstruction": "per-image reconstruction MSE",
}


def _scores(values, name):
    values = as_float64(values).reshape(-1)
    if values.size == 0:
        raise ValueError(f"{name} is empty; anomaly metrics need at least one inlier and one outlier score.")
    if np.any(np.isnan(values)):
        raise ValueError(f"{name} contains NaN; anomaly scores must be numbers (inf is allowed).")
    return values


def _average_ranks(values):
    """Ranks 1..n of `values`, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values) != 0) + 1]
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def auroc(inlier_scores, outlier_scores):
    """Area under the ROC curve of an anomaly score, outliers as the positive class.

    Protocol: higher scores mean "more anomalous". Computed from ranks (the Mann-Whitney U
    statistic): `AUROC = (R_out - n_out (n_out + 1) / 2) / (n_out n_in)`, with `R_out` the sum
    of the outliers' ranks among all scores and ties given their average rank. This equals
    the probability that a random outlier scores higher than a random inlier, counting ties
    as one half. 0.5 is chance, 1.0 perfect separation.
    """
    inliers = _scores(inlier_scores, "inlier scores")
    outliers = _scores(outlier_scores, "outlier scores")
    ranks = _average_ranks(np.concatenate([outliers, inliers]))
    n_out, n_in = len(outliers), len(inliers)
    u = ranks[:n_out].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_out * n_in))


def average_precision(inlier_scores, outlier_scores):
    """Average precision (area under the precision-recall curve), outliers as positives.

    Protocol (as scikit-learn's `average_precision_score`): sort by score, highest first;
    at each distinct score threshold t compute precision P(t) and recall R(t) of "score >= t";
    `AP = sum_t (R(t) - R(t_prev)) * P(t)`. Tied scores enter together. The chance level is
    the fraction of outliers, n_out / (n_out + n_in).
    """
    inliers = _scores(inlier_scores, "inlier scores")
    outliers = _scores(outlier_scores, "outlier scores")
    scores = np.concatenate([outliers, inliers])
    labels = np.concatenate([np.ones(len(outliers)), np.zeros(len(inliers))])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    true_pos = np.cumsum(labels)[last_of_threshold]
    predicted_pos = last_of_threshold + 1
    precision = true_pos / predicted_pos
    recall = true_pos / len(outliers)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


auprc = average_precision


def anomaly_scores(model, images, score="elbo", condition=None, k=64, batch_size=128, max_parallel_samples=4096):
    """Anomaly score of every image (higher = more anomalous), float64 `(n,)`.

    Args:
        score: `"elbo"` (negative ELBO), `"iwae"` (negative IWAE_k) or `"reconstruction"`
            (per-image reconstruction MSE on the [0, 1] scale).
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}.")
    if score == "elbo":
        return -elbo_per_example(model, images, condition, batch_size)
    if score == "iwae":
        return -iwae_per_example(model, images, k, condition, batch_size, max_parallel_samples)
    return reconstruction_errors(model, images, condition, batch_size)


def _inlier_and_outlier_scores(run):
    def compute():
        o = run.options
        inliers = {"elbo": lambda: -elbos(run), "iwae": lambda: -iwaes(run), "reconstruction": lambda: errors(run)}
        x_out, c_out = run.inputs.outliers
        outliers = anomaly_scores(run.model, x_out, o.score, c_out, o.k, o.batch_size, o.max_parallel_samples)
        return inliers[o.score](), outliers

    return run.cached("anomaly_scores", compute)


def _needs_outliers(name):
    def applies(model, inputs):
        if inputs.outliers is None:
            return f"{name} needs an outlier set: pass outliers=images (uint8 or [0, 1] floats)"
        return None

    return applies


def _bookkeeping(run):
    return {"anomaly_score": run.options.score, "outliers": int(len(run.inputs.outliers[0]))}


def _auroc(run):
    inliers, outliers = _inlier_and_outlier_scores(run)
    return {**_bookkeeping(run), "auroc": auroc(inliers, outliers)}


def _auprc(run):
    inliers, outliers = _inlier_and_outlier_scores(run)
    n_out = len(outliers)
    return {**_bookkeeping(run), "auprc": average_precision(inliers, outliers),
            "auprc_chance": n_out / (n_out + len(run.images))}


def _card_protocol(metric, results, report, data):
    return f"{metric.description}; {data}; score {results['anomaly_score']}, {results['outliers']} outliers"


AUROC = Metric(
    "auroc", "area under the ROC curve, outliers vs inliers, for the anomaly `score`", _auroc,
    keys=("auroc",), bookkeeping=("anomaly_score", "outliers"), applies=_needs_outliers("auroc"),
    takes=("outliers",), card_protocol=_card_protocol,
)
AUPRC = Metric(
    "auprc", "average precision (area under precision-recall), outliers as positives", _auprc,
    keys=("auprc",), bookkeeping=("anomaly_score", "outliers", "auprc_chance"), applies=_needs_outliers("auprc"),
    takes=("outliers",), card_protocol=_card_protocol,
)
RECORDS = (AUROC, AUPRC)
