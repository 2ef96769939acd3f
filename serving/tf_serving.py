"""Clients of a remote TensorFlow Serving: gRPC (PredictionService, ModelService) and REST (/v1/models/...).

Both have EmbeddedModel's recommend/similar, so the proxy can use any of the three, plus a version label per
call (models.config's "stable", "canary"): TF Serving answers with the version the label names. Every call has
a deadline. Failures surface as two exceptions only: BackendUnavailable (no answer: retry elsewhere or later)
and BackendError (the server answered with an error: the request or the deployment is wrong).
"""

import threading
import urllib.parse

import grpc
import httpx
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

import contract
from serving.exported import padded, results

DEFAULT_TIMEOUT = 2.0
AVAILABLE = "AVAILABLE"


class BackendUnavailable(Exception):
    """No answer: connection refused or reset, deadline exceeded, or the server said it is unavailable."""


class BackendError(Exception):
    """The server answered with an error; the message is the server's."""


def _signatures(signatures) -> dict:
    """{signature: {"inputs": [...], "outputs": [...]}} from (name, inputs, outputs) triples."""
    return {
        name: {"inputs": sorted(inputs), "outputs": sorted(outputs)}
        for name, inputs, outputs in signatures
        if not name.startswith("__")
    }  # not __saved_model_init_op


class _SignatureClient:
    """The serving contract's two signatures over a subclass's `_predict(signature, label, **inputs) ->
    outputs`.

    `model_version` is the version that answered the calling thread's last call: each thread reads its own,
    since concurrent calls may ask for different labels or reach pods that serve different versions (during a
    rollout).
    """

    def __init__(self):
        self._answered = threading.local()

    @property
    def model_version(self) -> str | None:
        return getattr(self._answered, "version", None)

    @model_version.setter
    def model_version(self, version: str):
        self._answered.version = version

    def recommend(
        self,
        user_ids: list[str],
        histories: list[list[str]],
        exclude: list[list[str]],
        k: int,
        label: str | None = None,
    ):
        outputs = self._predict(
            contract.RECOMMEND_SIGNATURE,
            label,
            user_id=user_ids,
            history=padded(histories),
            exclude_item_ids=padded(exclude),
        )
        return results(outputs["item_ids"], outputs["scores"], k)

    def similar(self, item_ids: list[str], k: int, label: str | None = None):
        outputs = self._predict(contract.SIMILAR_SIGNATURE, label, item_id=item_ids)
        return results(outputs["item_ids"], outputs["scores"], k)


class GrpcPredictionClient(_SignatureClient):
    """TF Serving's gRPC API (default port 8500). `target` is a gRPC target: "dns:///host:port" (every address
    the name resolves to, e.g. a headless Service's pods), "dns://dns-server/host:port", "ipv4:a:p,b:p", or
    "host:port"."""

    def __init__(self, target: str, model_name: str, timeout: float = DEFAULT_TIMEOUT):
        super().__init__()
        self.target, self.model_name, self.timeout = target, model_name, timeout
        # round_robin: a connection to every address and each call on the next one, so requests spread over
        # the TF Serving pods (gRPC's default, pick_first, sends all of them over one connection to one pod).
        # The name is resolved again when a connection ends (TF Serving ends each after a minute: k8s/), at
        # most every 5 s rather than gRPC's default 30 s, so new pods get requests soon.
        # Short reconnect backoff: after a TF Serving restart the channel must not sit out gRPC's default
        # backoff (up to 120 s), failing every call fast meanwhile. (Not min_reconnect_backoff_ms: that one
        # is also the connect timeout.)
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.lb_policy_name", "round_robin"),
                ("grpc.dns_min_time_between_resolutions_ms", 5000),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            message = f"{self.target} {e.code().name}: {e.details()}"
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise BackendUnavailable(message) from e
            raise BackendError(message) from e

    def _predict(self, signature: str, label: str | None, **inputs) -> dict:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(
                name=self.model_name, signature_name=signature, version_label=label
            ),
            inputs={
                name: tf.make_tensor_proto(np.array(value, dtype=object), dtype=tf.string)
                for name, value in inputs.items()
            },
        )
        response = self._call(self._predictions.Predict, request)
        self.model_version = str(response.model_spec.version.value)  # the version that answered, label or not
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def metadata(self) -> dict:
        """{"name", "version", "signatures": {signature: {"inputs": [...], "outputs": [...]}}}."""
        response = self._call(
            self._predictions.GetModelMetadata,
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=model_pb2.ModelSpec(name=self.model_name), metadata_field=["signature_def"]
            ),
        )
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)
        self.model_version = str(response.model_spec.version.value)
        return {
            "name": response.model_spec.name,
            "version": self.model_version,
            "signatures": _signatures(
                (name, sig.inputs, sig.outputs) for name, sig in signature_defs.signature_def.items()
            ),
        }

    def ready(self) -> bool:
        try:
            response = self._call(
                self._models.GetModelStatus,
                get_model_status_pb2.GetModelStatusRequest(
                    model_spec=model_pb2.ModelSpec(name=self.model_name)
                ),
            )
        except (BackendUnavailable, BackendError):
            return False
        available = [
            s.version
            for s in response.model_version_status
            if s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        ]
        if available:
            self.model_version = str(max(available))  # TF Serving serves the newest available version
        return bool(available)

    def close(self):
        self._channel.close()


