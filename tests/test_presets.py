"""Presets (vaezoo.presets): the layout, round trips through every entry point and every zoo
model, atomic writes, the card's metrics, and plain-Keras loading of `.keras` files."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

import vaezoo
from vaezoo import cli, presets, registry, workdir

SHAPE = (8, 8, 1)
MLP = {"type": "mlp", "hidden": [8]}


def tiny(seed=1):
    return vaezoo.VAE(input_shape=SHAPE, latent_dim=2, encoder=MLP, seed=seed)


def images(n=3, seed=0):
    return (np.random.default_rng(seed).random((n, *SHAPE)) * 255).astype(np.uint8)


def outputs(model, x=None, condition=None):
    x = images() if x is None else x
    kw = {} if condition is None else {"condition": condition}
    return np.asarray(model.reconstruct(x, **kw))


def test_layout_metadata_and_round_trip_through_every_entry_point(tmp_path):
    model = tiny()
    expected = outputs(model)
    path = vaezoo.save_preset(model, tmp_path / "p")
    assert sorted(os.listdir(path)) == sorted(presets.FILES)
    metadata = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert metadata["format"] == "vaezoo-preset" and metadata["parameter_count"] == model.count_params()
    assert metadata["weights_sha256"] == registry.sha256_of(tmp_path / "p" / "model.weights.h5")
    import keras
    import tensorflow as tf

    assert (metadata["keras_version"], metadata["tensorflow_version"]) == (keras.__version__, tf.__version__)
    config = json.loads((tmp_path / "p" / "config.json").read_text())  # KerasHub's config.json keys
    assert (config["class_name"], config["registered_name"], config["weights"]) == ("VAE", "vaezoo>VAE",
                                                                                   "model.weights.h5")
    card = yaml.safe_load((tmp_path / "p" / "card.yaml").read_text())
    assert card["weights"]["sha256"] == metadata["weights_sha256"] and card["family"] == "VAE"

    for loaded in (vaezoo.load(path), vaezoo.VAE.from_preset(path), vaezoo.LatentVariableModel.from_preset(path),
                   registry.resolve_model(path).model):
        assert type(loaded) is vaezoo.VAE
        np.testing.assert_array_equal(outputs(loaded), expected)
    assert registry.resolve_model(str(path)).kind == "preset"
    with pytest.raises(presets.PresetError, match=r"holds a VAE, not a CVAE"):
        vaezoo.CVAE.from_preset(path)
    # KerasHub's method name writes the same preset
    model.save_to_preset(tmp_path / "q")
    np.testing.assert_array_equal(outputs(vaezoo.load(str(tmp_path / "q"))), expected)


def test_save_is_atomic_and_never_replaces_without_overwrite(tmp_path, monkeypatch):
    first, second = tiny(1), tiny(2)
    target = tmp_path / "p"
    presets.save_preset(first, target)
    with pytest.raises(FileExistsError, match="overwrite"):
        presets.save_preset(second, target)

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(presets, "model_card_markdown", broken)
    with pytest.raises(RuntimeError):
        presets.save_preset(second, target, overwrite=True)
    monkeypatch.undo()
    # the failed write left the old preset whole and no temporary folder behind
    assert os.listdir(tmp_path) == ["p"]
    np.testing.assert_array_equal(outputs(vaezoo.load(str(target))), outputs(first))
    presets.save_preset(second, target, overwrite=True)
    assert os.listdir(tmp_path) == ["p"]
    np.testing.assert_array_equal(outputs(vaezoo.load(str(target))), outputs(second))
    assert not np.array_equal(outputs(first), outputs(second))  # the two are distinguishable


def test_fingerprint_is_the_workdir_one():
    model = tiny()
    assert presets.weights_fingerprint(model) == workdir.weights_fingerprint(model)


def test_card_metrics_go_with_unchanged_weights_only(tmp_path):
    model = tiny()
    card = presets.preset_card(model, "0" * 64, 1)  # a minimal card, then give it a metric
    card["metrics"] = {"elbo": {"value": -1.5, "split": "test", "protocol": "ELBO on 3 test images",
                                "hardware": "cpu", "date": "2026-01-01", "command": "vaezoo eval x"}}
    presets.remember_card_weights(model, card)
    presets.save_preset(model, tmp_path / "same")
    kept = yaml.safe_load((tmp_path / "same" / "card.yaml").read_text())
    assert kept["metrics"] == card["metrics"]
    readme = (tmp_path / "same" / "README.md").read_text()
    assert "| elbo | -1.5 | test | ELBO on 3 test images |" in readme and "## Measured metrics" in readme
    model.weights[0].assign(model.weights[0] + 1.0)  # "fine-tuned": the metrics describe other weights
    presets.save_preset(model, tmp_path / "tuned")
    tuned = yaml.safe_load((tmp_path / "tuned" / "card.yaml").read_text())
    assert tuned["metrics"] == {} and "dropped" in tuned["notes"]
    assert "None recorded with these weights." in (tmp_path / "tuned" / "README.md").read_text()


@pytest.mark.parametrize("name", registry.list_models(pretrained=True))
def test_every_zoo_model_round_trips_through_a_preset(name, tmp_path):
    model = registry.load(name)
    x = (np.random.default_rng(0).random((2, *model.image_shape)) * 255).astype(np.uint8)
    condition = np.array([1, 2]) if model.conditional else None
    expected = outputs(model, x, condition)
    presets.save_preset(model, tmp_path / name)
    loaded = vaezoo.load(str(tmp_path / name))
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(outputs(loaded, x, condition), expected)
    # the zoo card travels with it, metrics included (same weights), and the README shows them
    assert loaded.card["metrics"] == model.card["metrics"] and loaded.card["train"] == model.card["train"]
    readme = (tmp_path / name / "README.md").read_text()
    for metric, record in (model.card["metrics"] or {}).items():
        assert f"| {metric} |" in readme and record["protocol"].replace("\n", " ")[:40] in readme


def test_cli_save_preset_then_use_it_as_a_model(tmp_path, capsys):
    model = tiny()
    model.save(str(tmp_path / "m.keras"))
    assert cli.main(["save-preset", str(tmp_path / "m.keras"), str(tmp_path / "p"), "--name", "my-vae"]) == 0
    assert yaml.safe_load((tmp_path / "p" / "card.yaml").read_text())["name"] == "my-vae"
    assert cli.main(["save-preset", str(tmp_path / "m.keras"), str(tmp_path / "p")]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert cli.main(["sample", str(tmp_path / "p"), "-n", "2", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


# ------------------------------------------------------------------ plain Keras interop
def _families():
    return {
        "vae": (vaezoo.VAE(input_shape=SHAPE, latent_dim=2, encoder=MLP, seed=1), None),
        "beta-vae": (vaezoo.BetaVAE(input_shape=SHAPE, latent_dim=2, beta=2.0, encoder=MLP, seed=2), None),
        "cvae": (vaezoo.CVAE(input_shape=SHAPE, num_classes=3, latent_dim=2, encoder=MLP, seed=3), np.array([0, 1, 2])),
        "vq-vae": (vaezoo.VQVAE(input_shape=SHAPE, num_embeddings=8, embedding_dim=4, hidden_channels=8,
                                residual_channels=4, num_residual_blocks=1, num_downsamples=1,
                                prior={"filters": 8, "layers": 2}, seed=4), None),
        "hvae": (vaezoo.HierarchicalVAE(input_shape=SHAPE, num_latent_layers=2, latent_dim=2, hidden_dim=16,
                                        encoder=MLP, seed=5), None),
    }


LOAD_ALL = textwrap.dedent("""
    import json, numpy as np
    for name, condition in json.load(open("families.json")).items():
        model = keras.saving.load_model(name + ".keras")   # safe_mode=True, Keras' default
        kw = {} if condition is None else {"condition": np.array(condition)}
        got = np.asarray(model.reconstruct(np.load("x.npy"), **kw))
        assert type(model).__module__.startswith("vaezoo."), type(model)
        assert np.array_equal(got, np.load(name + ".npy")), name
    print("loaded", len(json.load(open("families.json"))))
""")


def test_plain_keras_loads_every_family_after_import_vaezoo(tmp_path):
    x = images()
    families = {}
    for name, (model, condition) in _families().items():
        np.save(tmp_path / f"{name}.npy", outputs(model, x, condition))
        model.save(str(tmp_path / f"{name}.keras"))
        families[name] = None if condition is None else condition.tolist()
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "families.json").write_text(json.dumps(families))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Keras first: without vaezoo the error says to import it; then `import vaezoo` is enough
    keras_first = textwrap.dedent("""
        import keras
        try:
            keras.saving.load_model("vae.keras")
            raise SystemExit("loaded without vaezoo?")
        except TypeError as error:
            assert "import vaezoo" in str(error), str(error)
            print("hint ok")
        import vaezoo
    """) + LOAD_ALL
    # vaezoo first (import vaezoo stays free of TensorFlow until Keras is imported)
    vaezoo_first = "import sys, vaezoo\nassert 'tensorflow' not in sys.modules\nimport keras\n" + LOAD_ALL
    for code, expected in ((keras_first, "hint ok\nloaded 5"), (vaezoo_first, "loaded 5")):
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                             timeout=300)
        assert run.returncode == 0 and run.stdout.strip() == expected, run.stdout + run.stderr[-3000:]
