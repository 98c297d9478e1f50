"""hf:// and kaggle:// URIs (vaezoo.hub) with the real clients against loopback test doubles
of the hubs' file APIs (tests/hub_doubles.py): upload, download, revision pinning, a corrupted
file refused by its hash, offline mode, concurrent loads sharing one cache entry, and the
errors. Nothing here leaves 127.0.0.1."""

import socket
import sys
import threading

import numpy as np
import pytest

import vaezoo
from hub_doubles import HfHubDouble, KaggleDouble
from vaezoo import cli, hub, presets

SHAPE = (8, 8, 1)


def tiny(seed):
    return vaezoo.VAE(input_shape=SHAPE, latent_dim=2, encoder={"type": "mlp", "hidden": [8]}, seed=seed)


X = (np.random.default_rng(0).random((3, *SHAPE)) * 255).astype(np.uint8)


def outputs(model):
    return np.asarray(model.reconstruct(X))


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Every test here fails if any connection is attempted to an address off 127.0.0.0/8 / ::1."""
    outside = []
    connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")):
            outside.append(address)
            raise OSError(f"test guard: connection to {address} refused (tests stay on loopback)")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
    assert outside == [], f"connections attempted beyond loopback: {outside}"


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Two presets of the same architecture with different weights (v1, v2) and their outputs."""
    root = tmp_path_factory.mktemp("presets")
    made = {}
    for version, seed in (("v1", 1), ("v2", 2)):
        model = tiny(seed)
        path = presets.save_preset(model, root / version, name="tiny-vae")
        files = {name: open(f"{path}/{name}", "rb").read() for name in presets.FILES}
        made[version] = (path, files, outputs(model))
    assert not np.array_equal(made["v1"][2], made["v2"][2])  # the versions are distinguishable
    return made


def point_hf_at(url, monkeypatch):
    """HF_ENDPOINT for vaezoo.hub (read at each call), and the client's own copy of it, read once
    at import (a few calls, e.g. the README metadata check before a commit, use that copy): so
    not one request leaves 127.0.0.1 whenever huggingface_hub was first imported."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", url)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        url + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def hf(tmp_path, monkeypatch):
    with HfHubDouble() as double:
        point_hf_at(double.url, monkeypatch)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("HF_TOKEN", "hf_test_double_token")  # a token that only the double sees
        yield double


def test_upload_download_and_revision_pinning(hf, versions, tmp_path):
    assert cli.main(["upload", versions["v1"][0], "hf://org/tiny-vae"]) == 0
    first = hf.repos["org/tiny-vae"]["refs"]["main"]
    hf.repos["org/tiny-vae"]["refs"]["v1"] = first  # a tag
    second = hub.upload(versions["v2"][0], "hf://org/tiny-vae", message="v2")
    assert second != first and hf.repos["org/tiny-vae"]["refs"]["main"] == second
    # what the Hub holds is byte for byte the preset
    assert hf.repos["org/tiny-vae"]["commits"][first] == versions["v1"][1]

    np.testing.assert_array_equal(outputs(vaezoo.load("hf://org/tiny-vae")), versions["v2"][2])
    for pin in (first, "v1"):
        model = vaezoo.load(f"hf://org/tiny-vae@{pin}")
        np.testing.assert_array_equal(outputs(model), versions["v1"][2])
    assert model.card["name"] == "tiny-vae"
    np.testing.assert_array_equal(outputs(vaezoo.VAE.from_preset(f"hf://org/tiny-vae@{second}")), versions["v2"][2])
    assert vaezoo.registry.resolve_model("hf://org/tiny-vae@v1").kind == "preset"


def test_corrupted_download_is_refused_by_its_hash(hf, versions):
    commit = hf.commit("org/tiny-vae", versions["v1"][1])
    weights = bytearray(versions["v1"][1]["model.weights.h5"])
    weights[len(weights) // 2] ^= 0x01  # one bit
    hf.corrupt[(commit, "model.weights.h5")] = bytes(weights)
    with pytest.raises(presets.PresetHashError, match=r"hf://org/tiny-vae: sha256 of model\.weights\.h5"):
        vaezoo.load("hf://org/tiny-vae")


def test_offline_mode_loads_from_the_cache(hf, versions, tmp_path, monkeypatch):
    hf.commit("org/tiny-vae", versions["v1"][1])
    vaezoo.load("hf://org/tiny-vae")
    before = len(hf.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    np.testing.assert_array_equal(outputs(vaezoo.load("hf://org/tiny-vae")), versions["v1"][2])
    assert len(hf.requests) == before  # not one request
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(hub.HubError, match=r"hf://org/tiny-vae: HF_HUB_OFFLINE is set and the Hugging Face cache"):
        vaezoo.load("hf://org/tiny-vae")


def test_no_network_and_an_empty_cache(tmp_path, monkeypatch):
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_hf_at(f"http://127.0.0.1:{port}", monkeypatch)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    with pytest.raises(hub.HubError, match=rf"hf://org/tiny-vae: http://127.0.0.1:{port} cannot be reached"):
        vaezoo.load("hf://org/tiny-vae")


def test_not_found_and_not_a_preset(hf, versions):
    hf.commit("org/tiny-vae", versions["v1"][1])
    hf.commit("org/notes", {"README.md": b"# just notes\n"})
    with pytest.raises(hub.HubError, match=r"hf://org/nope: no repository 'org/nope'"):
        vaezoo.load("hf://org/nope")
    with pytest.raises(hub.HubError, match=r"hf://org/tiny-vae@v7: repository 'org/tiny-vae' has no revision 'v7'"):
        vaezoo.load("hf://org/tiny-vae@v7")
    with pytest.raises(presets.PresetError, match=r"hf://org/notes is not a vaezoo preset: expected config\.json"):
        vaezoo.load("hf://org/notes")
    with pytest.raises(hub.HubError, match=r"expected hf://ORG/REPO\[@REVISION\]"):
        hub.fetch("hf://just-a-name")


def test_concurrent_loads_share_one_cache_entry(hf, versions):
    commit = hf.commit("org/tiny-vae", versions["v2"][1])
    hf.delay = 0.3  # every file download is slow, so the four fetches overlap
    paths, errors = [], []

    def fetch():
        try:
            paths.append(hub.fetch("hf://org/tiny-vae"))
        except Exception as error:  # noqa: BLE001  (reported by the assertion below)
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(set(paths)) == 1 and len(paths) == 4
    assert {hf.gets[(commit, name)] for name in presets.FILES} == {1}  # each file downloaded once
    np.testing.assert_array_equal(outputs(vaezoo.load(paths[0])), versions["v2"][2])


def test_missing_extra_names_the_install_command(monkeypatch):
    for module, uri in (("huggingface_hub", "hf://org/tiny-vae"), ("kagglehub", "kaggle://o/m/keras/v")):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
        with pytest.raises(hub.MissingExtraError, match=rf'{uri} needs the {module} package.*pip install "vaezoo\[hub\]"'):
            vaezoo.load(uri)
    assert cli.main(["sample", "hf://org/tiny-vae", "-o", "x.png"]) == 2


def test_upload_refuses_a_damaged_preset_and_a_versioned_kaggle_uri(versions, tmp_path, monkeypatch):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(versions["v1"][0], damaged)
    (damaged / "model.weights.h5").write_bytes(b"not weights")
    with pytest.raises(presets.PresetHashError):  # refused before any client is called
        hub.upload(str(damaged), "hf://org/tiny-vae")
    with pytest.raises(hub.HubError, match="Kaggle numbers versions"):
        hub.upload(versions["v1"][0], "kaggle://owner/tiny-vae/keras/small/3")
    # Kaggle upload is not imitated by a test double (its blob-upload protocol); its resolution
    # layer is: the handle and folder given to kagglehub.model_upload
    import kagglehub

    calls = []
    monkeypatch.setattr(kagglehub, "model_upload", lambda *a, **k: calls.append((a, k)))
    assert hub.upload(versions["v1"][0], "kaggle://owner/tiny-vae/keras/small", message="first") == \
        "owner/tiny-vae/keras/small"
    assert calls == [(("owner/tiny-vae/keras/small", versions["v1"][0]),
                      {"license_name": "Apache 2.0", "version_notes": "first"})]


# ------------------------------------------------------------------ Kaggle
@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """kagglehub takes no endpoint URL: KAGGLE_API_ENVIRONMENT=TEST means http://localhost:7777."""
    double = KaggleDouble()
    try:
        double.start()
    except OSError:
        pytest.skip("127.0.0.1:7777 (kagglehub's fixed TEST endpoint) is in use")
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle-cache"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-credentials"))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_KERNEL_RUN_TYPE", "TBE_RUNTIME_ADDR"):
        monkeypatch.delenv(name, raising=False)
    yield double
    double.stop()


