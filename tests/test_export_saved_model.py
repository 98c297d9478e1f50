"""SavedModel exports: signatures as saved_model_cli lists them, parity with Keras in a
process that imports only TensorFlow, TF Serving layout and config, crash safety, bad input."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from vaezoo.export import saved_model as sm
from vaezoo.registry import UnknownModelError

MLP = {"type": "mlp", "hidden": [16]}
SHAPE = (8, 8, 1)
N = 3
SEEDS = np.array([5, 6, 7], np.int32)
LABELS = np.array([0, 1, 2], np.int32)


def _models():
    return {
        "vae": vaezoo.VAE(input_shape=SHAPE, latent_dim=2, encoder=MLP, seed=1),
        "beta-vae": vaezoo.BetaVAE(input_shape=SHAPE, latent_dim=2, beta=2.0, encoder=MLP, seed=2),
        "cvae": vaezoo.CVAE(input_shape=SHAPE, num_classes=3, latent_dim=2, encoder=MLP, prior="learned", seed=3),
        "vq-vae": vaezoo.VQVAE(input_shape=SHAPE, num_embeddings=8, embedding_dim=4, hidden_channels=8,
                               residual_channels=4, num_residual_blocks=1, num_downsamples=1,
                               prior={"filters": 8, "layers": 2}, seed=4),
        "hvae": vaezoo.HierarchicalVAE(input_shape=SHAPE, num_latent_layers=2, latent_dim=2, hidden_dim=16,
                                       encoder=MLP, seed=5),
        "rq-vae": vaezoo.RQVAE(input_shape=SHAPE, depth=3, num_embeddings=8, embedding_dim=4, hidden_channels=8,
                               residual_channels=4, num_residual_blocks=1, num_downsamples=1, seed=6),
    }


#: each image's depth in the RQ-VAE's `decode` / `reconstruct` requests (one row per depth)
DEPTHS = np.array([1, 3, 2], np.int32)


def _images(seed=0, n=N):
    return (np.random.default_rng(seed).random((n, *SHAPE)) * 255).astype(np.uint8)


def _train_briefly(model, images, condition=None):
    """Two optimizer steps, so exports also cover a trained model with optimizer state."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = images if condition is None else (images, condition)
    model.fit(tf.data.Dataset.from_tensor_slices(data).batch(4), epochs=1, verbose=0)


