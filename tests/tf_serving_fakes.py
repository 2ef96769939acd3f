"""In-process stand-ins for TensorFlow Serving (no binary on these machines), over one pushed version.

They speak TF Serving's protocols as its source does (tensorflow/serving: predict_util.cc,
get_model_metadata_impl.cc, get_model_status_impl.cc, http_rest_api_handler.cc, json_tensor.cc,
http_server.cc): same messages, status codes, JSON formats and HTTP statuses, error texts where they matter.

    servable = Servable("recsys", "<serving>/recsys/<version>")   # loads the SavedModel at the version root
    grpc_server = GrpcModelServer(servable).start()                # grpc_server.target "127.0.0.1:<port>"
    rest_server = RestModelServer(servable).start()                # rest_server.url "http://127.0.0.1:<port>"
    ...stop(); start() again binds the same port.

A Servable may hold several versions, and version labels as models.config's version_labels give them:
Servable("recsys", dir_1, dir_2, labels={"stable": 1, "canary": 2}). GrpcModelServer(servable,
host="127.0.0.2") listens on another loopback address; its `answered` lists (version label asked for, version
that answered) of every Predict it served.

Classify, Regress and MultiInference are not served: gRPC answers UNIMPLEMENTED, REST "Malformed request"
(400).
"""

import base64
import contextlib
import http.server
import json
import os
import re
import socket
import threading
import urllib.parse
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

DEFAULT_SIGNATURE = "serving_default"
Code = grpc.StatusCode
_CODES = {code.value[0]: code for code in grpc.StatusCode}  # TF's error codes are gRPC's
_PROTO_FIELDS = {
    tf.string: "string_val",
    tf.float32: "float_val",
    tf.float64: "double_val",
    tf.int32: "int_val",
    tf.int64: "int64_val",
    tf.bool: "bool_val",
}


class ServingError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class _Version:
    """One loaded SavedModel, with its SignatureDefs as TF Serving lists them (__saved_model_init_op
    included)."""

    def __init__(self, version_dir: str):
        self.model = tf.saved_model.load(version_dir)
        with open(os.path.join(version_dir, "saved_model.pb"), "rb") as fh:
            saved_model = saved_model_pb2.SavedModel.FromString(fh.read())
        [meta_graph] = [m for m in saved_model.meta_graphs if "serve" in m.meta_info_def.tags]
        self.signature_defs = meta_graph.signature_def

    def signature(self, name: str):
        """The SignatureDef TF Serving would run, or None (the init op is not one)."""
        return self.signature_defs[name] if name in self.model.signatures else None


