"""The TF Serving clients against in-process servers speaking TF Serving's gRPC and REST protocols, serving
the model a real pipeline run pushed; answers are checked against the embedded backend on the same
SavedModel."""

import collections
import concurrent.futures
import csv
import os
import shutil
import socket
import time
from unittest import mock

import grpc
import httpx
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from proxy.batcher import MAX_BATCH
from proxy.schemas import MAX_ID_LENGTH
from serving import embedded
from serving.tf_serving import (
    BackendError,
    BackendUnavailable,
    GrpcPredictionClient,
    RestPredictionClient,
    client_for_url,
)
from tests.dns_fake import DnsServer
from tests.tf_serving_fakes import GrpcModelServer, RestModelServer, Servable
from trainer_module.hparams import HParams

MODEL = "recsys"
SERVERS = {"grpc": GrpcModelServer, "rest": RestModelServer}
SIGNATURES = {
    "serving_default": {
        "inputs": ["exclude_item_ids", "history", "user_id"],
        "outputs": ["item_ids", "scores"],
    },
    "similar_items": {"inputs": ["item_id"], "outputs": ["item_ids", "scores"]},
}


@pytest.fixture(scope="module")
def version(pipeline_run):
    return os.path.basename(pipeline_run["pushed"])


@pytest.fixture(scope="module")
def servable(pipeline_run):
    return Servable(MODEL, pipeline_run["pushed"])


@pytest.fixture(scope="module")
def reference(pipeline_run):
    """The embedded backend on the SavedModel TF Serving loads: the brute-force one at the version root."""
    with mock.patch.object(embedded, "scann_available", return_value=False):
        model = embedded.EmbeddedModel(pipeline_run["pushed"])
    assert model.index_kind == "brute_force"
    return model


@pytest.fixture(scope="module")
def histories(pipeline_run):
    """Each training user's items, oldest first."""
    with open(os.path.join(pipeline_run["data_dir"], "interactions.csv"), newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["timestamp"])
    items = collections.defaultdict(list)
    for r in rows:
        items[r["user_id"]].append(r["item_id"])
    return items


@pytest.fixture(scope="module")
def servers(servable):
    started = {protocol: server(servable).start() for protocol, server in SERVERS.items()}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(params=sorted(SERVERS))
def client(request, servers):
    client = client_for_url(servers[request.param].url, MODEL)
    yield client
    client.close()


@pytest.fixture(params=sorted(SERVERS))
def own_server(request, servable):
    """A server of each protocol that a test may stop and start."""
    server = SERVERS[request.param](servable).start()
    yield server
    server.stop()


def ids(results):
    return [[item for item, _ in row] for row in results]


def scores(results):
    return [score for row in results for _, score in row]


def test_recommendations_are_the_embedded_backends(client, reference, histories):
    known = sorted(histories)[:2]
    top = ids(reference.recommend([known[1]], [histories[known[1]][-20:]], [[]], k=10))[0]
    # Ragged histories and exclusions in one batch: a known user, one with exclusions, new users with and
    # without.
    queries = (
        [known[0], known[1], "never-seen", "never-seen"],
        [histories[known[0]][-20:], histories[known[1]][-20:], histories[known[0]][-3:], []],
        [[], top[:3], [], []],
    )
    expected, got = reference.recommend(*queries, k=10), client.recommend(*queries, k=10)
    assert ids(got) == ids(expected)
    assert scores(got) == pytest.approx(scores(expected), rel=1e-6)
    assert [len(row) for row in got] == [10] * 4
    assert ids(got)[1][:7] == top[3:10]  # the excluded items are gone and the rest moved up
    assert ids(got)[2] != ids(got)[3]  # a new user's history is used


def test_similar_items_are_the_embedded_backends(client, reference, histories):
    items = sorted({item for history in histories.values() for item in history})[:3]
    expected, got = reference.similar(items, k=20), client.similar(items, k=20)
    assert ids(got) == ids(expected)
    assert scores(got) == pytest.approx(scores(expected), rel=1e-6)
    assert all(len(row) == 20 and item not in row for item, row in zip(items, ids(got)))


def test_the_version_comes_with_the_first_prediction(client, version, histories):
    assert client.model_version is None
    client.similar([histories[sorted(histories)[0]][0]], k=1)
    assert client.model_version == version


