"""Choosing a `tf.distribute` strategy from a name: auto, one_device, mirrored, multi_worker, tpu.

`auto` picks TPU when one is configured (`TPU_NAME` or Colab's `COLAB_TPU_ADDR`), multi-worker
when `TF_CONFIG` names more than one task, mirrored when more than one GPU is visible, and one
device otherwise.
"""

import json
import os

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def parse_tf_config(text=None):
    """Parse and check `TF_CONFIG`; returns the dict (or None when unset).

    Raises a ValueError naming the problem when it is not JSON or lacks `cluster`/`task`.
    """
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]!r}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise ValueError('TF_CONFIG must be a JSON object with a "cluster" mapping, e.g. '
                         '{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}, '
                         '"task": {"type": "worker", "index": 0}}.')
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError('TF_CONFIG needs a "task" with "type" and "index", e.g. {"type": "worker", "index": 0}.')
    jobs = config["cluster"]
    if task["type"] not in jobs:
        raise ValueError(f"TF_CONFIG task type {task['type']!r} is not in the cluster jobs {sorted(jobs)}.")
    if not 0 <= int(task["index"]) < len(jobs[task["type"]]):
        raise ValueError(f"TF_CONFIG task index {task['index']} is out of range for job {task['type']!r} "
                         f"with {len(jobs[task['type']])} task(s).")
    return config


def cluster_size(config):
    return sum(len(v) for k, v in config["cluster"].items() if k in ("chief", "worker"))


def choose_strategy_name(name="auto"):
    """Resolve `auto` to a concrete strategy name (see module docstring)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}.")
    if name != "auto":
        return name
    if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR"):
        return "tpu"
    config = parse_tf_config()
    if config is not None and cluster_size(config) > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "one_device"


def make_strategy(name="auto", devices=None):
    """Build the `tf.distribute.Strategy` for `name`; `devices` only for mirrored."""
    import tensorflow as tf

    name = choose_strategy_name(name)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "multi_worker":
        if parse_tf_config() is None:
            raise ValueError("The multi_worker strategy needs TF_CONFIG describing the cluster.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def is_chief(strategy):
    """True on the task that writes the real checkpoints and summaries."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())