class Servable:
    """One model as TF Serving's ServerCore holds it: a name, its versions (the directory names) and their
    labels."""

    def __init__(self, model_name: str, *version_dirs: str, labels: dict[str, int] | None = None):
        self.name = model_name
        self.versions = {int(os.path.basename(os.path.normpath(d))): _Version(d) for d in version_dirs}
        self.labels = dict(labels or {})

    @property
    def version(self) -> int:
        """The newest version: what a request naming no version gets."""
        return max(self.versions)

    def check(self, spec: model_pb2.ModelSpec) -> int:
        """ServerCore::GetServableHandle: the version a name, a version or a label resolves to."""
        if spec.version_label:
            if spec.name != self.name or spec.version_label not in self.labels:  # GetModelVersionForLabel
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {spec.version_label}"
                )
            version = self.labels[spec.version_label]
            if version not in self.versions:  # a label may name a version not (yet) loaded
                raise ServingError(
                    Code.NOT_FOUND, f"Servable not found for request: Specific({spec.name}, {version})"
                )
            return version
        pinned = spec.HasField("version")
        if spec.name != self.name or (pinned and spec.version.value not in self.versions):
            wanted = f"Specific({spec.name}, {spec.version.value})" if pinned else f"Latest({spec.name})"
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: {wanted}")
        return spec.version.value if pinned else self.version

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        resolved = self.check(request.model_spec)
        version = self.versions[resolved]
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = version.signature(name)
        if signature is None:
            raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
        sent, expected = set(request.inputs), set(signature.inputs)
        if sent != expected:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                (
                    f"input size does not match signature: {len(sent)}!={len(expected)} "
                    f"len({{{','.join(sorted(sent))}}})"
                    f" != len({{{','.join(sorted(expected))}}}). Sent extra: "
                    f"{{{','.join(sorted(sent - expected))}}}."
                    f" Missing but required: {{{','.join(sorted(expected - sent))}}}."
                ),
            )
        for alias in request.output_filter:
            if alias not in signature.outputs:
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    (
                        f"output tensor alias not found in signature: {alias} Outputs expected to be in the "
                        "set "
                        f"{{{','.join(sorted(signature.outputs))}}}."
                    ),
                )
        inputs = {}
        for alias, proto in request.inputs.items():
            try:
                inputs[alias] = tf.io.parse_tensor(proto.SerializeToString(), tf.as_dtype(proto.dtype))
            except (tf.errors.InvalidArgumentError, TypeError):
                raise ServingError(Code.INVALID_ARGUMENT, f"tensor parsing error: {alias}") from None
        try:
            outputs = version.model.signatures[name](**inputs)
        except (
            tf.errors.OpError
        ) as e:  # what the session run reports, e.g. a dtype mismatch or a failed assert
            raise ServingError(_CODES[e.error_code], e.message) from e
        response = predict_pb2.PredictResponse(model_spec=self.spec(resolved, signature_name=name))
        for alias in request.output_filter or signature.outputs:
            response.outputs[alias].CopyFrom(_as_proto_field(outputs[alias]))
        return response

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest):
        if not request.HasField("model_spec"):
            raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        if not request.metadata_field:
            raise ServingError(
                Code.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise ServingError(Code.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
        version = self.check(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=self.spec(version))
        response.metadata["signature_def"].Pack(
            get_model_metadata_pb2.SignatureDefMap(signature_def=self.versions[version].signature_defs)
        )
        return response

    def status(self, request: get_model_status_pb2.GetModelStatusRequest):
        if not request.HasField("model_spec"):
            raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        spec = request.model_spec  # GetModelStatusImpl reads the name and the version, never a label
        if spec.HasField("version") and (spec.name != self.name or spec.version.value not in self.versions):
            raise ServingError(
                Code.NOT_FOUND, f"Could not find version {spec.version.value} of model {spec.name}"
            )
        if spec.name != self.name:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {spec.name}")
        versions = [spec.version.value] if spec.HasField("version") else sorted(self.versions, reverse=True)
        return get_model_status_pb2.GetModelStatusResponse(
            model_version_status=[
                get_model_status_pb2.ModelVersionStatus(
                    version=version,
                    state=get_model_status_pb2.ModelVersionStatus.AVAILABLE,
                    status=status_pb2.StatusProto(),
                )
                for version in versions
            ]
        )  # error_code OK

    def spec(self, version: int, **fields) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.name, **fields)
        spec.version.value = version
        return spec


def _as_proto_field(tensor: tf.Tensor) -> tensor_pb2.TensorProto:
    """Tensor::AsProtoField, TF Serving's default for Predict responses: typed value fields, no
    tensor_content."""
    proto = tensor_pb2.TensorProto(dtype=tensor.dtype.as_datatype_enum, tensor_shape=tensor.shape.as_proto())
    getattr(proto, _PROTO_FIELDS[tensor.dtype]).extend(tensor.numpy().ravel().tolist())
    return proto


# ---- gRPC ----


def _answer(method, request, context):
    try:
        return method(request)
    except ServingError as e:
        context.abort(e.code, e.message)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, servable: Servable, answered: list):
        self.servable, self.answered = servable, answered

    def Predict(self, request, context):
        response = _answer(self.servable.predict, request, context)
        self.answered.append((request.model_spec.version_label, response.model_spec.version.value))
        return response

    def GetModelMetadata(self, request, context):
        return _answer(self.servable.metadata, request, context)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, servable: Servable):
        self.servable = servable

    def GetModelStatus(self, request, context):
        return _answer(self.servable.status, request, context)