def test_ready_and_metadata_name_the_served_version_and_its_signatures(client, version):
    assert client.ready()
    assert client.model_version == version
    assert client.metadata() == {"name": MODEL, "version": version, "signatures": SIGNATURES}


@pytest.mark.parametrize("protocol", sorted(SERVERS))
def test_a_wrong_model_name_is_a_backend_error_that_names_it(protocol, servers):
    client = client_for_url(servers[protocol].url, "no-such-model")
    with pytest.raises(BackendError, match="no-such-model"):
        client.similar(["i1"], k=1)
    assert not client.ready()
    client.close()


def test_a_rejected_request_is_a_backend_error_with_the_servers_message(client):
    limit = HParams().max_exclusions
    with pytest.raises(BackendError, match=f"at most {limit} items per query"):
        client.recommend(["u"], [[]], [[f"x{i}" for i in range(limit + 1)]], k=10)


@pytest.mark.parametrize("protocol", sorted(SERVERS))
def test_the_apis_largest_model_call_reaches_the_server(protocol, servers, reference, histories):
    """A full batch of the API's queries, each leaving out as many items as a query may, with ids as long as
    the API accepts: a 33 MB request, over gRPC's default 4 MB (TF Serving takes messages up to 2 GB). The
    timeout is generous: this is about the size, not the speed."""
    users = sorted(histories)[:MAX_BATCH]
    recent = [histories[u][-20:] for u in users]
    limit = HParams().max_exclusions
    unknown = [f"{n:0{MAX_ID_LENGTH}d}" for n in range(limit)]
    top = ids(reference.recommend(users, recent, [[]] * len(users), k=3))
    queries = (users, recent, [row + unknown[: limit - len(row)] for row in top])
    assert len(users) == MAX_BATCH and all(len(exclude) == limit for exclude in queries[2])
    client = client_for_url(servers[protocol].url, MODEL, timeout=60)
    try:
        got = client.recommend(*queries, k=10)
    finally:
        client.close()
    assert ids(got) == ids(reference.recommend(*queries, k=10))
    assert all(not set(t) & set(row) for t, row in zip(top, ids(got)))


def test_a_stopped_server_is_unavailable_within_the_timeout_and_serves_again_after_a_restart(
    own_server, histories
):
    item = histories[sorted(histories)[0]][0]
    client = client_for_url(own_server.url, MODEL, timeout=2.0)
    before, port = client.similar([item], k=5), own_server.port
    own_server.stop()
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        client.similar([item], k=5)
    assert time.monotonic() - started < client.timeout
    assert not client.ready()
    own_server.start()
    assert own_server.port == port
    deadline = time.monotonic() + 3  # the gRPC channel reconnects within its 1 s backoff cap
    while not client.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.ready()
    assert client.similar([item], k=5) == before
    client.close()


