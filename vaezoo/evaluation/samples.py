"""Samples of a conditional model judged by a reference classifier."""

import numpy as np

from vaezoo import validation
from vaezoo.evaluation.records import Metric, batches


def _check_classifier(model, classifier):
    from vaezoo.models.base import check_model

    check_model(model, "conditional_accuracy", conditional=(True,))
    if model.num_classes is None:
        raise ValueError(
            "conditional_accuracy needs a CVAE conditioned on class labels (num_classes); "
            f"got {type(model).__name__} with condition_dim={model.condition_dim}."
        )
    if classifier is None or not callable(classifier):
        raise ValueError(
            "conditional_accuracy needs a classifier: a Keras model mapping float images in [0, 1] "
            f"of shape (batch, {', '.join(map(str, model.image_shape))}) to (batch, {model.num_classes}) "
            "logits or probabilities (e.g. vaezoo.classifier.load_reference_classifier())."
        )
    probe = np.asarray(classifier(np.zeros((1, *model.image_shape), np.float32)))
    if probe.shape != (1, model.num_classes):
        raise ValueError(
            f"the classifier must map images (batch, {', '.join(map(str, model.image_shape))}) to "
            f"(batch, {model.num_classes}) scores for the CVAE's {model.num_classes} classes; "
            f"it returned shape {probe.shape} for one image."
        )


def conditional_accuracy(model, classifier, samples_per_class=100, seed=0, batch_size=128, temperature=1.0):
    """Accuracy of a reference classifier on class-conditional samples of a CVAE.

    Protocol: for every class c in [0, K), draw `samples_per_class` images with
    `model.sample(n, condition=[c] * n, seed=seed + c)` (float images in [0, 1]), classify
    them with `classifier` (its argmax), and count the samples classified as c. Reports the
    overall accuracy (equal weight per class) and the accuracy of each class. 1/K is chance.

    Args:
        model: a CVAE with `num_classes`.
        classifier: callable (a Keras model) mapping `(batch, *image_shape)` float images in
            [0, 1] to `(batch, K)` logits or probabilities.
        samples_per_class: samples drawn per class, >= 1.
        seed: integer seed of the samples.

    Returns:
        dict with `conditional_accuracy` (float) and `conditional_accuracy_per_class` (list).
    """
    validation.check_int("samples_per_class", samples_per_class, 1)
    validation.check_int("seed", seed, 0)
    _check_classifier(model, classifier)
    per_class = []
    for c in range(model.num_classes):
        correct = 0
        for s in batches(samples_per_class, batch_size):
            n = s.stop - s.start
            images = model.sample(n, seed=seed + c * 100_003 + s.start, condition=np.full(n, c, np.int64),
                                  temperature=temperature)
            predicted = np.argmax(np.asarray(classifier(images)), axis=-1)
            correct += int(np.sum(predicted == c))
        per_class.append(correct / samples_per_class)
    return {"conditional_accuracy": float(np.mean(per_class)), "conditional_accuracy_per_class": per_class,
            "samples_per_class": int(samples_per_class)}


def _applies(model, inputs):
    if not (model.conditional and model.num_classes is not None):
        return f"conditional_accuracy needs a CVAE with num_classes; got {type(model).__name__}"
    if inputs.classifier is None:
        return "conditional_accuracy needs classifier= (e.g. vaezoo.classifier.load_reference_classifier())"
    return None


def _prepare(run):
    validation.check_int("samples_per_class", run.options.samples_per_class, 1)
    _check_classifier(run.model, run.inputs.classifier)


def _card_protocol(metric, results, report, data):
    return (f"{metric.description}; {results['samples_per_class']} samples per class at temperature 1, "
            f"seed {report['seed']}, classified by the reference classifier {report.get('classifier')!r}")


CONDITIONAL_ACCURACY = Metric(
    "conditional_accuracy", "CVAE: accuracy of a reference classifier on class-conditional samples",
    lambda run: conditional_accuracy(run.model, run.inputs.classifier, run.options.samples_per_class,
                                     run.options.seed or 0, run.options.batch_size),
    keys=("conditional_accuracy", "conditional_accuracy_per_class"), bookkeeping=("samples_per_class",),
    applies=_applies, prepare=_prepare, takes=("classifier",), card_protocol=_card_protocol,
)
RECORDS = (CONDITIONAL_ACCURACY,)
