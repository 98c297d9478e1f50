"""Clients for TensorFlow Serving's Predict API, over REST (standard library) and gRPC.

`RestClient` speaks `POST /v1/models/NAME[/versions/N]:predict` with either request format
TF Serving accepts: `"instances"` (row format, one object per example) or `"inputs"`
(columnar, one array per named input). `GrpcClient` calls `PredictionService/Predict` with
the `tensorflow-serving-api` stubs (`pip install "vaezoo[serving]"`). Both

- return a dict of named numpy arrays (TF Serving omits the name when a signature has one
  output; that output comes back under the key `"output"`; vaezoo's signatures always
  have at least two named outputs),
- stop a call after `timeout` seconds (`ServingError` with code `DEADLINE_EXCEEDED`),
- retry with exponential backoff (with jitter) when the server is UNAVAILABLE: gRPC status
  UNAVAILABLE, HTTP 502/503, or a refused/reset connection (a server still starting, a
  full batching queue); other errors are raised at once,
- raise `ServingError` carrying the server's status and its own error message.

JSON has no dtypes: over REST, integer outputs come back int64 and floats float64 (values
are the float32 ones); gRPC keeps the tensors' dtypes. Inputs given as Python lists are
sent as int32 / float32 (what vaezoo's signatures take); numpy arrays keep their dtype.

Example:
    >>> from vaezoo.serving import RestClient, GrpcClient
    >>> client = RestClient("http://localhost:8501", "vae-mnist")
    >>> client.predict({"images": images_uint8}, signature_name="score")["bits_per_dim"]
    >>> client.sample(8, seed=0)["images"].shape          # seeds 0..7
    (8, 28, 28, 1)
    >>> with GrpcClient("localhost:8500", "vae-mnist") as grpc_client:
    ...     codes = grpc_client.encode(images_uint8)
"""

import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.request

import numpy as np

#: HTTP status TF Serving's REST API uses for each canonical error code (and back).
HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}
_CODE_OF_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                   404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                   500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
                   504: "DEADLINE_EXCEEDED"}
#: HTTP statuses worth retrying (the server, or a proxy in front of it, is not ready).
RETRY_HTTP_STATUS = (502, 503)


class ServingError(RuntimeError):
    """A failed Predict call: the server's status and error message.

    Attributes:
        code: canonical status name, e.g. `"INVALID_ARGUMENT"`, `"NOT_FOUND"`,
            `"UNAVAILABLE"`, `"DEADLINE_EXCEEDED"`.
        message: the server's own error text (or what went wrong on the way).
        http_status: the HTTP status (REST), else `None`.
        attempts: how many calls were made before giving up.
    """

    def __init__(self, message, code="UNKNOWN", http_status=None, attempts=1):
        self.code = code
        self.message = message
        self.http_status = http_status
        self.attempts = attempts
        status = f"HTTP {http_status} " if http_status is not None else ""
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{status}{code}: {message}{tries}")

    @property
    def retryable(self):
        return self.code == "UNAVAILABLE"