@pytest.fixture
def silent_port():
    """A port whose connections the kernel accepts and nobody ever answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_server_that_never_answers_is_unavailable_after_the_timeout(scheme, silent_port):
    client = client_for_url(f"{scheme}://127.0.0.1:{silent_port}", MODEL, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        client.similar(["i1"], k=1)
    assert 0.45 <= time.monotonic() - started < 1.5
    client.close()


def test_client_for_url_picks_the_protocol_by_scheme():
    grpc_client, rest_client = (
        client_for_url("grpc://tfs:8500", MODEL),
        client_for_url("http://tfs:8501", MODEL),
    )
    # Every address the name resolves to (a headless Service's pods), not one.
    assert isinstance(grpc_client, GrpcPredictionClient) and grpc_client.target == "dns:///tfs:8500"
    assert isinstance(rest_client, RestPredictionClient) and rest_client.base_url == "http://tfs:8501"
    through = client_for_url("dns://10.0.0.10/tfs:8500", MODEL)
    assert through.target == "dns://10.0.0.10/tfs:8500"
    for client in (grpc_client, rest_client, through):
        client.close()
    for wrong in ("tfs:8500", "grpc://tfs:8500/x", "dns://10.0.0.10/"):
        with pytest.raises(ValueError, match="grpc://host:port"):
            client_for_url(wrong, MODEL)


@pytest.fixture(scope="module")
def labelled_servers(pipeline_run, tmp_path_factory):
    """Both protocols over two versions: "stable" the pushed one, "canary" a newer copy, "next" a version that
    is not loaded (a label may name one)."""
    stable = int(os.path.basename(pipeline_run["pushed"]))
    canary = shutil.copytree(
        pipeline_run["pushed"], tmp_path_factory.mktemp("serving") / MODEL / str(stable + 1)
    )
    servable = Servable(
        MODEL,
        pipeline_run["pushed"],
        str(canary),
        labels={"stable": stable, "canary": stable + 1, "next": stable + 2},
    )
    started = {protocol: server(servable).start() for protocol, server in SERVERS.items()}
    yield started, stable
    for server in started.values():
        server.stop()


@pytest.mark.parametrize("protocol", sorted(SERVERS))
def test_a_label_picks_the_version_that_answers(protocol, labelled_servers, histories):
    servers, stable = labelled_servers
    client = client_for_url(servers[protocol].url, MODEL)
    item = histories[sorted(histories)[0]][0]
    try:
        expected = client.similar([item], k=5, label="stable")
        assert client.model_version == str(stable)
        assert client.similar([item], k=5, label="canary") == expected  # a copy: the same answers
        assert client.model_version == str(stable + 1)
        client.recommend(["u00001"], [[]], [[]], k=5)  # no label: the newest version
        assert client.model_version == str(stable + 1)
        with pytest.raises(BackendError, match="Unrecognized servable version label: beta"):
            client.similar([item], k=5, label="beta")
        with pytest.raises(
            BackendError, match=rf"Servable not found for request: Specific\({MODEL}, {stable + 2}\)"
        ):
            client.similar([item], k=5, label="next")
    finally:
        client.close()


def test_each_thread_reads_the_version_that_answered_its_own_call(labelled_servers, histories):
    servers, stable = labelled_servers
    client = client_for_url(servers["grpc"].url, MODEL)
    item = histories[sorted(histories)[0]][0]

    def ask(label):
        client.similar([item], k=1, label=label)
        time.sleep(0.05)  # the other thread's call lands meanwhile
        return client.model_version

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        got = list(pool.map(ask, ["stable", "canary"] * 4))
    client.close()
    assert got == [str(stable), str(stable + 1)] * 4


# ---- the fakes speak TF Serving's protocols (raw requests, no client of ours) ----


def test_rest_predict_in_row_and_columnar_formats(servers, reference, histories, version):
    user = sorted(histories)[0]
    history = histories[user][-20:]
    short = history[-3:] + [""] * (len(history) - 3)  # the row format needs equal shapes
    expected = ids(reference.recommend([user, "never-seen"], [history, short], [[], []], k=100))
    predict = f"{servers['rest'].url}/v1/models/{MODEL}:predict"
    rows = httpx.post(
        predict,
        json={
            "instances": [
                {"user_id": user, "history": history, "exclude_item_ids": []},
                {"user_id": "never-seen", "history": short, "exclude_item_ids": []},
            ]
        },
    ).json()
    assert [row["item_ids"] for row in rows["predictions"]] == expected
    assert all(len(row["scores"]) == 100 for row in rows["predictions"])
    columns = httpx.post(
        f"{servers['rest'].url}/v1/models/{MODEL}/versions/{version}:predict",
        json={
            "signature_name": "serving_default",
            "inputs": {
                "user_id": [user, "never-seen"],
                "history": [history, short],
                "exclude_item_ids": [[], []],
            },
        },
    )
    assert columns.json()["outputs"]["item_ids"] == expected
    # A single named input is given bare in both formats.
    similar = ids(reference.similar([history[0]], k=100))
    one_row = httpx.post(predict, json={"signature_name": "similar_items", "instances": [history[0]]}).json()
    assert [one_row["predictions"][0]["item_ids"]] == similar
    one_column = httpx.post(predict, json={"signature_name": "similar_items", "inputs": [history[0]]}).json()
    assert one_column["outputs"]["item_ids"] == similar


def test_rest_status_metadata_and_errors(servers, version):
    base = f"{servers['rest'].url}/v1/models/{MODEL}"
    assert httpx.get(base).json() == {
        "model_version_status": [
            {"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    metadata = httpx.get(f"{base}/metadata").json()
    assert metadata["model_spec"]["name"] == MODEL and metadata["model_spec"]["version"] == version
    signature_defs = metadata["metadata"]["signature_def"]["signature_def"]
    assert signature_defs["serving_default"]["inputs"]["history"]["dtype"] == "DT_STRING"
    assert signature_defs["similar_items"]["method_name"] == "tensorflow/serving/predict"
    errors = {
        (f"{base}/versions/1:predict", '{"inputs": ["x"]}'): (
            404,
            "Servable not found for request: Specific(recsys, 1)",
        ),
        (f"{base}:predict", '{"signature_name": "nope", "inputs": ["x"]}'): (
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        (f"{base}:predict", '{"signature_name": "similar_items", "inputs": ["x"], "instances": ["x"]}'): (
            400,
            "expecting only one of 'inputs' or 'instances'",
        ),
        (
            f"{base}:predict",
            '{"instances": [{"user_id": "u", "history": ["a"], "exclude_item_ids": []},'
            ' {"user_id": "u", "history": ["a", "b"], "exclude_item_ids": []}]}',
        ): (400, "Encountered list at unexpected size: 2"),
        (f"{base}:predict", '{"inputs": {"user_id": ["u"], "history": [["a"]]}}'): (
            400,
            "Missing named input: exclude_item_ids",
        ),
        (f"{base}:predict", "{not json"): (400, "JSON Parse error"),
    }
    for (url, body), (status, message) in errors.items():
        response = httpx.post(url, content=body)
        assert response.status_code == status and message in response.json()["error"], (
            url,
            body,
            response.text,
        )


def test_grpc_predict_and_metadata_messages(servers, version):
    with grpc.insecure_channel(servers["grpc"].target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=MODEL),
            inputs={  # default signature
                "user_id": tf.make_tensor_proto(["u"], tf.string),
                "history": tf.make_tensor_proto([[""]], tf.string),
                "exclude_item_ids": tf.make_tensor_proto([], tf.string, shape=[1, 0]),
            },
        )
        response = stub.Predict(request, timeout=5)
        assert (
            response.model_spec.name,
            response.model_spec.version.value,
            response.model_spec.signature_name,
        ) == (MODEL, int(version), "serving_default")
        scores = response.outputs["scores"]
        assert [d.size for d in scores.tensor_shape.dim] == [1, 100]
        assert len(scores.float_val) == 100 and not scores.tensor_content  # typed fields, as TF Serving sends
        assert len(response.outputs["item_ids"].string_val) == 100

        del request.inputs["exclude_item_ids"]
        with pytest.raises(grpc.RpcError) as missing:
            stub.Predict(request, timeout=5)
        assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Missing but required: {exclude_item_ids}" in missing.value.details()
        request.model_spec.signature_name = "nope"
        with pytest.raises(grpc.RpcError) as no_signature:
            stub.Predict(request, timeout=5)
        assert no_signature.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        metadata = stub.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=model_pb2.ModelSpec(name=MODEL), metadata_field=["signature_def"]
            ),
            timeout=5,
        )
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        assert metadata.metadata["signature_def"].Unpack(signature_defs)
        assert set(SIGNATURES) <= set(signature_defs.signature_def)
        assert metadata.model_spec.version.value == int(version)


def test_a_server_added_behind_the_name_gets_requests_once_connections_age(servable, histories):
    """The HPA adds a pod: the headless Service's name gains an address. TF Serving ends connections after
    grpc.max_connection_age_ms (k8s/: --grpc_channel_arguments); the client then resolves the name again."""
    age = (("grpc.max_connection_age_ms", 500), ("grpc.max_connection_age_grace_ms", 200))
    first = GrpcModelServer(servable, options=age).start()
    dns = DnsServer("tf-serving.test", [first.host]).start()
    second = GrpcModelServer(servable, host="127.0.0.2", port=first.port, options=age)
    client = client_for_url(f"dns://127.0.0.1:{dns.port}/tf-serving.test:{first.port}", MODEL)
    item = histories[sorted(histories)[0]][0]
    try:
        for _ in range(5):
            client.similar([item], k=1)
        second.start()
        dns.addresses.append(second.host)
        deadline = time.monotonic() + 15  # connection age, then the client's 5 s between resolutions at most
        while not second.answered and time.monotonic() < deadline:
            client.similar([item], k=1)
            time.sleep(0.05)
        assert second.answered, "the new server got no request"
        before = len(second.answered)
        for _ in range(20):
            client.similar([item], k=1)
        assert len(second.answered) - before >= 5  # in the rotation now, not a one-off
    finally:
        client.close()
        dns.stop()
        first.stop()
        second.stop()
