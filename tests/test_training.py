"""The Trainer: end-to-end smoke run, resume, non-finite policies, config errors; the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from vaezoo.data import make_dataset
from vaezoo.training import NonFiniteLossError, Trainer, load_config
from vaezoo.workdir import load as load_trained


def tiny_config(tmp_path, steps=6, nan_images=0, **train):
    rng = np.random.default_rng(0)
    x = (rng.random((32, 16, 16, 1)) > 0.7).astype(np.float32)
    if nan_images:
        x[:nan_images] = np.nan
    path = tmp_path / f"data_{nan_images}.npz"
    np.savez(path, x_train=x)
    return {
        "model": {"class": "VAE", "config": {"input_shape": [16, 16, 1], "latent_dim": 2, "seed": 0,
                                             "encoder": {"type": "mlp", "hidden": [16]}}},
        "data": {"source": "npz", "path": str(path)},
        "train": {"steps": steps, "batch_size": 8, "log_every": 2, "checkpoint_every": 3,
                  "eval_batches": 1, "strategy": "one_device", **train},
    }


def test_smoke_run_writes_everything_and_final_model_reloads(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    config = tiny_config(tmp_path, eval_batches=2)
    seed_states = []  # the model's seed-generator state as each evaluation starts
    evaluate = Trainer.evaluate
    monkeypatch.setattr(Trainer, "evaluate",
                        lambda self: seed_states.append(self.model.seed_generator.state.numpy()) or evaluate(self))
    metrics = vaezoo.train(config, str(workdir), verbose=False)
    assert metrics["steps"] == 6 and metrics["examples"] == 16 and len(seed_states) == 1

    # The final metrics against the saved final model's public `elbo` / `loss_terms` on the
    # eval batches (the eval stream is shuffled with seed train.seed + 1), from the seed state
    # the evaluation started with: same weights, examples and posterior draws.
    model = load_trained(str(workdir))
    batches = list(make_dataset(config["data"], 8, seed=1, shuffle=True, repeat=True).take(2))
    model.seed_generator.state.assign(seed_states[0])
    elbo = np.concatenate([np.asarray(model.elbo(batch), np.float64) for batch in batches])
    model.seed_generator.state.assign(seed_states[0])
    terms = [model.loss_terms(batch) for batch in batches]
    nll, kl = (np.concatenate([np.asarray(t[name], np.float64) for t in terms]) for name in ("nll", "kl"))
    assert metrics["elbo"] == pytest.approx(elbo.mean(), rel=1e-6)
    assert metrics["nll"] == pytest.approx(nll.mean(), rel=1e-6)
    assert metrics["kl"] == pytest.approx(kl.mean(), rel=1e-6)
    assert metrics["bits_per_dim"] == pytest.approx(-elbo.mean() / (16 * 16 * np.log(2.0)), rel=1e-6)
    # the comparison is sensitive to the draw: the mean ELBO of other draws spreads far more
    draws = [float(np.mean(model.elbo(np.concatenate(batches)))) for _ in range(8)]
    assert np.std(draws) > 100 * 1e-6 * abs(metrics["elbo"]), draws
    for name in ("config.json", "metrics.json", "final/model.keras", "final/model.weights.h5"):
        assert (workdir / name).exists(), name
    assert list((workdir / "pictures").glob("*.png"))
    assert list((workdir / "tensorboard").glob("events.*"))
    assert tf.train.latest_checkpoint(str(workdir / "checkpoints")).endswith("ckpt-6")
    model = load_trained(str(workdir))
    x = np.zeros((2, 16, 16, 1), np.float32)
    keras_model = __import__("keras").saving.load_model(str(workdir / "final/model.keras"))
    np.testing.assert_array_equal(model.reconstruct(x), keras_model.reconstruct(x))
    # the one MODEL resolver reads the same model and the run's data spec from the workdir
    from vaezoo.registry import resolve_model

    resolved = resolve_model(str(workdir))
    assert (resolved.name, resolved.kind, resolved.data_spec) == ("run", "workdir", config["data"])
    np.testing.assert_array_equal(resolved.model.reconstruct(x), model.reconstruct(x))
    (workdir / "final" / "model_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a finished training workdir"):
        resolve_model(str(workdir))


def test_resume_continues_the_step_count(tmp_path):
    workdir = str(tmp_path / "run")
    first = Trainer(tiny_config(tmp_path, steps=3), workdir, verbose=False)
    first.run()
    weights_at_3 = [w.numpy() for w in first.model.weights]
    second = Trainer(tiny_config(tmp_path, steps=7), workdir, verbose=False)
    second._build()
    assert second.start_step == 3
    for a, b in zip(weights_at_3, second.model.weights):  # restored, not re-initialised
        np.testing.assert_array_equal(a, b.numpy())
    # the posterior-noise stream resumes where step 3 left it, not at a fresh model's state
    # (which would repeat the first steps' draws)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")))
    state_at_3 = reader.get_tensor("seed_state/.ATTRIBUTES/VARIABLE_VALUE")
    fresh = Trainer(tiny_config(tmp_path, steps=3), str(tmp_path / "fresh"), verbose=False)
    fresh._build()
    assert not np.array_equal(state_at_3, fresh.model.seed_generator.state.numpy())
    np.testing.assert_array_equal(second.model.seed_generator.state.numpy(), state_at_3)
    metrics = Trainer(tiny_config(tmp_path, steps=7), workdir, verbose=False).run()
    assert metrics["steps"] == 7


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    Trainer(tiny_config(tmp_path, steps=3), workdir, verbose=False).run()
    good = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        Trainer(tiny_config(tmp_path, steps=30, nan_images=32), workdir, verbose=False).run()
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")) == good
    reader = tf.train.load_checkpoint(good)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name


def test_nonfinite_loss_skip_policy_counts_and_keeps_weights_finite(tmp_path):
    config = tiny_config(tmp_path, steps=12, nan_images=8, on_nonfinite="skip")
    config["eval_data"] = tiny_config(tmp_path)["data"]  # NaN images in eval data are refused
    trainer = Trainer(config, str(tmp_path / "run"), verbose=False)
    metrics = trainer.run()
    assert metrics["nonfinite_steps"] > 0 and metrics["steps"] == 12
    assert int(trainer.optimizer.iterations.numpy()) == 12
    assert all(np.all(np.isfinite(w.numpy())) for w in trainer.model.weights)


def test_config_errors_name_the_key(tmp_path, mirrored_strategy):
    config = tiny_config(tmp_path)
    config["train"]["learnig_rate"] = 0.1
    with pytest.raises(vaezoo.ConfigError, match="Did you mean 'learning_rate'"):
        load_config(config)
    with pytest.raises(vaezoo.ConfigError, match="needs a 'data' section"):
        load_config({"model": config["model"]})
    bad_model = tiny_config(tmp_path)
    bad_model["model"]["config"]["latent_dims"] = 3
    with pytest.raises(vaezoo.ConfigError, match="Did you mean 'latent_dim'"):
        Trainer(bad_model, str(tmp_path / "r"), verbose=False).run()
    with pytest.raises(ValueError, match="not divisible by the 2 replicas"):
        Trainer(tiny_config(tmp_path, batch_size=7), str(tmp_path / "r"), verbose=False,
                strategy=mirrored_strategy)


def _cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "vaezoo.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_cli_help_and_clear_errors(tmp_path):
    out = _cli("--help")
    assert out.returncode == 0 and "demo" in out.stdout and "train" in out.stdout
    (tmp_path / "bad.yaml").write_text("model: {class: VAE}\ndata: {source: dsprites}\ntrain: {stpes: 3}\n")
    out = _cli("train", str(tmp_path / "bad.yaml"), "--workdir", str(tmp_path / "w"))
    assert out.returncode == 2 and "Did you mean 'steps'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_cli_demo_smoke_end_to_end(tmp_path):
    out = _cli("demo", "--smoke", "--workdir", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ELBO on dSprites" in out.stdout
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 1000
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["steps"] == 20 and np.isfinite(metrics["elbo"])


def test_import_is_cheap():
    code = "import sys, vaezoo; vaezoo.__version__; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def _traced_step_nodes(trainer):
    """Every node of the Trainer's train step as traced for this trainer, including the nodes of
    the functions it calls (the XLA-compiled per-replica step is one of those)."""
    step = trainer._make_train_step()
    iterator = iter(trainer._dataset(trainer.config["data"], shuffle=True, repeat=True))
    graph = step.get_concrete_function(iterator).graph.as_graph_def()
    return list(graph.node) + [node for function in graph.library.function for node in function.node_def]


@pytest.mark.parametrize("options", [{"mixed_precision": "mixed_bfloat16"}, {"jit_compile": True}],
                         ids=["bfloat16", "xla"])
def test_mixed_precision_and_xla_train(tmp_path, options):
    import keras

    trainer = Trainer(tiny_config(tmp_path, steps=4, **options), str(tmp_path / "run"), verbose=False)
    metrics = trainer.run()
    assert np.isfinite(metrics["elbo"]) and int(trainer.optimizer.iterations.numpy()) == 4
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    nodes = _traced_step_nodes(trainer)
    # A call marked _XlaMustCompile runs XLA-compiled or fails (never silently falls back to
    # the TF executor), so the finished run above compiled its step with XLA.
    must_compile = [n.name for n in nodes if "_XlaMustCompile" in n.attr and n.attr["_XlaMustCompile"].b]
    assert bool(must_compile) == ("jit_compile" in options), must_compile
    matmuls = {tf.dtypes.as_dtype(n.attr["T"].type).name for n in nodes if n.op == "MatMul"}
    # the step's matrix products (forward and backward) are bfloat16 under the policy, else float32
    assert matmuls == ({"bfloat16"} if "mixed_precision" in options else {"float32"}), matmuls
    if "mixed_precision" in options:
        dense = trainer.model.encoder.layers[-1]
        assert dense.compute_dtype == "bfloat16" and dense.variable_dtype == "float32"
        assert all(w.dtype == "float32" for w in trainer.model.trainable_weights)
        terms = trainer.model.loss_terms(np.zeros((2, 16, 16, 1), np.float32))
        assert terms["loss"].dtype == tf.float32  # distributions and losses stay in float32


def test_picture_commands_on_a_trained_workdir(tmp_path):
    from PIL import Image

    workdir = str(tmp_path / "run")
    vaezoo.train(tiny_config(tmp_path, steps=2), workdir, verbose=False)
    for i in range(2):
        Image.fromarray(np.full((20, 20), 80 * i, np.uint8)).save(tmp_path / f"{i}.png")
    a, b = str(tmp_path / "0.png"), str(tmp_path / "1.png")
    for args, out, min_width in [
        (("sample", workdir, "-n", "12", "--columns", "6", "--scale", "1"), "s.png", 6 * 16),
        (("reconstruct", workdir, a, b, "--scale", "1"), "r.png", 2 * 16),
        (("interpolate", workdir, a, b, "--steps", "5", "--scale", "1"), "i.png", 5 * 16),
    ]:
        result = _cli(*args, "-o", str(tmp_path / out))
        assert result.returncode == 0, result.stderr[-2000:]
        assert Image.open(tmp_path / out).width >= min_width
    bad = _cli("reconstruct", workdir, str(tmp_path / "missing.png"), "-o", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and "No image file" in bad.stderr and not (tmp_path / "x.png").exists()