def _as_input(value):
    """A numpy array for one named input; Python numbers/lists go as int32 / float32."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "numpy"):  # a tf.Tensor
        return np.asarray(value.numpy())
    array = np.asarray(value)
    if array.dtype == np.int64:
        return array.astype(np.int32)
    if array.dtype == np.float64:
        return array.astype(np.float32)
    return array


class _Client:
    """Shared retry loop and the convenience calls of vaezoo's signatures."""

    def __init__(self, model_name, version=None, timeout=10.0, retries=3, backoff=0.1, max_backoff=5.0):
        if not isinstance(model_name, str) or not model_name:
            raise ValueError(f"model_name must be a non-empty string, got {model_name!r}.")
        if version is not None and (isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0):
            raise ValueError(f"version must be None (the served default) or an integer >= 0, got {version!r}.")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}.")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}.")
        if backoff < 0 or max_backoff < 0:
            raise ValueError(f"backoff and max_backoff must be >= 0, got {backoff!r}, {max_backoff!r}.")
        self.model_name = model_name
        self.version = None if version is None else int(version)
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)

    def _retrying(self, call):
        delay = self.backoff
        for attempt in range(1, self.retries + 2):
            try:
                return call()
            except ServingError as error:
                error.attempts = attempt
                if not error.retryable or attempt > self.retries:
                    if attempt > 1:
                        error.args = (f"{error.args[0]} (after {attempt} attempts)",)
                    raise
            time.sleep(min(delay, self.max_backoff) * (0.5 + 0.5 * random.random()))
            delay = max(delay * 2, 1e-3)

    def predict(self, inputs, signature_name="serving_default"):
        raise NotImplementedError

    # ----------------------------------------------------------------- vaezoo signatures
    def _image_call(self, signature, images, condition):
        images = np.asarray(images)
        if images.dtype == np.uint8:
            name = signature
        elif images.dtype.kind == "f":
            name, images = f"{signature}_float", images.astype(np.float32)
        else:
            raise TypeError(f"images must be uint8 in [0, 255] or float in [0, 1], got dtype {images.dtype}.")
        inputs = {"images": images}
        if condition is not None:
            inputs["condition"] = _as_input(condition)
        return self.predict(inputs, signature_name=name)

    def encode(self, images, condition=None):
        """`encode` (uint8 images) or `encode_float` (float images): `mean`/`stddev` or `codes`."""
        return self._image_call("encode", images, condition)

    def reconstruct(self, images, condition=None):
        """`reconstruct` / `reconstruct_float`: `images` (float in [0, 1]) and `images_uint8`."""
        return self._image_call("reconstruct", images, condition)

    def score(self, images, condition=None):
        """`score` / `score_float`: `neg_elbo`, `bits_per_dim`, `nll`, `kl` per image."""
        return self._image_call("score", images, condition)

    def decode(self, latents, condition=None):
        """`decode`: float latents `z` `(batch, latent_dim)` or int VQ `codes` `(batch, h, w)`."""
        latents = np.asarray(latents)
        if latents.dtype.kind in "iu":
            inputs = {"codes": latents.astype(np.int32)}
        else:
            inputs = {"z": latents.astype(np.float32)}
        if condition is not None:
            inputs["condition"] = _as_input(condition)
        return self.predict(inputs, signature_name="decode")

    def sample(self, n, seed=0, condition=None):
        """`sample` with seeds `seed, seed + 1, ..., seed + n - 1`: one image per seed."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}.")
        inputs = {"seed": np.arange(int(seed), int(seed) + int(n), dtype=np.int32)}
        if condition is not None:
            inputs["condition"] = _as_input(condition)
        return self.predict(inputs, signature_name="sample")


class RestClient(_Client):
    """TF Serving REST client (standard library only).

    Args:
        url: the server's REST root, e.g. `"http://localhost:8501"`.
        model_name: the served model's name (its entry in `models.config`).
        version: a specific version to call; `None` for the server's default (latest).
        timeout: seconds per HTTP call.
        retries: extra attempts after an UNAVAILABLE answer (503/502) or a refused/reset
            connection.
        backoff: first pause between attempts in seconds; doubles each time, capped at
            `max_backoff`, with jitter.
        max_backoff: the longest pause.

    Example:
        >>> client = RestClient("http://localhost:8501", "vae-mnist", timeout=5)
        >>> out = client.predict({"images": x_uint8}, signature_name="score", format="rows")
        >>> out["bits_per_dim"]
    """

    def __init__(self, url, model_name, version=None, timeout=10.0, retries=3, backoff=0.1, max_backoff=5.0):
        super().__init__(model_name, version, timeout, retries, backoff, max_backoff)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}.")
        self.url = url.rstrip("/")

    @property
    def model_url(self):
        """`URL/v1/models/NAME` or `URL/v1/models/NAME/versions/N`."""
        url = f"{self.url}/v1/models/{self.model_name}"
        return url if self.version is None else f"{url}/versions/{self.version}"

    def _request(self, url, body=None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                message = text or error.reason
            code = _CODE_OF_STATUS.get(error.code, "UNKNOWN")
            raise ServingError(str(message), code=code, http_status=error.code) from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ServingError(f"no answer from {url} within {self.timeout:g} s", "DEADLINE_EXCEEDED") from None
            raise ServingError(f"cannot reach {url}: {reason}", "UNAVAILABLE") from None
        except (socket.timeout, TimeoutError):
            raise ServingError(f"no answer from {url} within {self.timeout:g} s", "DEADLINE_EXCEEDED") from None
        except (ConnectionError, http.client.HTTPException) as error:
            raise ServingError(f"connection to {url} failed: {error!r}", "UNAVAILABLE") from None
        try:
            answer = json.loads(payload)
        except ValueError:
            raise ServingError(f"the server's answer is not JSON: {payload[:200]!r}", "INTERNAL") from None
        if isinstance(answer, dict) and "error" in answer:
            raise ServingError(str(answer["error"]), "UNKNOWN")
        return answer

    def predict(self, inputs, signature_name="serving_default", format="columns"):
        """Call a signature; returns a dict of named numpy arrays.

        Args:
            inputs: dict input name -> array-like (all with the same batch size for rows).
            signature_name: the signature, e.g. `"score"`.
            format: `"columns"` (the `"inputs"` request) or `"rows"` (`"instances"`).

        Raises:
            ServingError: the server's error (status code and message), a timeout, or an
                unreachable server after `retries` further attempts.
        """
        if not isinstance(inputs, dict) or not inputs:
            raise TypeError(f"inputs must be a non-empty dict of named arrays, got {type(inputs).__name__}.")
        arrays = {name: _as_input(value) for name, value in inputs.items()}
        body = {"signature_name": signature_name}
        if format == "columns":
            body["inputs"] = {name: array.tolist() for name, array in arrays.items()}
        elif format == "rows":
            sizes = {name: (array.shape[0] if array.ndim else None) for name, array in arrays.items()}
            if None in sizes.values() or len(set(sizes.values())) != 1:
                raise ValueError(
                    "the rows format needs every input to have the same batch size on axis 0, got "
                    f"{sizes}; use format='columns' for scalar or unequal inputs."
                )
            n = next(iter(sizes.values()))
            body["instances"] = [{name: array[i].tolist() for name, array in arrays.items()} for i in range(n)]
        else:
            raise ValueError(f"format must be 'columns' or 'rows', got {format!r}.")
        answer = self._retrying(lambda: self._request(f"{self.model_url}:predict", body))
        if format == "columns":
            outputs = answer.get("outputs") if isinstance(answer, dict) else None
            if outputs is None:
                raise ServingError(f"the server's answer has no 'outputs': {str(answer)[:200]}", "INTERNAL")
            if isinstance(outputs, dict):
                return {name: np.asarray(value) for name, value in outputs.items()}
            return {"output": np.asarray(outputs)}
        rows = answer.get("predictions") if isinstance(answer, dict) else None
        if rows is None:
            raise ServingError(f"the server's answer has no 'predictions': {str(answer)[:200]}", "INTERNAL")
        if rows and isinstance(rows[0], dict):
            return {name: np.asarray([row[name] for row in rows]) for name in rows[0]}
        return {"output": np.asarray(rows)}

    def status(self):
        """The model's version status (`GET /v1/models/NAME[/versions/N]`) as a dict."""
        return self._retrying(lambda: self._request(self.model_url))


