"""Strategy selection and TF_CONFIG checks."""

import json

import pytest

from vaezoo import strategy


def test_auto_picks_by_environment(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy.choose_strategy_name("auto") == "one_device"  # CPU only, no cluster
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert strategy.choose_strategy_name("auto") == "multi_worker"
    monkeypatch.setenv("TPU_NAME", "local")
    assert strategy.choose_strategy_name("auto") == "tpu"
    assert strategy.choose_strategy_name("mirrored") == "mirrored"


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', '"cluster" mapping'),
        ('{"cluster": {"worker": ["a:1"]}}', '"task" with "type" and "index"'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "'ps' is not in the cluster"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "index 3 is out of range"),
    ],
)
def test_malformed_tf_config_is_named(text, message):
    with pytest.raises(ValueError, match=message):
        strategy.parse_tf_config(text)


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown strategy 'gpu'.*one_device, mirrored"):
        strategy.choose_strategy_name("gpu")
