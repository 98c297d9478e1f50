"""A test double of TensorFlow Serving's Predict API: real HTTP and real gRPC on 127.0.0.1.

`ServingDouble(name, saved_model_dir)` loads the SavedModel with `tf.saved_model.load` and
answers, like `tensorflow_model_server`,

- REST `POST /v1/models/NAME[/versions/N]:predict` with `{"signature_name", "instances"}`
  (row format) or `{"signature_name", "inputs"}` (columnar), answering `{"predictions"}` or
  `{"outputs"}` (the name left out when a signature has one output), errors as
  `{"error": message}` with TF Serving's HTTP status, and `GET /v1/models/NAME`;
- gRPC `tensorflow.serving.PredictionService/Predict`, errors as a status code and message.

Knobs for failure tests: `fail_next = k` answers the next k predictions UNAVAILABLE (HTTP
503), `delay = s` sleeps s seconds before answering. `calls` counts predictions. Not part
of the package: only the tests use it.
"""

import json
import re
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf

HTTP_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503, "INTERNAL": 500}
_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
_STATUS = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?$")


class ServingFailure(Exception):
    """An error answer: canonical code and TF Serving-style message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class ServingDouble:
    """Serve one SavedModel version over REST and gRPC (see the module docstring).

    Example:
        >>> with ServingDouble("vae", "/tmp/out/vae/1") as server:
        ...     RestClient(server.rest_url, "vae").predict({...}, signature_name="score")
    """

    def __init__(self, model_name, saved_model_dir, version=1):
        self.model_name = model_name
        self.version = int(version)
        self.loaded = tf.saved_model.load(saved_model_dir)
        self.fail_next = 0
        self.delay = 0.0
        self.calls = 0
        self._lock = threading.Lock()
        self._http = None
        self._grpc = None

    # ----------------------------------------------------------------- the Predict contract
    def _servable(self, name, version):
        if name != self.model_name or (version is not None and int(version) != self.version):
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise ServingFailure("NOT_FOUND", f"Servable not found for request: {request}")

    def predict(self, name, version, signature_name, inputs):
        """Run `signature_name` on `inputs` (dict of arrays); dict of output arrays."""
        with self._lock:
            self.calls += 1
            failing = self.fail_next > 0
            if failing:
                self.fail_next -= 1
        if self.delay:
            time.sleep(self.delay)
        if failing:
            raise ServingFailure("UNAVAILABLE", "Model is not ready yet (injected UNAVAILABLE)")
        self._servable(name, version)
        signature_name = signature_name or "serving_default"
        if signature_name not in self.loaded.signatures:
            raise ServingFailure("INVALID_ARGUMENT", f'Serving signature name: "{signature_name}" not found in signature def')
        fn = self.loaded.signatures[signature_name]
        specs = fn.structured_input_signature[1]
        missing = sorted(set(specs) - set(inputs))
        extra = sorted(set(inputs) - set(specs))
        if missing or extra:
            raise ServingFailure(
                "INVALID_ARGUMENT",
                f"input names do not match the signature: missing {missing}, unexpected {extra}; "
                f"expected {sorted(specs)}",
            )
        tensors = {}
        for key, spec in specs.items():
            try:
                tensors[key] = tf.constant(np.asarray(inputs[key]).astype(spec.dtype.as_numpy_dtype))
            except (TypeError, ValueError) as error:
                raise ServingFailure("INVALID_ARGUMENT", f"input {key!r}: {error}") from None
        try:
            outputs = fn(**tensors)
        except tf.errors.OpError as error:
            raise ServingFailure("INVALID_ARGUMENT", error.message) from None
        except (TypeError, ValueError) as error:
            raise ServingFailure("INVALID_ARGUMENT", str(error)) from None
        return {key: value.numpy() for key, value in outputs.items()}

    # ----------------------------------------------------------------- REST
    def _rest_predict(self, path, body):
        match = _PREDICT.match(path)
        if not match:
            raise ServingFailure("NOT_FOUND", f"Malformed request: POST {path}")
        name, version = match.group(1), match.group(2)
        try:
            request = json.loads(body)
        except ValueError as error:
            raise ServingFailure("INVALID_ARGUMENT", f"JSON Parse error: {error}") from None
        signature_name = request.get("signature_name", "serving_default")
        if ("instances" in request) == ("inputs" in request):
            raise ServingFailure("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
        rows = "instances" in request
        if rows:
            instances = request["instances"]
            if instances and isinstance(instances[0], dict):
                inputs = {key: [row[key] for row in instances] for key in instances[0]}
            else:
                inputs = {self._only_input(signature_name): instances}
        else:
            inputs = request["inputs"]
            if not isinstance(inputs, dict):
                inputs = {self._only_input(signature_name): inputs}
        outputs = self.predict(name, version, signature_name, inputs)
        if rows:
            batch = len(next(iter(outputs.values())))
            if len(outputs) == 1:
                (value,) = outputs.values()
                return {"predictions": value.tolist()}
            return {"predictions": [{key: value[i].tolist() for key, value in outputs.items()} for i in range(batch)]}
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {key: value.tolist() for key, value in outputs.items()}}

    def _only_input(self, signature_name):
        if signature_name not in self.loaded.signatures:
            raise ServingFailure("INVALID_ARGUMENT", f'Serving signature name: "{signature_name}" not found in signature def')
        specs = self.loaded.signatures[signature_name].structured_input_signature[1]
        if len(specs) != 1:
            raise ServingFailure("INVALID_ARGUMENT", f"unnamed inputs, but the signature takes {sorted(specs)}")
        return next(iter(specs))

    def _rest_status(self, path):
        match = _STATUS.match(path)
        if not match:
            raise ServingFailure("NOT_FOUND", f"Malformed request: GET {path}")
        self._servable(match.group(1), match.group(2))
        return {"model_version_status": [
            {"version": str(self.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]}

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status, payload):
                data = json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def _run(self, work):
                try:
                    self._answer(200, work())
                except ServingFailure as failure:
                    self._answer(HTTP_STATUS.get(failure.code, 500), {"error": failure.message})

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._run(lambda: double._rest_predict(self.path, body))

            def do_GET(self):  # noqa: N802
                self._run(lambda: double._rest_status(self.path))

            def log_message(self, *args):
                pass

        return Handler

    # ----------------------------------------------------------------- gRPC
    def _servicer(self):
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        double = self

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):  # noqa: N802
                spec = request.model_spec
                version = spec.version.value if spec.HasField("version") else None
                try:
                    inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
                    outputs = double.predict(spec.name, version, spec.signature_name, inputs)
                except ServingFailure as failure:
                    context.abort(getattr(grpc.StatusCode, failure.code), failure.message)
                response = predict_pb2.PredictResponse()
                response.model_spec.name = spec.name
                response.model_spec.version.value = double.version
                response.model_spec.signature_name = spec.signature_name or "serving_default"
                for key, value in outputs.items():
                    response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
                return response

        return Servicer(), prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server

    # ----------------------------------------------------------------- lifecycle
    def start(self, grpc_server=True):
        """Start the HTTP server (and the gRPC server) on free ports of 127.0.0.1."""
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        if grpc_server:
            import grpc

            servicer, add = self._servicer()
            self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            add(servicer, self._grpc)
            port = self._grpc.add_insecure_port("127.0.0.1:0")
            self._grpc.start()
            self.grpc_target = f"127.0.0.1:{port}"
        return self

    def stop(self):
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(0)
            self._grpc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
