"""The TF Serving clients (`vaezoo.serving`) against a test double of TF Serving's Predict API
that serves an exported SavedModel over real HTTP and real gRPC on 127.0.0.1."""

import socket
import time

import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from serving_double import ServingDouble
from vaezoo.export.saved_model import export_saved_model
from vaezoo.serving import GrpcClient, RestClient, ServingError

pytest.importorskip("grpc")
pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")

SHAPE = (8, 8, 1)
NAME = "tiny-cvae"
LABELS = np.array([0, 2, 1], np.int32)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny CVAE exported and served; `signatures` are the SavedModel's, called directly."""
    model = vaezoo.CVAE(input_shape=SHAPE, num_classes=3, latent_dim=2, encoder={"type": "mlp", "hidden": [16]},
                        prior="learned", seed=0)
    path = export_saved_model(model, tmp_path_factory.mktemp("served"), model_name=NAME, version=3)
    double = ServingDouble(NAME, path, version=3).start()
    images = (np.random.default_rng(0).random((3, *SHAPE)) * 255).astype(np.uint8)
    yield {"double": double, "signatures": double.loaded.signatures, "images": images}
    double.stop()


@pytest.fixture
def double(served):
    served["double"].fail_next = 0
    served["double"].delay = 0.0
    served["double"].calls = 0
    return served["double"]


def _direct(served, signature, **inputs):
    tensors = {k: tf.constant(v) for k, v in inputs.items()}
    return {k: v.numpy() for k, v in served["signatures"][signature](**tensors).items()}


def _cases(served):
    x = served["images"]
    return [
        ("reconstruct", {"images": x, "condition": LABELS}),
        ("score", {"images": x, "condition": LABELS}),
        ("encode_float", {"images": x.astype(np.float32) / 255.0, "condition": LABELS}),
        ("decode", {"z": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2), "condition": LABELS}),
        ("sample", {"seed": np.array([4, 5, 6], np.int32), "condition": LABELS}),
        ("serving_default", {"images": x, "condition": LABELS}),
    ]