def test_kaggle_download_versions_hash_and_cache(kaggle, versions):
    handle = "owner/tiny-vae/keras/small"
    assert kaggle.add_version(handle, versions["v1"][1]) == 1
    assert kaggle.add_version(handle, versions["v2"][1]) == 2
    np.testing.assert_array_equal(outputs(vaezoo.load(f"kaggle://{handle}")), versions["v2"][2])  # latest
    np.testing.assert_array_equal(outputs(vaezoo.load(f"kaggle://{handle}/1")), versions["v1"][2])  # pinned
    # a pinned version in the cache loads with the service gone
    kaggle.stop()
    np.testing.assert_array_equal(outputs(vaezoo.load(f"kaggle://{handle}/1")), versions["v1"][2])
    with pytest.raises(hub.HubError, match=rf"kaggle://{handle}: Kaggle cannot be reached"):
        vaezoo.load(f"kaggle://{handle}")
    kaggle.start()


def test_kaggle_corrupted_file_not_found_and_concurrency(kaggle, versions):
    handle = "owner/tiny-vae/keras/small"
    kaggle.add_version(handle, versions["v1"][1])
    weights = bytearray(versions["v1"][1]["model.weights.h5"])
    weights[100] ^= 0x80
    kaggle.corrupt[(handle, 1, "model.weights.h5")] = bytes(weights)
    with pytest.raises(presets.PresetHashError, match=rf"kaggle://{handle}/1: sha256 of model\.weights\.h5"):
        vaezoo.load(f"kaggle://{handle}/1")
    with pytest.raises(hub.HubError, match=r"kaggle://owner/nope/keras/small: no model variation"):
        vaezoo.load("kaggle://owner/nope/keras/small")
    with pytest.raises(hub.HubError, match=rf"kaggle://{handle}/9: no version 9"):
        vaezoo.load(f"kaggle://{handle}/9")
    other = "owner/tiny-vae/keras/other"
    kaggle.add_version(other, versions["v2"][1])
    kaggle.delay = 0.2
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(hub.fetch(f"kaggle://{other}/1"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(paths) == 3 and len(set(paths)) == 1
    assert {kaggle.gets[(other, 1, name)] for name in presets.FILES} == {1}
