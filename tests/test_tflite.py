"""TFLite exports: named signatures, parity with Keras per variant, size and quality floors.

One VQ-VAE (about 170k weights, so weights rather than the file's fixed overhead decide the
sizes) is trained here for a few seconds on structured 16x16 images and exported once in
every variant; the tests read the files and the parity report.
"""

import json
import os

import keras
import numpy as np
import pytest

from vaezoo.export.tflite import VARIANTS, TFLiteModel, export_tflite, parity_report, psnr
from helpers import squares


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import vaezoo

    keras.utils.set_random_seed(0)
    train, test = squares(1024), squares(64, seed=1)
    model = vaezoo.VQVAE(
        input_shape=(16, 16, 3), num_embeddings=64, embedding_dim=16, hidden_channels=64,
        residual_channels=32, num_residual_blocks=1, num_downsamples=1, prior=None, seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(train, epochs=6, batch_size=32, verbose=0)
    out = str(tmp_path_factory.mktemp("tflite"))
    paths = export_tflite(model, out, representative_images=train, num_calibration=200)
    report = parity_report(model, paths, test)
    return {"model": model, "paths": paths, "report": report, "out": out, "test": test, "train": train}


def test_every_variant_has_named_signatures(exported):
    from ai_edge_litert.interpreter import Interpreter

    assert set(exported["paths"]) == set(VARIANTS)
    for variant, path in exported["paths"].items():
        assert path.endswith(f"model_{variant}.tflite") and os.path.isfile(path)
        interpreter = Interpreter(model_path=path)
        signatures = interpreter.get_signature_list()
        assert signatures["encode"] == {"inputs": ["images"], "outputs": ["codes"]}, variant
        assert signatures["decode"] == {"inputs": ["codes"], "outputs": ["images"]}, variant
    # atomic writes leave no temporary files or the conversion workspace behind
    leftovers = [f for f in os.listdir(exported["out"]) if f.startswith(".")]
    assert leftovers == []


def test_manifest_records_files_and_model(exported):
    from vaezoo.training import weights_fingerprint

    with open(os.path.join(exported["out"], "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["kind"] == "vq" and manifest["model_class"] == "VQVAE"
    assert manifest["weights_sha256"] == weights_fingerprint(exported["model"])
    for variant, path in exported["paths"].items():
        assert manifest["variants"][variant]["size_bytes"] == os.path.getsize(path)
    assert manifest["calibration"]["num_images"] == 200


def test_float32_matches_keras(exported):
    model, test = exported["model"], exported["test"]
    runner = TFLiteModel(exported["paths"]["float32"])
    codes = runner.encode(test)
    np.testing.assert_array_equal(codes, np.asarray(model.encode_to_codes(test)))
    np.testing.assert_allclose(runner.decode(codes), np.asarray(model.decode_codes(codes)), rtol=0, atol=1e-4)
    row = exported["report"]["float32"]
    assert row["code_agreement"] == 1.0
    assert row["decode_max_abs_diff"] <= 1e-4 and row["reconstruction_max_abs_diff"] <= 1e-4
    assert abs(row["psnr"] - row["keras_psnr"]) < 1e-3


def test_uint8_input_equals_float_input(exported):
    runner = TFLiteModel(exported["paths"]["float32"])
    uint8 = np.round(exported["test"][:4] * 255).astype(np.uint8)
    np.testing.assert_array_equal(runner.encode(uint8), runner.encode(uint8.astype(np.float32) / 255.0))


def test_quantized_variants_are_small_and_close(exported):
    report = exported["report"]
    base = report["float32"]
    assert base["psnr"] > 18.0, "the test model did not learn to reconstruct"
    assert report["float16"]["size_bytes"] <= 0.6 * base["size_bytes"]
    assert report["float16"]["psnr"] >= base["psnr"] - 0.1
    for variant in ("dynamic_int8", "full_int8"):
        row = report[variant]
        assert row["size_bytes"] <= 0.35 * base["size_bytes"], (variant, row["size_bytes"], base["size_bytes"])
        assert row["psnr"] >= base["psnr"] - 1.0, (variant, row["psnr"], base["psnr"])
        assert 0.0 <= row["code_agreement"] <= 1.0
        assert row["latency_ms_per_image"] > 0


def test_psnr_helper():
    x = np.zeros((2, 4, 4, 1))
    assert psnr(x, x + 0.1) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(x, x[:1])


def test_gaussian_vae_export_matches_keras(tmp_path):
    import vaezoo

    keras.utils.set_random_seed(1)
    model = vaezoo.VAE(input_shape=(16, 16, 1), latent_dim=4, encoder={"type": "mlp", "hidden": [32]})
    model.build_from_images()
    x = np.random.default_rng(0).random((8, 16, 16, 1)).astype(np.float32)
    paths = export_tflite(model, str(tmp_path), variants=("float32",))
    runner = TFLiteModel(paths["float32"])
    assert runner.kind == "gaussian" and runner.latent_dim == 4
    out = runner.encode(x)
    posterior = model.encode(x)
    np.testing.assert_allclose(out["mean"], posterior.mean(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(out["stddev"], posterior.stddev(), rtol=0, atol=1e-4)
    z = np.asarray(posterior.mean())
    np.testing.assert_allclose(runner.decode(z), model.likelihood.image(model.decode(z)), rtol=0, atol=1e-4)
    row = parity_report(model, paths, x, latency_images=2)["float32"]
    assert row["encode_max_abs_diff"] <= 1e-4 and row["reconstruction_max_abs_diff"] <= 1e-4


def test_bad_arguments_are_clear(exported, tmp_path):
    import vaezoo

    model = exported["model"]
    with pytest.raises(ValueError, match="representative_images"):
        export_tflite(model, str(tmp_path), variants=("full_int8",))
    with pytest.raises(ValueError, match="Unknown TFLite variant 'int4'"):
        export_tflite(model, str(tmp_path), variants=("int4",))
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 3\)"):
        export_tflite(model, str(tmp_path), variants=("full_int8",), representative_images=np.zeros((4, 8, 8, 3)))
    cvae = vaezoo.CVAE(input_shape=(8, 8, 1), latent_dim=2, num_classes=3, encoder={"type": "mlp", "hidden": [8]})
    with pytest.raises(TypeError, match="condition"):
        export_tflite(cvae, str(tmp_path), variants=("float32",))
    assert not any(name.endswith(".tflite") for name in os.listdir(tmp_path))

    runner = TFLiteModel(exported["paths"]["float32"])
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 3\)"):
        runner.encode(np.zeros((2, 16, 16, 1), np.float32))
    with pytest.raises(ValueError, match="float in"):
        runner.encode(np.full((1, 16, 16, 3), 2.0, np.float32))
    with pytest.raises(ValueError, match=r"\(batch, 8, 8\)"):
        runner.decode(np.zeros((1, 4, 4), np.int32))
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        runner.decode(np.full((1, 8, 8), 64, np.int32))
    with pytest.raises(FileNotFoundError):
        TFLiteModel(str(tmp_path / "missing.tflite"))
