"""Property test of the preset reader (the quick version of benchmarks/fuzz_preset.py): any
mutation of any one file of a preset is loaded or refused with a ValueError, never another
exception; a changed file whose hash was not updated is always refused by the hash."""

import os
import shutil
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vaezoo
from vaezoo import presets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from fuzz_preset import damage, outcome  # noqa: E402


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    model = vaezoo.VAE(input_shape=(8, 8, 1), latent_dim=2, encoder={"type": "mlp", "hidden": [4]}, seed=0)
    return presets.save_preset(model, tmp_path_factory.mktemp("fuzz") / "base")


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(presets.FILES))
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "replace"]))
    return name, kind, draw(st.integers(0, 1 << 30)), draw(st.binary(min_size=1, max_size=64)), draw(st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(case=mutated())
def test_any_damaged_preset_is_loaded_or_refused_cleanly(base, tmp_path, case):
    name, kind, where, extra, rehash = case
    with open(os.path.join(base, name), "rb") as f:
        original = f.read()
    data = bytearray(original)
    i = where % len(data)
    if kind == "flip":
        data[i] ^= 1 << (where % 8)
    elif kind == "truncate":
        del data[i:]
    elif kind == "extend":
        data += extra
    else:
        data[i:i + len(extra)] = extra
    target = tmp_path / "case"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base, target)
    damage(str(target), name, bytes(data), rehash)
    # raises on any other exception, and if a changed hashed file got past the hash check
    result = outcome(str(target), name, bytes(data) != original, rehash)
    if bytes(data) != original and not rehash and name != presets.METADATA:
        assert result == "hash"