class GrpcModelServer:
    """PredictionService and ModelService on a loopback address (127.0.0.1 unless given); the first start
    picks a free port unless given one, later starts reuse it."""

    def __init__(self, servable: Servable, host: str = "127.0.0.1", port: int = 0, options: tuple = ()):
        """options: more gRPC server arguments, as TF Serving's --grpc_channel_arguments gives them."""
        self.servable, self.host, self.port, self.options, self._server = servable, host, port, options, None
        self.answered: list[tuple[str, int]] = []  # (label asked for, version that answered) per Predict

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"grpc://{self.target}"

    def start(self) -> "GrpcModelServer":
        # A stopped grpc.server cannot restart. Message sizes as TF Serving's server: up to 2 GB, not gRPC's 4
        # MB.
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[
                ("grpc.max_receive_message_length", 2**31 - 1),
                ("grpc.max_send_message_length", 2**31 - 1),
                *self.options,
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(self.servable, self.answered), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self.servable), server)
        self.port = server.add_insecure_port(self.target)
        server.start()
        self._server = server
        return self

    def stop(self):
        self._server.stop(grace=None).wait()  # aborts calls in flight, closes connections


# ---- REST ----

_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(predict)", re.I
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I
)
_HTTP_STATUS = {
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def _rest_response(servable: Servable, method: str, path: str, body: bytes) -> tuple[int, dict]:
    """HttpRestApiHandler::ProcessRequest: (HTTP status, JSON object) for one request under /v1/."""
    try:
        return 200, _rest(servable, method, path, body)
    except ServingError as e:
        return _HTTP_STATUS[e.code], {"error": e.message}


def _rest(servable: Servable, method: str, path: str, body: bytes) -> dict:
    match = (method == "POST" and _PREDICT_PATH.fullmatch(path)) or (
        method == "GET" and _STATUS_PATH.fullmatch(path)
    )
    if not match:
        raise ServingError(Code.INVALID_ARGUMENT, f"Malformed request: {method} {path}")
    name, version, label, verb = match.groups()
    spec = model_pb2.ModelSpec(
        name=urllib.parse.unquote(name or ""), version_label=urllib.parse.unquote(label or "")
    )
    if version:
        spec.version.value = int(version)
    if method == "POST":
        return _rest_predict(servable, spec, body)
    if not name:
        raise ServingError(Code.INVALID_ARGUMENT, "Missing model name in request.")
    if verb == "metadata":
        response = servable.metadata(
            get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=["signature_def"])
        )
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)
        as_json = dict(preserving_proto_field_name=True, including_default_value_fields=True)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **as_json),
            "metadata": {"signature_def": json_format.MessageToDict(signature_defs, **as_json)},
        }
    response = servable.status(get_model_status_pb2.GetModelStatusRequest(model_spec=spec))
    return json_format.MessageToDict(response, including_default_value_fields=True)