class RestPredictionClient(_SignatureClient):
    """TF Serving's REST API (default port 8501). `base_url` is "http://host:port".

    A REST predict response does not name the model version: `model_version` is the one the label (or the
    newest version) had at the last metadata call, which the first prediction of a label makes.
    """

    def __init__(self, base_url: str, model_name: str, timeout: float = DEFAULT_TIMEOUT):
        super().__init__()
        self.base_url, self.model_name, self.timeout = base_url.rstrip("/"), model_name, timeout
        self._label_versions: dict[str | None, str] = {}
        self._model_path = f"/v1/models/{urllib.parse.quote(model_name, safe='')}"
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    @staticmethod
    def _labelled(label: str | None) -> str:
        return f"/labels/{urllib.parse.quote(label, safe='')}" if label else ""

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            response = self._http.request(method, self._model_path + path, json=body)
        except httpx.TransportError as e:  # connect/read/write errors and timeouts
            raise BackendUnavailable(f"{self.base_url}: {type(e).__name__}: {e}") from e
        try:
            payload = response.json()
        except ValueError:  # not JSON: something other than TF Serving answered (a proxy, a load balancer)
            payload = None
        if response.status_code == 200 and isinstance(payload, dict):
            return payload
        error = payload.get("error") if isinstance(payload, dict) else None
        message = f"{self.base_url} HTTP {response.status_code}: {error or response.text}"
        # 503 and 504 are how TF Serving's REST API reports UNAVAILABLE and DEADLINE_EXCEEDED.
        raise (BackendUnavailable if response.status_code in (503, 504) else BackendError)(message)

    def _predict(self, signature: str, label: str | None, **inputs) -> dict:
        self.model_version = self._label_versions.get(label) or self.metadata(label)["version"]
        return self._call(
            "POST", f"{self._labelled(label)}:predict", {"signature_name": signature, "inputs": inputs}
        )["outputs"]

    def metadata(self, label: str | None = None) -> dict:
        """{"name", "version", "signatures": {signature: {"inputs": [...], "outputs": [...]}}} of the version
        the label names (default: the newest)."""
        response = self._call("GET", f"{self._labelled(label)}/metadata")
        self.model_version = self._label_versions[label] = response["model_spec"]["version"]
        return {
            "name": response["model_spec"]["name"],
            "version": self.model_version,
            "signatures": _signatures(
                (name, sig.get("inputs", {}), sig.get("outputs", {}))
                for name, sig in response["metadata"]["signature_def"]["signature_def"].items()
            ),
        }

    def ready(self) -> bool:
        self._label_versions.clear()  # labels move with a new models.config: ask again at the next prediction
        try:
            statuses = self._call("GET", "")["model_version_status"]
        except (BackendUnavailable, BackendError):
            return False
        available = [int(s["version"]) for s in statuses if s["state"] == AVAILABLE]
        if available:
            self.model_version = str(max(available))
        return bool(available)

    def close(self):
        self._http.close()


def client_for_url(url: str, model_name: str, timeout: float = DEFAULT_TIMEOUT):
    """grpc://host:port → GrpcPredictionClient over every address host resolves to (gRPC's dns:///host:port);
    dns://dns-server/host:port, the same through that DNS server; http(s)://host:port →
    RestPredictionClient."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "grpc" and parsed.netloc and not parsed.path:
        return GrpcPredictionClient(f"dns:///{parsed.netloc}", model_name, timeout)
    if parsed.scheme == "dns" and parsed.path.strip("/"):
        return GrpcPredictionClient(url, model_name, timeout)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return RestPredictionClient(url, model_name, timeout)
    raise ValueError(f"{url}: expected grpc://host:port, dns://dns-server/host:port or http://host:port")
