"""Distributed training with real processes on 127.0.0.1: multi-worker, and resume after SIGKILL."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_config(tmp_path, steps, checkpoint_every, batch_size=8):
    rng = np.random.default_rng(0)
    x = (rng.random((64, 16, 16, 1)) > 0.7).astype(np.float32)
    np.savez(tmp_path / "data.npz", x_train=x)
    config = {
        "model": {"class": "VAE", "config": {"input_shape": [16, 16, 1], "latent_dim": 2, "seed": 0,
                                             "encoder": {"type": "mlp", "hidden": [32]}}},
        "data": {"source": "npz", "path": str(tmp_path / "data.npz")},
        "train": {"steps": steps, "batch_size": batch_size, "log_every": 1, "learning_rate": 3e-3,
                  "checkpoint_every": checkpoint_every, "eval_batches": 1},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _env(**extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _train_cmd(config, workdir, *more):
    return [sys.executable, "-m", "vaezoo.cli", "train", config, "--workdir", workdir, *more]


def _losses(stdout):
    return [float(v) for v in re.findall(r"step \d+/\d+ loss ([0-9.e+-]+)", stdout)]


@pytest.mark.slow
def test_two_workers_on_loopback_train_identical_weights(tmp_path):
    config = _write_config(tmp_path, steps=30, checkpoint_every=10)
    workdir = str(tmp_path / "run")
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    scratch = tmp_path / "tmp"  # the workers' temporary folders go here
    scratch.mkdir()
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(_train_cmd(config, workdir, "--strategy", "multi_worker"),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=_env(TF_CONFIG=tf_config, TMPDIR=str(scratch))))
    outputs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    fingerprints = [re.search(r"final weights sha256 (\w+)", out).group(1) for out, _ in outputs]
    assert fingerprints[0] == fingerprints[1]
    assert "strategy multi_worker (CollectiveAllReduceStrategy), 2 replica(s)" in outputs[0][0]
    losses = _losses(outputs[0][0])
    assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5])
    # only the chief's checkpoints remain; the other worker's temporary ones are gone
    names = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    assert "checkpoint" in names and any(n.startswith("ckpt-30") for n in names)
    assert not [n for n in os.listdir(scratch) if n.startswith("vaezoo-worker-ckpt-")]


@pytest.mark.slow
def test_sigkill_mid_run_then_same_command_resumes(tmp_path):
    config = _write_config(tmp_path, steps=400, checkpoint_every=5)
    workdir = str(tmp_path / "run")
    cmd = _train_cmd(config, workdir, "--strategy", "one_device")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    index = os.path.join(workdir, "checkpoints", "checkpoint")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(index) and "ckpt-10" in open(index).read():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = int(re.search(r"resumed from .*ckpt-(\d+) at step (\d+)", out.stdout).group(2))
    assert resumed >= 10
    first_logged = int(re.search(r"step (\d+)/400", out.stdout).group(1))
    assert first_logged == resumed + 1  # the step count continues
    assert json.load(open(os.path.join(workdir, "metrics.json")))["steps"] == 400


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_the_rerun_resumes_there(tmp_path):
    config = _write_config(tmp_path, steps=400, checkpoint_every=1000)  # no periodic checkpoint
    workdir = str(tmp_path / "run")
    cmd = _train_cmd(config, workdir, "--strategy", "one_device")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    seen = ""
    for line in proc.stdout:  # wait until training is under way
        seen += line
        if re.search(r"step 2\d/400", line):
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    saved = int(re.search(r"saved a checkpoint at step (\d+)", err).group(1))
    assert saved >= 20
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"at step {saved}" in rerun.stdout


@pytest.mark.slow
def test_lost_worker_fails_fast_with_a_message(tmp_path):
    config = _write_config(tmp_path, steps=100000, checkpoint_every=50)
    workdir = str(tmp_path / "run")
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(_train_cmd(config, workdir, "--strategy", "multi_worker"),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=_env(TF_CONFIG=tf_config)))
    for line in procs[0].stdout:
        if re.search(r"step 2\d/100000", line):
            break
    procs[1].kill()
    started = time.time()
    _, err = procs[0].communicate(timeout=300)
    assert procs[0].returncode != 0
    assert "Lost contact with another worker" in err and "resumes from the chief's last checkpoint" in err
    assert time.time() - started < 240