def _rest_predict(servable: Servable, spec: model_pb2.ModelSpec, body: bytes) -> dict:
    """FillPredictRequestFromJson, Predict, MakeJsonFromTensors."""
    if not body:
        raise ServingError(Code.INVALID_ARGUMENT, "JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise ServingError(Code.INVALID_ARGUMENT, f"JSON Parse error: {e}") from e
    if not isinstance(doc, dict):
        raise ServingError(Code.INVALID_ARGUMENT, f"JSON Value: {body.decode()} Is not object")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise ServingError(Code.INVALID_ARGUMENT, "'signature_name' key must be a string value.")
    request = predict_pb2.PredictRequest(model_spec=spec)
    request.model_spec.signature_name = signature_name
    signature = servable.versions[servable.check(spec)].signature(signature_name or DEFAULT_SIGNATURE)
    if signature is None:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            (f'Serving signature name: "{signature_name or DEFAULT_SIGNATURE}" not found in signature def'),
        )
    if "instances" in doc and "inputs" in doc:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist",
        )
    if "instances" in doc:
        tensors = _tensors_from_instances(doc["instances"], signature.inputs)
    elif "inputs" in doc:
        tensors = _tensors_from_inputs(doc["inputs"], signature.inputs)
    else:
        raise ServingError(Code.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key")
    for alias, tensor in tensors.items():
        request.inputs[alias].CopyFrom(tensor)
    outputs = {
        alias: _json_values(alias, proto) for alias, proto in servable.predict(request).outputs.items()
    }
    if "inputs" in doc:
        return {"outputs": outputs if len(outputs) > 1 else next(iter(outputs.values()))}
    sizes = {len(v) if isinstance(v, list) else None for v in outputs.values()}
    if None in sizes or len(sizes) > 1:
        raise ServingError(Code.INVALID_ARGUMENT, "the row format needs outputs with one batch size")
    rows = zip(*outputs.values())
    return {
        "predictions": [dict(zip(outputs, row)) for row in rows]
        if len(outputs) > 1
        else [row[0] for row in rows]
    }


def _is_base64(value) -> bool:
    return isinstance(value, dict) and list(value) == ["b64"] and isinstance(value["b64"], str)


def _tensors_from_instances(instances, infos) -> dict:
    """Row format: one object per instance with every named input (or plain values for a single input)."""
    if not isinstance(instances, list):
        raise ServingError(Code.INVALID_ARGUMENT, "Excepting 'instances' to be an list/array")
    if not instances:
        raise ServingError(Code.INVALID_ARGUMENT, "No values in 'instances' array")
    named = isinstance(instances[0], dict) and not _is_base64(instances[0])
    if not named:
        if len(infos) > 1:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "instances is a plain list, but expecting list of objects as "
                "multiple input tensors required as per tensorinfo_map",
            )
        [(alias, info)] = infos.items()
        return {alias: _tensor_from_json(instances, info.dtype)}
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or _is_base64(instance):
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Expecting object but got list at item {i} of input list"
            )
        if set(instance) != set(infos):
            raise ServingError(
                Code.INVALID_ARGUMENT,
                (
                    f"Failed to process element: {i} of 'instances' list. "
                    f"JSON object: {json.dumps(instance)} keys must "
                    f"be equal to: {','.join(sorted(infos))}"
                ),
            )
    # Stacking the instances is the batching: every instance must have the same shape, as checked below.
    return {
        alias: _tensor_from_json([instance[alias] for instance in instances], info.dtype)
        for alias, info in infos.items()
    }


def _tensors_from_inputs(inputs, infos) -> dict:
    """Columnar format: an object of named inputs (or the value itself for a single input)."""
    if not isinstance(inputs, dict) or _is_base64(inputs):
        if len(infos) > 1:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "inputs is a plain value/list, but expecting an object as "
                "multiple input tensors required as per tensorinfo_map",
            )
        [(alias, info)] = infos.items()
        return {alias: _tensor_from_json(inputs, info.dtype)}
    for alias in infos:
        if alias not in inputs:
            raise ServingError(Code.INVALID_ARGUMENT, f"Missing named input: {alias} in 'inputs' object.")
    return {alias: _tensor_from_json(inputs[alias], info.dtype) for alias, info in infos.items()}


_JSON_TYPES = {
    types_pb2.DT_STRING: ("string_val", str),
    types_pb2.DT_FLOAT: ("float_val", (int, float)),
    types_pb2.DT_DOUBLE: ("double_val", (int, float)),
    types_pb2.DT_INT32: ("int_val", int),
    types_pb2.DT_INT64: ("int64_val", int),
    types_pb2.DT_BOOL: ("bool_val", bool),
}