def _references(name, model, x):
    """What the Keras model computes, keyed `<signature>/<output>`."""
    cond = {"condition": LABELS} if model.conditional else {}
    ref = {}
    if isinstance(model, vaezoo.RQVAE):
        codes = np.asarray(model.encode_to_codes(x))
        ref["encode/codes"] = codes
        ref["decode_in/codes"] = codes
        # row i decoded from its first DEPTHS[i] levels, as decode_codes does one image at a time
        rows = [np.asarray(model.decode_codes(codes[i : i + 1], depth=int(d))) for i, d in enumerate(DEPTHS)]
        ref["decode/images"] = np.concatenate(rows)
        ref["reconstruct_depth/images"] = ref["decode/images"]
        ref["serving_default/images"] = np.asarray(model.reconstruct(x))
    elif isinstance(model, vaezoo.VQVAE):
        codes = np.asarray(model.encode_to_codes(x))
        ref["encode/codes"] = codes
        ref["decode/images"] = np.asarray(model.decode_codes(codes))
        ref["decode_in/codes"] = codes
    else:
        posterior = model.encode(x, **cond)
        ref["encode/mean"] = np.asarray(posterior.mean())
        ref["encode/stddev"] = np.asarray(posterior.stddev())
        z = np.random.default_rng(1).normal(size=(N, model.latent_dim)).astype(np.float32)
        ref["decode_in/z"] = z
        ref["decode/images"] = np.asarray(model.likelihood.image(model.decode(z, **cond)))
    depth = {"depth": DEPTHS} if isinstance(model, vaezoo.RQVAE) else {}
    ref["reconstruct/images"] = np.asarray(model.reconstruct(x, **cond, **depth))
    ref["reconstruct_float/images"] = np.asarray(model.reconstruct(x.astype(np.float32) / 255.0, **cond, **depth))
    for key, value in sm.deterministic_score(model, x, **cond).items():
        ref[f"score/{key}"] = np.asarray(value)
    rows = []
    for i, seed in enumerate(SEEDS):
        kwargs = {"condition": LABELS[i : i + 1]} if model.conditional else {}
        rows.append(np.asarray(model.sample(1, seed=int(seed), **kwargs)))
    ref["sample/images"] = np.concatenate(rows)
    return ref


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every family exported (VAE and VQ-VAE after two training steps) plus Keras references."""
    out = tmp_path_factory.mktemp("exports")
    x = _images()
    train = _images(seed=1, n=8)
    models = _models()
    _train_briefly(models["vae"], train)
    _train_briefly(models["vq-vae"], train)
    _train_briefly(models["rq-vae"], train)
    paths, refs = {}, {}
    for name, model in models.items():
        paths[name] = sm.export_saved_model(model, out, model_name=name)
        refs[name] = _references(name, model, x)
    return {"out": str(out), "models": models, "paths": paths, "refs": refs, "x": x}


def _expected_signatures(model):
    """signature -> {"inputs": {name: (dtype, shape)}, "outputs": {...}} as saved_model_cli shows them."""
    h, w, c = model.image_shape
    image = (-1, h, w, c)
    u8, f32, i32 = "DT_UINT8", "DT_FLOAT", "DT_INT32"
    cond = {"condition": (i32, (-1,))} if model.conditional else {}
    images_out = {"images": (f32, image), "images_uint8": (u8, image)}
    score_out = {key: (f32, (-1,)) for key in ("neg_elbo", "bits_per_dim", "nll", "kl")}
    reconstruct_in = {"images": (u8, image), **cond}
    if isinstance(model, vaezoo.RQVAE):
        stack = (-1, *model.grid_shape, model.depth)
        encode_out = {"codes": (i32, stack), "quantization_error": (f32, (-1,))}
        decode_in = {"codes": (i32, stack), "depth": (i32, (-1,))}
        reconstruct_in = {"images": (u8, image), "depth": (i32, (-1,))}
    elif isinstance(model, vaezoo.VQVAE):
        grid = (-1, *model.grid_shape)
        encode_out = {"codes": (i32, grid), "quantization_error": (f32, (-1,))}
        decode_in = {"codes": (i32, grid)}
    else:
        encode_out = {"mean": (f32, (-1, model.latent_dim)), "stddev": (f32, (-1, model.latent_dim))}
        decode_in = {"z": (f32, (-1, model.latent_dim)), **cond}
    expected = {
        "encode": ({"images": (u8, image), **cond}, encode_out),
        "decode": (decode_in, images_out),
        "reconstruct": (reconstruct_in, images_out),
        "serving_default": ({"images": (u8, image), **cond}, images_out),
        "sample": ({"seed": (i32, (-1,)), **cond}, images_out),
        "score": ({"images": (u8, image), **cond}, score_out),
        "encode_float": ({"images": (f32, image), **cond}, encode_out),
        "reconstruct_float": ({**reconstruct_in, "images": (f32, image)}, images_out),
        "score_float": ({"images": (f32, image), **cond}, score_out),
    }
    return {name: {"inputs": i, "outputs": o} for name, (i, o) in expected.items()}


def _parse_cli(text):
    """signature_def blocks of `saved_model_cli show --all` -> the `_expected_signatures` form."""
    signatures, current, side, tensor = {}, None, None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("signature_def['"):
            name = line[len("signature_def['"): line.index("']")]
            if name.startswith("__"):  # __saved_model_init_op: TF's own, not a serving signature
                current = None
                continue
            current = signatures.setdefault(name, {"inputs": {}, "outputs": {}, "method": None})
        elif current is None:
            continue
        elif line.startswith(("inputs['", "outputs['")):
            side = "inputs" if line.startswith("inputs") else "outputs"
            tensor = line[line.index("['") + 2: line.index("']")]
            current[side][tensor] = [None, None]
        elif line.startswith("dtype:") and tensor is not None:
            current[side][tensor][0] = line.split(":", 1)[1].strip()
        elif line.startswith("shape:") and tensor is not None:
            dims = line.split(":", 1)[1].strip().strip("()").split(",")
            current[side][tensor][1] = tuple(int(d) for d in dims if d.strip())
        elif line.startswith("Method name is:"):
            current["method"] = line.split(":", 1)[1].strip()
            current, tensor = None, None
    return {
        name: {"method": s["method"], "inputs": {k: tuple(v) for k, v in s["inputs"].items()},
               "outputs": {k: tuple(v) for k, v in s["outputs"].items()}}
        for name, s in signatures.items()
    }


def _dtype_name(dtype):
    return {tf.uint8: "DT_UINT8", tf.float32: "DT_FLOAT", tf.int32: "DT_INT32"}[dtype]


def _shape(shape):
    return tuple(-1 if d is None else d for d in shape)


def test_every_family_has_the_documented_signatures(exported):
    for name, path in exported["paths"].items():
        signatures = tf.saved_model.load(path).signatures
        expected = _expected_signatures(exported["models"][name])
        assert set(signatures) == set(expected), (name, sorted(signatures))
        for signature, spec in expected.items():
            fn = signatures[signature]
            inputs = {k: (_dtype_name(v.dtype), _shape(v.shape)) for k, v in fn.structured_input_signature[1].items()}
            outputs = {k: (_dtype_name(v.dtype), _shape(v.shape)) for k, v in fn.structured_outputs.items()}
            assert inputs == spec["inputs"], (name, signature, inputs)
            assert outputs == spec["outputs"], (name, signature, outputs)


# saved_model_cli imports TensorFlow in a process of its own: two families (conditional
# labels; VQ codes) keep the test short, the in-process test above covers all five.
@pytest.mark.parametrize("name", ["cvae", "vq-vae"])
def test_saved_model_cli_lists_every_signature(exported, name):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    assert os.path.exists(cli), cli
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    procs = {
        name: subprocess.Popen([cli, "show", "--all", "--dir", exported["paths"][name]], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    }
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr[-2000:]
        listed = _parse_cli(stdout)
        expected = _expected_signatures(exported["models"][name])
        assert set(listed) == set(expected), (name, sorted(listed))
        for signature, spec in expected.items():
            got = listed[signature]
            assert got["method"] == "tensorflow/serving/predict", (name, signature)
            assert got["inputs"] == spec["inputs"], (name, signature, got["inputs"])
            assert got["outputs"] == spec["outputs"], (name, signature, got["outputs"])


_LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    jobs = json.load(open(sys.argv[1]))
    report = {}
    for name, job in jobs.items():
        loaded = tf.saved_model.load(job["path"])
        ref = dict(np.load(job["refs"]))
        x = np.load(job["x"])
        cond = {"condition": tf.constant(job["labels"], tf.int32)} if job["conditional"] else {}
        sig = loaded.signatures
        got = {}
        for key, value in sig["encode"](images=tf.constant(x), **cond).items():
            got[f"encode/{key}"] = value.numpy()
        depth = {"depth": tf.constant(job["depths"], tf.int32)} if job["residual"] else {}
        if "decode_in/codes" in ref:
            dec = sig["decode"](codes=tf.constant(ref["decode_in/codes"]), **depth)
        else:
            dec = sig["decode"](z=tf.constant(ref["decode_in/z"]), **cond)
        got["decode/images"] = dec["images"].numpy()
        got["decode/images_uint8"] = dec["images_uint8"].numpy()
        got["reconstruct/images"] = sig["reconstruct"](images=tf.constant(x), **cond, **depth)["images"].numpy()
        got["serving_default/images"] = sig["serving_default"](images=tf.constant(x), **cond)["images"].numpy()
        floats = tf.constant(x.astype(np.float32) / 255.0)
        got["reconstruct_float/images"] = sig["reconstruct_float"](images=floats, **cond, **depth)["images"].numpy()
        for key, value in sig["score"](images=tf.constant(x), **cond).items():
            got[f"score/{key}"] = value.numpy()
        for key, value in sig["score_float"](images=floats, **cond).items():
            got[f"score_float/{key}"] = value.numpy()
        seeds = tf.constant(job["seeds"], tf.int32)
        got["sample/images"] = sig["sample"](seed=seeds, **cond)["images"].numpy()
        got["sample_again/images"] = sig["sample"](seed=seeds, **cond)["images"].numpy()
        np.savez(job["got"], **got)
        report[name] = sorted(got)
    report["modules"] = {m: m in sys.modules for m in ("vaezoo", "tensorflow_probability", "keras")}
    print("REPORT" + json.dumps(report))
    """
)


