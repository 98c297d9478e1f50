"""`benchmarks/transform_coding_study.py`: its code lengths against float64 closed forms, the
causality of its context, a tiny training that resumes, and the report's comparison."""

import json
import os
import sys

import numpy as np
import pytest
from scipy import special, stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import transform_coding_study as study  # noqa: E402


def test_gaussian_code_lengths_match_the_discretized_normal_in_float64():
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(0, 4, 500))
    mean, scale = rng.normal(0, 3, 500), rng.uniform(0.01, 6, 500)
    clamped = np.maximum(scale, 0.11)
    expected = -np.log2(stats.norm.cdf(values + 0.5, mean, clamped) - stats.norm.cdf(values - 0.5, mean, clamped))
    got = study.gaussian_bits(values.astype(np.float32), mean.astype(np.float32), scale.astype(np.float32)).numpy()
    finite = expected < 16  # float32 CDF differences lose precision far in the tails
    np.testing.assert_allclose(got[finite], expected[finite], rtol=2e-3, atol=2e-3)


def test_logistic_code_lengths_match_the_discretized_logistic_in_float64():
    rng = np.random.default_rng(1)
    values, location, log_scale = np.round(rng.normal(0, 3, 300)), rng.normal(0, 2, 300), rng.normal(0, 1, 300)
    s = np.exp(log_scale)
    expected = -np.log2(special.expit((values - location + 0.5) / s) - special.expit((values - location - 0.5) / s))
    got = study.logistic_bits(*(a.astype(np.float32) for a in (values, location, log_scale))).numpy()
    finite = expected < 20
    np.testing.assert_allclose(got[finite], expected[finite], rtol=2e-3, atol=2e-3)


def test_the_context_sees_only_the_elements_before_each_position_in_raster_order():
    import tensorflow as tf

    _, masked = study._layer_classes()
    layer = masked(6)
    y = np.random.default_rng(2).normal(size=(1, 6, 6, 3)).astype(np.float32)
    base = layer(tf.constant(y)).numpy()
    changed = y.copy()
    changed[0, 3, 2] += 5.0
    after = layer(tf.constant(changed)).numpy()
    moved = np.abs(after - base).max(axis=-1)[0] > 1e-6
    raster = np.arange(36).reshape(6, 6)
    assert not moved[raster <= raster[3, 2]].any()  # itself and everything before it: unchanged
    assert moved[3, 3] and moved[4, 2]  # the next element and the one below: they see it


def test_a_tiny_training_logs_its_evaluations_and_resumes(tmp_path):
    rng = np.random.default_rng(3)
    train_images = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    test_images = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    workdir = str(tmp_path / "lam")
    study.train(0.01, workdir, 3, train_images, test_images, channels=8, latent=4, batch=4, eval_every=2)
    assert [r["step"] for r in study.read_log(workdir)] == [2, 3]
    codec = study.train(0.01, workdir, 5, train_images, test_images, channels=8, latent=4, batch=4, eval_every=2)
    records = study.read_log(workdir)
    assert [r["step"] for r in records] == [2, 3, 4, 5]
    bits, psnr = study.evaluate(codec, test_images)
    assert records[-1]["payload_B"] == pytest.approx(bits / 8, rel=1e-5)
    assert records[-1]["psnr"] == pytest.approx(psnr, rel=1e-5)
    assert bits > 0 and 0 < psnr < 60


def test_the_report_compares_each_point_with_the_ladder_at_its_psnr():
    ladder = [(100.0, 30.0), (400.0, 40.0)]
    assert study.bytes_at_psnr(ladder, 35.0) == pytest.approx(200.0)  # geometric midpoint
    assert study.bytes_at_psnr(ladder, 20.0) == pytest.approx(100.0)  # clamped
    record = {"lam": 0.01, "step": 10, "sec": 600, "payload_B": 382.0, "psnr": 35.0}
    row = study.report_rows([record], ladder)[0]
    assert row["bytes per image (ideal payload + 18)"] == 400.0
    assert row["rq-vae-cifar bytes at this PSNR"] == 200.0
    assert row["bytes vs rq-vae-cifar"] == "2.00x"
    json.dumps(row)