def _assert_same(got, want, exact_dtype=False):
    assert set(got) == set(want)
    for key in want:
        if exact_dtype:
            assert got[key].dtype == want[key].dtype, key
        np.testing.assert_allclose(np.asarray(got[key], np.float64), want[key].astype(np.float64),
                                   rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("format", ["columns", "rows"])
def test_rest_matches_the_saved_model(served, double, format):
    client = RestClient(double.rest_url, NAME, timeout=30)
    for signature, inputs in _cases(served):
        _assert_same(client.predict(inputs, signature_name=signature, format=format),
                     _direct(served, signature, **inputs))
    versioned = RestClient(double.rest_url, NAME, version=3, timeout=30)
    assert versioned.model_url.endswith(f"/v1/models/{NAME}/versions/3")
    _assert_same(versioned.predict(_cases(served)[0][1], "reconstruct", format=format),
                 _direct(served, "reconstruct", **_cases(served)[0][1]))
    assert client.status()["model_version_status"][0]["state"] == "AVAILABLE"


def test_grpc_matches_the_saved_model(served, double):
    with GrpcClient(double.grpc_target, NAME, timeout=30) as client:
        for signature, inputs in _cases(served):
            _assert_same(client.predict(inputs, signature_name=signature), _direct(served, signature, **inputs),
                         exact_dtype=True)
        with GrpcClient(double.grpc_target, NAME, version=3, timeout=30) as versioned:
            out = versioned.predict(_cases(served)[0][1], "reconstruct")
            assert out["images_uint8"].dtype == np.uint8


def test_convenience_calls(served, double):
    x = served["images"]
    rest = RestClient(double.rest_url, NAME, timeout=30)
    with GrpcClient(double.grpc_target, NAME, timeout=30) as grpc_client:
        for client in (rest, grpc_client):
            want = _direct(served, "sample", seed=np.array([7, 8, 9], np.int32), condition=LABELS)
            _assert_same(client.sample(3, seed=7, condition=LABELS.tolist()), want)
            _assert_same(client.score(x, condition=LABELS), _direct(served, "score", images=x, condition=LABELS))
            floats = x.astype(np.float32) / 255.0
            _assert_same(client.reconstruct(floats, condition=LABELS),
                         _direct(served, "reconstruct_float", images=floats, condition=LABELS))
            mean = client.encode(x, condition=LABELS)["mean"]
            _assert_same(client.decode(mean, condition=LABELS),
                         _direct(served, "decode", z=np.asarray(mean, np.float32), condition=LABELS))


def test_retries_on_unavailable_then_succeeds(served, double):
    inputs = _cases(served)[1][1]
    want = _direct(served, "score", **inputs)
    double.fail_next = 2
    _assert_same(RestClient(double.rest_url, NAME, retries=3, backoff=0.01).predict(inputs, "score"), want)
    assert double.calls == 3
    double.calls, double.fail_next = 0, 2
    with GrpcClient(double.grpc_target, NAME, retries=3, backoff=0.01) as client:
        _assert_same(client.predict(inputs, "score"), want)
    assert double.calls == 3


def test_gives_up_after_the_retries(served, double):
    inputs = _cases(served)[1][1]
    double.fail_next = 10
    with pytest.raises(ServingError) as caught:
        RestClient(double.rest_url, NAME, retries=2, backoff=0.01).predict(inputs, "score")
    assert caught.value.code == "UNAVAILABLE" and caught.value.http_status == 503
    assert caught.value.attempts == 3 and double.calls == 3
    assert "injected UNAVAILABLE" in caught.value.message
    double.calls = 0
    with GrpcClient(double.grpc_target, NAME, retries=1, backoff=0.01) as client:
        with pytest.raises(ServingError) as caught:
            client.predict(inputs, "score")
    assert caught.value.code == "UNAVAILABLE" and caught.value.attempts == 2 and double.calls == 2


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RestClient(f"http://127.0.0.1:{port}", NAME, retries=2, backoff=0.01, timeout=5)
    with pytest.raises(ServingError) as caught:
        client.predict({"seed": [1]}, "sample")
    assert caught.value.code == "UNAVAILABLE" and caught.value.attempts == 3
    assert "cannot reach" in caught.value.message


def test_timeouts(served, double):
    inputs = _cases(served)[1][1]
    double.delay = 2.0
    start = time.monotonic()
    with pytest.raises(ServingError) as caught:
        RestClient(double.rest_url, NAME, timeout=0.3, retries=3).predict(inputs, "score")
    assert caught.value.code == "DEADLINE_EXCEEDED" and caught.value.attempts == 1  # not retried
    with GrpcClient(double.grpc_target, NAME, timeout=0.3, retries=3) as client:
        with pytest.raises(ServingError) as caught:
            client.predict(inputs, "score")
    assert caught.value.code == "DEADLINE_EXCEEDED" and caught.value.attempts == 1
    assert time.monotonic() - start < 3.5


def test_errors_carry_the_server_message(served, double):
    inputs = _cases(served)[0][1]
    rest = RestClient(double.rest_url, NAME, retries=3, backoff=0.01)
    with GrpcClient(double.grpc_target, NAME, retries=3, backoff=0.01) as grpc_client:
        for client in (rest, grpc_client):
            with pytest.raises(ServingError, match='signature name: "nope" not found') as caught:
                client.predict(inputs, signature_name="nope")
            assert caught.value.code == "INVALID_ARGUMENT" and caught.value.attempts == 1
            wrong = {"images": np.zeros((2, 8, 8, 3), np.uint8), "condition": LABELS[:2]}
            with pytest.raises(ServingError, match=r"with shape \(batch, 8, 8, 1\)") as caught:
                client.predict(wrong, signature_name="reconstruct")
            assert caught.value.code == "INVALID_ARGUMENT"
            with pytest.raises(ServingError, match=r"class labels in \[0, 3\)"):
                client.predict({"images": served["images"], "condition": [0, 1, 9]}, "score")
    with pytest.raises(ServingError, match=r"Servable not found for request: Latest\(other\)") as caught:
        RestClient(double.rest_url, "other").predict(inputs, "reconstruct")
    assert caught.value.code == "NOT_FOUND" and caught.value.http_status == 404
    with GrpcClient(double.grpc_target, NAME, version=9) as client:
        with pytest.raises(ServingError, match=r"Specific\(tiny-cvae, 9\)") as caught:
            client.predict(inputs, "reconstruct")
    assert caught.value.code == "NOT_FOUND"


def test_client_arguments_are_checked(served, double):
    with pytest.raises(ValueError, match="http"):
        RestClient("localhost:8501", NAME)
    with pytest.raises(ValueError, match="timeout"):
        RestClient(double.rest_url, NAME, timeout=0)
    with pytest.raises(ValueError, match="version"):
        RestClient(double.rest_url, NAME, version=-1)
    client = RestClient(double.rest_url, NAME)
    with pytest.raises(ValueError, match="same batch size"):
        client.predict({"images": served["images"], "condition": LABELS[:2]}, "score", format="rows")
    with pytest.raises(ValueError, match="format"):
        client.predict({"seed": [1]}, "sample", format="json")
    with pytest.raises(TypeError, match="uint8"):
        client.score(served["images"].astype(np.int16))
    with pytest.raises(ValueError, match="n must be"):
        client.sample(0)
    assert double.calls == 0


def test_a_request_over_the_exports_row_limit_reaches_the_client_as_invalid_argument(served, double):
    from vaezoo.export.saved_model import DEFAULT_MAX_ROWS

    n = DEFAULT_MAX_ROWS + 1
    client = RestClient(double.rest_url, NAME, timeout=30, retries=0)
    with pytest.raises(ServingError) as info:
        client.sample(n, seed=0, condition=np.zeros(n, np.int32))
    assert info.value.code == "INVALID_ARGUMENT" and info.value.http_status == 400
    assert f"at most {DEFAULT_MAX_ROWS} rows per call (max_rows" in info.value.message
    assert client.sample(DEFAULT_MAX_ROWS, seed=0, condition=np.zeros(DEFAULT_MAX_ROWS, np.int32))["images"].shape[0] \
        == DEFAULT_MAX_ROWS
