"""Evaluation reports: what `vaezoo eval` does, and the zoo-card records made from a report.

`run_eval` resolves a MODEL (`vaezoo.registry.resolve_model`), loads its data split
(`vaezoo.data.load_split`), runs `vaezoo.evaluation.evaluate` and returns a JSON-safe report
with the date and hardware; `card_records` turns a report into the metric records of a zoo
card, each with the protocol its `Metric` record gives (`vaezoo.zoo_maintenance` writes them).
"""

import datetime

from vaezoo import evaluation, registry, validation
from vaezoo.data import load_split, split_spec


def run_eval(model_ref, data=None, split="test", metrics=evaluation.DEFAULT_METRICS, k=64, batch_size=128, limit=10000,
             outliers=None, score="elbo", classifier=None, samples_per_class=100, seed=0,
             disentanglement_points=(10000, 5000)):
    """What `vaezoo eval` does: load a model and its data split, `evaluate`, return a report.

    Args:
        model_ref: anything `vaezoo.registry.resolve_model` takes (a registry name, a `.keras`
            file, a training workdir).
        data: a data spec dict (see `vaezoo.data.make_dataset`); default the model's own
            (workdir config or registry card). A `.keras` file needs one.
        split: which split of the data spec (see `vaezoo.data.load_split`).
        limit: evaluate at most this many images (0: all).
        outliers: a data spec of the outlier set (same split) for `auroc` / `auprc`.
        classifier: a reference classifier name (`"mnist"`) or `.weights.h5` path for
            `conditional_accuracy`.
        metrics, k, batch_size, score, samples_per_class, seed, disentanglement_points: as in
            `vaezoo.evaluation.evaluate`. The disentanglement metrics need dSprites data (`source: dsprites`):
            their factors come from `FactorSampler.dsprites()`.

    Returns:
        dict with `model`, `kind`, `family`, `data`, `split`, `metrics` (the results) and
        `date`, `hardware`.
    """
    names = evaluation.check_metric_names(metrics)  # fail on a typo before loading anything
    validation.check_int("k", k, 1)
    validation.check_int("batch_size", batch_size, 1)
    if limit is not None:
        validation.check_int("limit", limit, 0)
    model, _, own_spec, kind = registry.resolve_model(model_ref)
    spec = data if data is not None else own_spec
    if spec is None:
        raise ValueError(f"{model_ref!r} carries no data spec; pass one with --data (a JSON/YAML spec or file).")
    classifier_ref = classifier
    if classifier is not None:
        from vaezoo.classifier import PRETRAINED, load_reference_classifier

        classifier = (load_reference_classifier(classifier) if classifier in PRETRAINED
                      else load_reference_classifier(weights=classifier))
    factors = None
    disentangling = evaluation.DISENTANGLEMENT_METRICS
    if any(m in disentangling or m == "all" for m in names) and (spec or {}).get("source") == "dsprites":
        from vaezoo.disentanglement import FactorSampler

        factors = FactorSampler.dsprites()
    elif any(m in disentangling for m in names):
        raise ValueError(f"{', '.join(m for m in names if m in disentangling)} need data with known "
                         f"generative factors (source: dsprites); {model_ref!r} evaluates on "
                         f"source {(spec or {}).get('source')!r}.")
    evaluation.plan(model, names, outliers, classifier, factors)  # metric/model mismatches before the data is read
    conditional = model.conditional
    images, labels = load_split(spec, split, limit, labels=conditional, seed=seed + 1)
    inputs = (images, labels) if conditional else images
    outlier_inputs = None
    if outliers is not None:
        out_images, out_labels = load_split(outliers, split, limit, labels=conditional, seed=seed + 2)
        outlier_inputs = (out_images, out_labels) if conditional else out_images
    results = evaluation.evaluate(model, inputs, metrics=names, k=k, batch_size=batch_size, outliers=outlier_inputs,
                                  score=score, classifier=classifier, samples_per_class=samples_per_class,
                                  seed=seed, factors=factors, disentanglement_points=disentanglement_points,
                                  progress=True)
    return {
        "model": model_ref,
        "kind": kind,
        "family": type(model).__name__,
        "data": split_spec(spec, split),
        "split": split,
        "seed": seed,
        "classifier": classifier_ref,
        "metrics": results,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "hardware": hardware_description(),
    }


def hardware_description():
    """CPU model and core count, GPUs if TensorFlow sees any, and the TensorFlow version."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    text = f"{cpu}, {os.cpu_count()} cores"
    if gpus:
        text += f", {len(gpus)} GPU(s)"
    return f"{text}; TensorFlow {tf.__version__}"


def card_records(report, command):
    """Zoo-card metric records `{key: {value, split, protocol, hardware, date, command[, stderr]}}` of a report.

    Every measurement key of every metric in the report gets a record whose protocol comes from
    its `Metric` record and the evaluated data; bookkeeping keys (counts, settings) are left
    out, and `elbo` / `iwae` carry their standard error of the mean as `stderr`.
    """
    results = report["metrics"]
    data = report["data"]
    source = data.get("path") or data.get("name") or data.get("source")
    evaluated = (f"{results['examples']} {report['split']} images of {data.get('source')}:{source} "
                 f"(preprocess {data.get('preprocess', 'scale')}), seed {report['seed']}")
    records = {}
    for metric in evaluation.METRICS.values():
        for key in metric.keys:
            if key not in results:
                continue
            records[key] = {"value": results[key], "split": report["split"],
                            "protocol": metric.protocol_for_card(results, report, evaluated),
                            "hardware": report["hardware"], "date": report["date"], "command": command}
            if f"{key}_stderr" in results:  # elbo, iwae: standard error of the mean over the examples
                records[key]["stderr"] = results[f"{key}_stderr"]
    return records


__all__ = ["run_eval", "hardware_description", "card_records"]
