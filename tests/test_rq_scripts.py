"""The RQ-VAE training scripts on a tiny finished run: `scripts/depth_psnr.py` against PSNRs
computed here from the model's own code stacks, and `scripts/train_context_model.py` against
the beam search it trains on and a second implementation of the rate it reports (the numpy
integer network instead of its LiteRT conversion), with its resume and its cached-codes check."""

import json
import os
import re
import shutil
import warnings

import numpy as np
import pytest
import yaml

from helpers import colour_squares, load_script

SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished training workdir of a depth-3 RQ-VAE on colour squares (npz train and test splits)."""
    from vaezoo.training import train

    folder = tmp_path_factory.mktemp("rq-run")
    rng = np.random.default_rng(0)
    np.savez(folder / "squares.npz", x_train=colour_squares(rng, 96, SHAPE), x_test=colour_squares(rng, 24, SHAPE))
    config = {
        "model": {"class": "RQVAE", "config": {
            "input_shape": list(SHAPE), "depth": 3, "num_embeddings": 16, "embedding_dim": 8, "hidden_channels": 16,
            "residual_channels": 8, "num_residual_blocks": 1, "num_downsamples": 2, "seed": 0}},
        "data": {"source": "npz", "path": str(folder / "squares.npz")},
        "train": {"steps": 40, "batch_size": 16, "log_every": 20, "learning_rate": 3e-3, "checkpoint_every": 20,
                  "eval_batches": 1},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    workdir = str(folder / "run")
    train(str(folder / "config.yaml"), workdir, verbose=False)
    return workdir


def _model_and_images(workdir, split="test"):
    """The run's model and all images of one split of its data."""
    from vaezoo import data
    from vaezoo.registry import resolve_model

    resolved = resolve_model(workdir)
    images, _ = data.load_split(resolved.data_spec, split, limit=0)
    return resolved.model, images


def test_depth_psnr_prints_the_psnr_of_every_depth(finished_run, tmp_path, capsys):
    from vaezoo.evaluation import psnr

    model, images = _model_and_images(finished_run)
    codes = np.asarray(model.encode_to_codes(images))
    want = [psnr(images, np.asarray(model.decode_codes(codes, depth=d))) for d in (1, 2, 3)]
    assert np.min(np.diff(np.sort(want))) > 0.02, want  # a wrong depth shows

    depth_psnr = load_script("depth_psnr")
    model_only = str(tmp_path / "model")  # the finished run without checkpoints: read as a MODEL
    shutil.copytree(finished_run, model_only, ignore=shutil.ignore_patterns("checkpoints"))
    for ref, name in ((finished_run, "ckpt-40"), (model_only, "model")):
        assert depth_psnr.main([ref, "--images", "24", "--batch-size", "10"]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        got = [float(v) for v in line.rsplit(":", 1)[1].split()]
        np.testing.assert_allclose(got, want, atol=0.006)
        assert line.startswith(f"{name}: ") and "on 24 images" in line, line


def test_depth_psnr_refuses_a_model_without_code_stacks(tmp_path):
    import vaezoo
    from vaezoo.models.base import UnsupportedModelError

    model = vaezoo.VAE(input_shape=(8, 8, 1), latent_dim=2, encoder={"type": "mlp", "hidden": [8]}, seed=0)
    model.build_from_images()
    model.save(str(tmp_path / "vae.keras"))
    with pytest.raises(UnsupportedModelError, match="depth_psnr.py needs a model whose latent_kind is residual_code_grid"):
        load_script("depth_psnr").main([str(tmp_path / "vae.keras")])


def test_train_context_model_trains_on_the_searched_stacks_and_reports_their_exact_rate(finished_run, tmp_path,
                                                                                        capsys):
    from vaezoo import code_search, integer_entropy

    script = load_script("train_context_model")
    ctx = str(tmp_path / "ctx")
    args = ["--model", finished_run, "--workdir", ctx, "--channels", "8", "--layers", "1", "--schedule", "raster",
            "--batch-size", "32", "--beam-width", "2"]
    script.main(args + ["--epochs", "1"])

    with np.load(os.path.join(ctx, "codes.npz")) as f:
        assert int(f["beam_width"]) == 2
        for split in ("train", "test"):
            model, images = _model_and_images(finished_run, split)
            searched = code_search.residual_codes(np.asarray(model.latent_grid(images)), model.quantizer.codebooks,
                                                  beam_width=2)
            np.testing.assert_array_equal(f[split], searched)
            assert not np.array_equal(searched, np.asarray(model.encode_to_codes(images)))  # not the greedy codes
        test = f["test"]

    # the epoch-2 run resumes from epoch 1's checkpoint (Adam's moments too: Keras warns when it
    # skips them), then reports the frozen network's exact rate
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "Skipping variable loading for optimizer")
        script.main(args + ["--epochs", "2"])
    out = capsys.readouterr().out
    assert "resuming after epoch 1" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    with open(os.path.join(ctx, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    with np.load(os.path.join(ctx, "context_model.npz")) as f:
        network = integer_entropy.network_from_arrays(dict(f))
    per_depth = integer_entropy.code_bits(network, test, per_depth=True).sum(axis=0) / (test.size / 3)
    np.testing.assert_allclose(report["exact_bits_per_code_per_depth"], per_depth, rtol=1e-12)
    assert report["exact_bits_per_code"] == pytest.approx(per_depth.mean(), rel=1e-12)
    assert report["beam_width"] == 2 and report["epochs"] == 2 and report["depths"] == 3

    # codes cached for one beam width are not silently reused for another
    with pytest.raises(SystemExit, match=re.escape("holds codes of beam width 2, not --beam-width 1")):
        script.main(args[:-1] + ["1", "--epochs", "2"])