class GrpcClient(_Client):
    """TF Serving gRPC client (`PredictionService.Predict`); needs `vaezoo[serving]`.

    Args:
        target: `"host:port"` of the gRPC server (TF Serving's `--port`, 8500 by default).
        model_name: the served model's name.
        version: a specific version; `None` for the server's default.
        timeout: deadline of each call in seconds.
        retries: extra attempts after an UNAVAILABLE status.
        backoff, max_backoff: as for `RestClient`.
        max_message_bytes: largest request/response message (gRPC's default is 4 MB).

    Example:
        >>> with GrpcClient("localhost:8500", "vq-vae-cifar") as client:
        ...     codes = client.encode(images_uint8)["codes"]     # int32 (batch, h, w)
    """

    def __init__(self, target, model_name, version=None, timeout=10.0, retries=3, backoff=0.1, max_backoff=5.0,
                 max_message_bytes=256 * 1024 * 1024):
        super().__init__(model_name, version, timeout, retries, backoff, max_backoff)
        try:
            import grpc
            from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
        except ImportError as error:
            raise ImportError(
                f"GrpcClient needs grpcio and tensorflow-serving-api ({error}); install them with "
                "`pip install \"vaezoo[serving]\"`, or use RestClient (standard library only)."
            ) from error
        self._grpc = grpc
        self._predict_pb2 = predict_pb2
        self.target = target
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def close(self):
        """Close the channel."""
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, inputs, signature_name):
        import tensorflow as tf

        request = self._predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(_as_input(value)))
        return request

    def _call(self, request):
        grpc = self._grpc
        try:
            return self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            details = error.details() if hasattr(error, "details") else str(error)
            name = code.name if code is not None else "UNKNOWN"
            if name == "DEADLINE_EXCEEDED" and not details:
                details = f"no answer from {self.target} within {self.timeout:g} s"
            raise ServingError(details or name, code=name) from None

    def predict(self, inputs, signature_name="serving_default"):
        """Call a signature; returns a dict of named numpy arrays (dtypes as served).

        Raises:
            ServingError: the server's status and message, after `retries` further
                attempts if it was UNAVAILABLE.
        """
        import tensorflow as tf

        if not isinstance(inputs, dict) or not inputs:
            raise TypeError(f"inputs must be a non-empty dict of named arrays, got {type(inputs).__name__}.")
        request = self._request(inputs, signature_name)
        response = self._retrying(lambda: self._call(request))
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
