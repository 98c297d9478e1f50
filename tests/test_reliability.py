"""Reliability and safety: no code runs from files, writes survive SIGKILL, concurrent cache use."""

import os
import random
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

import vaezoo
from vaezoo import registry


def test_keras_file_with_a_lambda_layer_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    # The lambda's own (marshalled) bytecode creates the marker whenever it runs; the path is the
    # layer's `arguments`, saved with it, so the file is self-contained.
    touch = lambda x, path: (open(path, "a").close(), x * 2)[1]  # noqa: E731
    inputs = keras.Input((2,))
    evil = keras.layers.Lambda(touch, arguments={"path": str(marker)})(inputs)
    keras.Model(inputs, evil).save(tmp_path / "evil.keras")
    marker.unlink(missing_ok=True)  # building the model ran the function once

    with pytest.raises(registry.UnsafeFileError, match="refuses to run code"):
        registry.resolve_model(str(tmp_path / "evil.keras"))
    assert not marker.exists()

    # Positive control: the same file loaded without safe mode does run the code.
    unsafe = keras.saving.load_model(tmp_path / "evil.keras", safe_mode=False)
    np.testing.assert_array_equal(np.asarray(unsafe(np.ones((1, 2), np.float32))), [[2.0, 2.0]])
    assert marker.exists()


def test_no_pickle_anywhere_in_the_package():
    root = os.path.dirname(vaezoo.__file__)
    offenders = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                if re.search(r"^\s*import pickle|pickle\.load|allow_pickle=True|yaml\.load\(|unsafe_load", text, re.M):
                    offenders.append(name)
    assert offenders == []


def _tiny_config(tmp_path, steps):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=(rng.random((64, 16, 16, 1)) > 0.7).astype(np.float32))
    config = {"model": {"class": "VAE", "config": {"input_shape": [16, 16, 1], "latent_dim": 2, "seed": 0,
                                                   "encoder": {"type": "mlp", "hidden": [64]}}},
              "data": {"source": "npz", "path": str(tmp_path / "d.npz")},
              "train": {"steps": steps, "batch_size": 8, "log_every": 1, "checkpoint_every": 1,
                        "keep_checkpoints": 2, "eval_batches": 1, "strategy": "one_device"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_the_checkpoint(tmp_path):
    """20 trials: a training process that checkpoints every step is SIGKILLed at a random
    moment; each time the newest checkpoint must load, and the next trial resumes from it."""
    config = _tiny_config(tmp_path, steps=100000)
    workdir = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "vaezoo.cli", "train", config, "--workdir", str(workdir)]
    rng = random.Random(0)
    last_step = 0
    for trial in range(20):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        for line in proc.stdout:  # wait until training (and checkpointing) is under way
            if re.search(r"step \d+/100000", line):
                break
        time.sleep(rng.uniform(0.0, 0.5))  # then kill at a random moment, mid-write or not
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
        assert latest is not None, f"trial {trial}: no readable checkpoint"
        reader = tf.train.load_checkpoint(latest)  # raises if the files are torn
        step = int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
        assert step >= last_step, (trial, step, last_step)  # resumed, never went back
        last_step = step
    assert last_step > 20


@pytest.mark.slow
def test_four_processes_load_the_same_https_name_at_once(tmp_path):
    """Four processes call vaezoo.load on one https-hosted card at once (loopback server)."""
    from test_registry import _Server

    config = {"input_shape": [8, 8, 1], "latent_dim": 2, "encoder": {"type": "mlp", "hidden": [4]}}
    model = vaezoo.VAE(**config)
    weights = tmp_path / "w.weights.h5"
    model.save_weights(str(weights))
    server = _Server(weights.read_bytes())
    cards = tmp_path / "cards"
    cards.mkdir()
    card = {"name": "tiny-vae", "family": "VAE", "config": config, "data": {"source": "dsprites"}, "train": {},
            "metrics": {}, "notes": {}, "weights": {"uri": server.url, "sha256": registry.sha256_of(str(weights)),
                                                    "bytes": os.path.getsize(weights)}}
    (cards / "tiny-vae.yaml").write_text(yaml.safe_dump(card))
    script = (
        "import sys, numpy as np; from vaezoo import registry; "
        f"registry.cards_dir = lambda: {str(cards)!r}; "
        "m = registry.load('tiny-vae'); "
        "print(float(np.sum(m.reconstruct(np.full((1, 8, 8, 1), 0.5, np.float32)))))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "VAEZOO_HOME": str(tmp_path / "home")}
    try:
        procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for _ in range(4)]
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        server.close()
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in results]
    expected = float(np.sum(model.reconstruct(np.full((1, 8, 8, 1), 0.5, np.float32))))
    # the last line is the sum (Keras prints a download progress bar above it)
    assert [round(float(out.strip().splitlines()[-1]), 4) for out, _ in results] == [round(expected, 4)] * 4
    assert 1 <= server.requests <= 4  # downloaded once, or harmlessly more than once
    files = [f for _, _, fs in os.walk(tmp_path / "home") for f in fs]
    assert len(files) == 1 and files[0].endswith(".weights.h5")  # one verified entry, no leftovers
    assert registry.sha256_of(os.path.join(tmp_path / "home", "weights", files[0])) == card["weights"]["sha256"]
