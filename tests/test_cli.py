"""The `vaezoo` command: quiet by default, TensorFlow's own start-up lines on request."""

import os
import re
import subprocess
import sys

import pytest

# absl's banner and glog-style lines ("I0000 00:00:... port.cc:153] ...") that TensorFlow's C++
# side prints while it is imported
TENSORFLOW_NOISE = re.compile(r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]", re.M)


def _vaezoo(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as on a fresh machine
    # run outside the source tree, so that the installed package (with its cards) is imported
    return subprocess.run([sys.executable, "-m", "vaezoo.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


def test_tensorflow_start_up_lines_are_hidden_unless_verbose(tmp_path):
    command = ["sample", "vae-mnist", "-n", "1", "--seed", "0"]  # imports TensorFlow
    verbose = _vaezoo("--verbose", *command, "-o", str(tmp_path / "verbose.png"), cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    if not TENSORFLOW_NOISE.search(verbose.stderr):
        pytest.skip("TensorFlow prints no start-up lines on this machine: nothing to hide")
    quiet = _vaezoo(*command, "-o", str(tmp_path / "quiet.png"), cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert (tmp_path / "quiet.png").read_bytes() == (tmp_path / "verbose.png").read_bytes()
    assert not TENSORFLOW_NOISE.search(quiet.stderr), quiet.stderr


def test_errors_still_reach_stderr_when_quiet(tmp_path):
    result = _vaezoo("info", "no-such-model", cwd=tmp_path)
    assert result.returncode == 2
    assert "vaezoo info: error:" in result.stderr and "no-such-model" in result.stderr
