"""`vaezoo train CONFIG --init MODEL`: a run that starts from a pretrained model's weights
(zoo name, preset folder, hub URI, ...), resolved through `registry.resolve_model`."""

import json

import numpy as np
import yaml

import vaezoo
from vaezoo import cli, workdir

MODEL = {"input_shape": [16, 16, 1], "latent_dim": 2, "seed": 0, "encoder": {"type": "mlp", "hidden": [16]}}


def config_file(tmp_path, **extra):
    x = (np.random.default_rng(0).random((32, 16, 16, 1)) > 0.7).astype(np.float32)
    np.savez(tmp_path / "data.npz", x_train=x)
    config = {"model": {"class": "VAE", "config": MODEL}, "data": {"source": "npz", "path": str(tmp_path / "data.npz")},
              "train": {"steps": 1, "batch_size": 8, "eval_batches": 1, "strategy": "one_device",
                        "learning_rate": 1e-9},  # one step that cannot move a weight by more than ~1e-9
              **extra}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_train_starts_from_the_init_model(tmp_path):
    pretrained = vaezoo.VAE(**{**MODEL, "seed": 7})  # same architecture, other weights
    preset = pretrained.save_to_preset(tmp_path / "pretrained")
    fresh = vaezoo.VAE(**MODEL)
    fresh.build_from_images()
    assert cli.main(["train", config_file(tmp_path), "--workdir", str(tmp_path / "run"), "--init", preset]) == 0
    tuned = workdir.load(str(tmp_path / "run"))
    for got, start, other in zip(tuned.weights, pretrained.weights, fresh.weights):
        np.testing.assert_allclose(got.numpy(), start.numpy(), rtol=0, atol=1e-6, err_msg=got.path)
    assert any(not np.allclose(a.numpy(), b.numpy(), atol=1e-3) for a, b in zip(tuned.weights, fresh.weights))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["init"] == preset


def test_init_of_another_architecture_is_refused(tmp_path, capsys):
    other = vaezoo.VAE(**{**MODEL, "latent_dim": 3}).save_to_preset(tmp_path / "other")
    config = config_file(tmp_path, init=other)  # the config's own `init:` is used without --init
    assert cli.main(["train", config, "--workdir", str(tmp_path / "run")]) == 2
    assert "does not have the config's architecture" in capsys.readouterr().err
    try:
        vaezoo.train(config, str(tmp_path / "run2"), verbose=False)
        raise AssertionError("trained without the init model")
    except vaezoo.ConfigError as error:
        assert "init=vaezoo.load(" in str(error)


def test_a_card_recipe_names_its_starting_point():
    from vaezoo import presets, registry, training

    card = {**registry.info("vae-mnist"), "init": "vae-mnist"}
    assert training.load_config(card)["init"] == "vae-mnist"  # `vaezoo train CARD` starts from it
    metadata = {"vaezoo_version": "0", "keras_version": "3", "tensorflow_version": "2", "parameter_count": 1,
                "weights_sha256": "0" * 64, "date": "today"}
    assert "Fine-tuned: training started from the weights of `vae-mnist`" in presets.model_card_markdown(card, metadata)
    try:
        registry.validate_card({**card, "init": 3})
        raise AssertionError("a card with init: 3 was accepted")
    except vaezoo.ConfigError as error:
        assert "'init' names the model the recipe starts from" in str(error)


def test_every_fine_tuned_zoo_card_starts_from_a_zoo_model():
    from vaezoo import registry

    for name in registry.list_models():
        start = registry.info(name).get("init")
        if start is not None:
            assert start in registry.list_models(pretrained=True), f"{name} starts from {start!r}, not a zoo model"
            assert registry.info(start)["config"].keys() <= registry.info(name)["config"].keys()