def test_fresh_tensorflow_process_matches_keras(exported, tmp_path):
    jobs = {}
    for name, path in exported["paths"].items():
        model = exported["models"][name]
        refs = tmp_path / f"{name}_refs.npz"
        np.savez(refs, **exported["refs"][name])
        jobs[name] = {"path": path, "refs": str(refs), "got": str(tmp_path / f"{name}_got.npz"),
                      "x": str(tmp_path / "x.npy"), "conditional": bool(model.conditional),
                      "labels": LABELS.tolist(), "seeds": SEEDS.tolist(),
                      "residual": isinstance(model, vaezoo.RQVAE), "depths": DEPTHS.tolist()}
    np.save(tmp_path / "x.npy", exported["x"])
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    script = tmp_path / "load_only_tensorflow.py"
    script.write_text(_LOADER)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "jobs.json")], capture_output=True,
                          text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("REPORT")][-1]
    report = json.loads(line[len("REPORT"):])
    assert report["modules"]["vaezoo"] is False
    assert report["modules"]["tensorflow_probability"] is False
    for name in exported["paths"]:
        ref = exported["refs"][name]
        got = dict(np.load(jobs[name]["got"]))
        for key in ("decode/images", "reconstruct/images", "reconstruct_float/images", "sample/images",
                    "score/neg_elbo", "score/bits_per_dim", "score/nll", "score/kl"):
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
        for key in [k for k in ref if k.startswith("encode/")]:
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
        if "serving_default/images" in ref:  # an RQ-VAE: serving_default is the full depth
            np.testing.assert_allclose(got["serving_default/images"], ref["serving_default/images"], rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(got["reconstruct/images"], ref["reconstruct_depth/images"], rtol=1e-5,
                                       atol=1e-6)
            assert not np.allclose(got["serving_default/images"], got["reconstruct/images"])  # depths 1, 2 differ
        else:
            np.testing.assert_array_equal(got["serving_default/images"], got["reconstruct/images"])
        np.testing.assert_array_equal(got["sample_again/images"], got["sample/images"])  # same seed, same images
        np.testing.assert_allclose(got["score_float/neg_elbo"], got["score/neg_elbo"], rtol=1e-5)
        uint8 = np.round(ref["decode/images"] * 255.0)
        assert np.max(np.abs(got["decode/images_uint8"].astype(np.float64) - uint8)) <= 1.0, name
        images = got["sample/images"]
        assert images.shape == (N, *SHAPE) and images.min() >= 0.0 and images.max() <= 1.0
        assert not np.allclose(images[0], images[1]), f"{name}: different seeds gave the same image"


def test_score_is_the_deterministic_negative_elbo(exported):
    x = exported["x"]
    vae = exported["models"]["vae"]
    posterior = vae.encode(x)
    z = posterior.mean()
    nll = -vae.decode(z).log_prob(vae.likelihood.targets(tf.cast(x, tf.float32) / 255.0))
    kl = posterior.kl_divergence(vae.prior())  # analytic, summed over the latent (Independent)
    ref = exported["refs"]["vae"]
    np.testing.assert_allclose(ref["score/nll"], nll, rtol=1e-5)
    np.testing.assert_allclose(ref["score/kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(ref["score/bits_per_dim"], (nll + kl) / (np.prod(SHAPE) * np.log(2.0)), rtol=1e-5)
    # For the VQ-VAE (a deterministic encoder) the score is exactly the model's ELBO.
    vq = exported["models"]["vq-vae"]
    np.testing.assert_allclose(exported["refs"]["vq-vae"]["score/neg_elbo"], -np.asarray(vq.elbo(x)), rtol=1e-5)
    # Per example: a row's score does not depend on the rest of the batch.
    loaded = tf.saved_model.load(exported["paths"]["vae"])
    alone = loaded.signatures["score"](images=tf.constant(x[:1]))["neg_elbo"].numpy()
    np.testing.assert_allclose(alone, ref["score/neg_elbo"][:1], rtol=1e-5)


def test_tf_serving_layout_and_config(exported):
    out = exported["out"]
    for name, path in exported["paths"].items():
        assert path == os.path.join(out, name, "1")
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        assert os.path.isdir(os.path.join(path, "variables"))
        manifest = json.load(open(os.path.join(path, sm.MANIFEST)))
        assert manifest["class"] == type(exported["models"][name]).__name__ and manifest["version"] == 1
        assert sorted(os.listdir(os.path.join(out, name))) == ["1"]  # no temporary leftovers
    config_text = open(os.path.join(out, "models.config")).read()
    config = sm.parse_text_proto(config_text)
    entries = [dict(e) for k, e in config[0][1] if k == "config"]
    assert [e["name"] for e in entries] == list(exported["paths"])
    assert all(e["base_path"] == f"/models/{e['name']}" and e["model_platform"] == "tensorflow" for e in entries)
    batching = open(os.path.join(out, "batching_parameters.txt")).read()
    assert "max_batch_size { value: 64 }" in batching
    # The real protobuf parser of TF Serving's config agrees (when tensorflow-serving-api is installed).
    pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    parsed = text_format.Parse(config_text, model_server_config_pb2.ModelServerConfig())
    assert [c.name for c in parsed.model_config_list.config] == list(exported["paths"])
    assert all(c.model_version_policy.latest.num_versions == 1 for c in parsed.model_config_list.config)


def test_versions_policies_and_overwrite(tmp_path):
    model = vaezoo.VAE(input_shape=SHAPE, latent_dim=2, encoder=MLP, seed=0)
    first = sm.export_saved_model(model, tmp_path, model_name="m", version=1, float_signatures=False)
    with pytest.raises(sm.ExportExistsError, match=r"already holds an export.*overwrite"):
        sm.export_saved_model(model, tmp_path, model_name="m", version=1)
    sm.export_saved_model(model, tmp_path, model_name="m", version=2, version_policy="specific",
                          float_signatures=False)
    # a user's edit to another entry and to the batching file survive the update
    with open(tmp_path / "models.config", "a") as f:
        f.write('model_config_list { config { name: "other" base_path: "/models/other" } }\n')
    (tmp_path / "batching_parameters.txt").write_text("max_batch_size { value: 8 }\n")
    sm.write_model_config(tmp_path, "m", version_policy="specific")
    entries = {}
    for key, value in sm.parse_text_proto((tmp_path / "models.config").read_text()):
        entries.update({dict(e)["name"]: e for k, e in value if k == "config"})
    assert set(entries) == {"m", "other"}
    policy = dict(dict(entries["m"])["model_version_policy"])["specific"]
    assert [v for k, v in policy if k == "versions"] == ["1", "2"]
    # overwrite replaces the version in place, leaving nothing else behind
    bigger = vaezoo.VAE(input_shape=SHAPE, latent_dim=3, encoder=MLP, seed=0)
    sm.export_saved_model(bigger, tmp_path, model_name="m", version=1, overwrite=True, float_signatures=False)
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "2"]
    assert (tmp_path / "batching_parameters.txt").read_text() == "max_batch_size { value: 8 }\n"
    loaded = tf.saved_model.load(first)
    assert loaded.signatures["encode"].structured_outputs["mean"].shape[-1] == 3
    assert "encode_float" not in loaded.signatures
    # an empty version directory (e.g. made by hand) is not "an export": it is filled
    os.makedirs(tmp_path / "m" / "3")
    sm.export_saved_model(model, tmp_path, model_name="m", version=3, float_signatures=False)
    assert os.path.isfile(tmp_path / "m" / "3" / "saved_model.pb")


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch, existing):
    model = vaezoo.VAE(input_shape=SHAPE, latent_dim=2, encoder=MLP, seed=0)
    if existing:
        sm.export_saved_model(model, tmp_path, model_name="m", version=1, float_signatures=False)
    before = (tmp_path / "models.config").read_text() if existing else None
    real_save = tf.saved_model.save

    def crash_mid_write(obj, export_dir, *args, **kwargs):
        os.makedirs(os.path.join(export_dir, "variables"), exist_ok=True)
        with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
            f.write(b"half a graph")
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(tf.saved_model, "save", crash_mid_write)
    with pytest.raises(OSError, match="simulated"):
        sm.export_saved_model(model, tmp_path, model_name="m", version=1, overwrite=existing, float_signatures=False)
    monkeypatch.setattr(tf.saved_model, "save", real_save)
    left = sorted(os.listdir(tmp_path / "m"))
    if existing:  # the old version is untouched and still the one served
        assert left == ["1"]
        assert open(tmp_path / "m" / "1" / "saved_model.pb", "rb").read(4) != b"half"
        assert (tmp_path / "models.config").read_text() == before
    else:
        assert left == []
        assert not (tmp_path / "models.config").exists()


def test_bad_inputs_are_refused(exported):
    x = exported["x"]
    vae = tf.saved_model.load(exported["paths"]["vae"]).signatures
    # a wrong image shape is refused in the graph, with a message naming the expected shape
    # (what TF Serving relays to its client)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"uint8 in \[0, 255\] with shape \(batch, 8, 8, 1\)"):
        vae["reconstruct"](images=tf.zeros((2, 8, 8, 3), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"with shape \(batch, 8, 8, 1\)"):
        vae["score"](images=tf.zeros((2, 4, 4, 1), tf.uint8))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="uint8"):
        vae["reconstruct"](images=tf.zeros((2, 8, 8, 1), tf.float32))  # float to the uint8 signature
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"float32 in \[0, 1\]"):
        vae["reconstruct_float"](images=tf.constant(x.astype(np.float32)))  # 0..255 floats
    cvae = tf.saved_model.load(exported["paths"]["cvae"]).signatures
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class labels in \[0, 3\)"):
        cvae["score"](images=tf.constant(x), condition=tf.constant([0, 1, 7]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class labels in \[0, 3\)"):
        cvae["sample"](seed=tf.constant([1]), condition=tf.constant([-1]))
    vq = tf.saved_model.load(exported["paths"]["vq-vae"]).signatures
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"codes must be int32 code indices in \[0, 8\)"):
        vq["decode"](codes=tf.fill((1, 4, 4), 8))
    rq = tf.saved_model.load(exported["paths"]["rq-vae"]).signatures
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"depth must be int32 depths in \[1, 3\]"):
        rq["decode"](codes=tf.zeros((2, 4, 4, 3), tf.int32), depth=tf.constant([1, 4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"depth must be int32 depths in \[1, 3\]"):
        rq["reconstruct"](images=tf.constant(x[:1]), depth=tf.constant([0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"codes must be int32 code indices in \[0, 8\)"):
        rq["decode"](codes=tf.fill((1, 4, 4, 3), -1), depth=tf.constant([2]))


def test_export_function_cli_and_sources(tmp_path, capsys):
    model = vaezoo.VAE(input_shape=SHAPE, latent_dim=2, encoder=MLP, seed=0)
    keras_file = tmp_path / "tiny-vae.keras"
    model.save(keras_file)
    # a .keras file: the name defaults to its stem
    result = vaezoo.export_model(str(keras_file), tmp_path / "out", float_signatures=False)
    assert result == {"saved_model": os.path.join(str(tmp_path / "out"), "tiny-vae", "1")}
    # a training workdir (config + weights, as vaezoo.training writes them)
    final = tmp_path / "run-7" / "final"
    final.mkdir(parents=True)
    (final / "model_config.json").write_text(json.dumps({"class": "VAE", "config": model.get_config()}))
    model.save_weights(final / "model.weights.h5")
    path = vaezoo.export_model(str(tmp_path / "run-7"), tmp_path / "out", version=4, float_signatures=False)["saved_model"]
    assert path.endswith(os.path.join("run-7", "4"))
    x = _images()
    served = tf.saved_model.load(path).signatures["reconstruct"](images=tf.constant(x))["images"]
    np.testing.assert_allclose(served, model.reconstruct(x), rtol=1e-5, atol=1e-6)
    # the CLI: success, then a clear refusal to overwrite
    from vaezoo.cli import main

    args = ["export", str(keras_file), "--out", str(tmp_path / "cli"), "--name", "served", "--version", "2"]
    assert main(args) == 0
    assert "SavedModel:" in capsys.readouterr().out
    assert os.path.isfile(tmp_path / "cli" / "served" / "2" / "saved_model.pb")
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    # bad sources and options
    with pytest.raises(FileNotFoundError, match="No such model file"):
        vaezoo.export_model(str(tmp_path / "missing.keras"), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a finished training workdir"):
        vaezoo.export_model(str(tmp_path / "out"), tmp_path / "out2")
    # a bare name is looked up in the registry (not taken for a missing file), and the error names it
    with pytest.raises(UnknownModelError, match="No model named 'no-such-registry-name' in the zoo"):
        vaezoo.export_model("no-such-registry-name", tmp_path / "out")
    with pytest.raises(ValueError, match="format must be one of"):
        vaezoo.export_model(model, tmp_path / "out", format="onnx")
    with pytest.raises(ValueError, match="model_name must start"):
        vaezoo.export_model(model, tmp_path / "out", model_name="../escape")
    with pytest.raises(TypeError, match="vaezoo models"):
        sm.export_saved_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), tmp_path / "out")
    # the old name (the package called as a function) still exports, with a deprecation warning
    with pytest.warns(DeprecationWarning, match=r"vaezoo.export_model\(\.\.\.\)"):
        old = vaezoo.export(str(keras_file), tmp_path / "old", float_signatures=False)
    assert old == {"saved_model": os.path.join(str(tmp_path / "old"), "tiny-vae", "1")}


def test_signature_table_is_documented():
    table = os.path.join(os.path.dirname(__file__), "..", "docs", "signatures.md")
    text = open(table, encoding="utf-8").read()
    for signature in sm.SIGNATURES + sm.FLOAT_SIGNATURES:
        assert f"`{signature}`" in text, signature
    for family in ("VAE", "BetaVAE", "CVAE", "VQVAE", "RQVAE", "HierarchicalVAE"):
        assert family in text