def _tensor_from_json(value, dtype) -> tensor_pb2.TensorProto:
    """A dense tensor: the shape follows the first element at each level; every list must match it."""
    shape, first = [], value
    while isinstance(first, list):
        shape.append(len(first))
        first = first[0] if first else None
    tensor = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]
        ),
    )
    _fill(value, 0, tensor)
    return tensor


def _fill(value, level: int, tensor: tensor_pb2.TensorProto):
    dims = tensor.tensor_shape.dim
    if isinstance(value, list):
        if level >= len(dims):
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Encountered list at unexpected level: {level} expected < {len(dims)}"
            )
        if len(value) != dims[level].size:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Encountered list at unexpected size: {len(value)} at level: "
                f"{level} expected size: {dims[level].size}",
            )
        for v in value:
            _fill(v, level + 1, tensor)
        return
    if level != len(dims):
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"JSON Value: {json.dumps(value)} found at incorrect level: "
            f"{level + 1} in the JSON DOM. Expected at level: {len(dims)}",
        )
    dtype_name = types_pb2.DataType.Name(tensor.dtype)
    if tensor.dtype not in _JSON_TYPES:
        raise ServingError(
            Code.UNIMPLEMENTED, f"Conversion of JSON Value: {json.dumps(value)} to type: {dtype_name}"
        )
    field, types = _JSON_TYPES[tensor.dtype]
    if tensor.dtype == types_pb2.DT_STRING and _is_base64(value):
        value = base64.b64decode(value["b64"])
    elif not isinstance(value, types) or isinstance(value, bool) != (tensor.dtype == types_pb2.DT_BOOL):
        raise ServingError(
            Code.INVALID_ARGUMENT, f"JSON Value: {json.dumps(value)} is not of expected type: {dtype_name}"
        )
    getattr(tensor, field).append(value.encode() if isinstance(value, str) else value)


def _json_values(alias: str, proto: tensor_pb2.TensorProto):
    """An output tensor as nested JSON values; "_bytes" string outputs as {"b64": ...}, the others as text."""
    array = tf.make_ndarray(proto)
    if proto.dtype == types_pb2.DT_STRING:
        values = [
            {"b64": base64.b64encode(b).decode()} if alias.endswith("_bytes") else b.decode()
            for b in array.ravel()
        ]
    elif proto.dtype == types_pb2.DT_FLOAT:
        values = [
            float(str(x)) for x in array.ravel()
        ]  # the shortest float32 text, as TF Serving writes: 0.2
    else:
        values = array.ravel().tolist()
    return np.array(values, dtype=object).reshape(array.shape).tolist()


class _HttpServer(http.server.ThreadingHTTPServer):
    """Tracks open connections so stop() can close kept-alive ones, as a stopped TF Serving would."""

    def __init__(self, port: int, servable: Servable):
        self.servable, self.connections = servable, set()
        super().__init__(("127.0.0.1", port), _RestHandler)

    def process_request(self, request, client_address):
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.connections.discard(request)
        super().shutdown_request(request)


class _RestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like TF Serving's libevent server

    def do_GET(self):
        self._handle(b"")

    def do_POST(self):
        self._handle(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def _handle(self, body: bytes):
        path = urllib.parse.urlsplit(self.path).path
        if re.fullmatch(r"(?i)/v1/.*", path):
            status, payload = _rest_response(self.server.servable, self.command, path, body)
            data = json.dumps(payload).encode()
        else:
            status, data = (
                404,
                b"",
            )  # outside /v1/ TF Serving's dispatcher declines and the HTTP server answers 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class RestModelServer:
    """TF Serving's REST API on 127.0.0.1; the first start picks a free port, later starts reuse it."""

    def __init__(self, servable: Servable):
        self.servable, self.port, self._server = servable, 0, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "RestModelServer":
        self._server = _HttpServer(self.port, self.servable)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-tf-serving-rest", daemon=True
        ).start()  # a short poll interval: stop() returns at once
        return self

    def stop(self):
        self._server.shutdown()
        for connection in list(self._server.connections):
            with contextlib.suppress(OSError):  # its handler may have closed it meanwhile
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
