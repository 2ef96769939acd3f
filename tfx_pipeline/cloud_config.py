"""The cloud deployment's config file (config/cloud.example.yaml): read and checked in one place.

Every problem is collected and reported together, before anything is compiled or sent.
"""

import difflib
import re
from dataclasses import dataclass

import yaml

ACCELERATORS = (
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_P4",
    "NVIDIA_L4",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_H100_80GB",
)


class ConfigError(ValueError):
    """The config file is missing values or has malformed ones; the message lists every problem."""


@dataclass(frozen=True)
class CloudConfig:
    project: str
    region: str
    bucket: str
    pipeline_name: str
    pipeline_image: str
    interactions_table: str
    feedback_table: str
    window_days: int
    catalog_uri: str
    dataflow_machine_type: str
    dataflow_max_workers: int
    dataflow_disk_size_gb: int
    trainer_machine_type: str
    trainer_accelerator_type: str
    trainer_accelerator_count: int
    trainer_image: str
    model_name: str
    namespace: str
    grpc_port: int
    rest_port: int
    proxy_port: int
    proxy_image: str
    pipeline_service_account: str
    dataflow_service_account: str
    vertex_network: str
    dataflow_subnetwork: str
    store_instance: str
    store_url_secret: str
    store_ca_secret: str
    drift_l_infinity: float
    drift_jensen_shannon: float
    stop_on_drift: bool

    @property
    def drift_thresholds(self) -> dict:
        return {"l_infinity": self.drift_l_infinity, "jensen_shannon": self.drift_jensen_shannon}

    @property
    def pipeline_root(self) -> str:
        return f"{self.bucket}/pipeline_root"

    @property
    def serving_base(self) -> str:
        """Where the Pusher writes versions, the base TF Serving serves and the API reads the catalog from:
        <bucket>/serving/<model_name>."""
        return f"{self.bucket}/serving/{self.model_name}"


# (dotted key in the file, CloudConfig field, what it must be: a regular expression or one of the kinds
# "int" (positive), "count" (0..16), "port", "image", "accelerator", "service_account", "threshold" (0 < x <=
# 1), "bool")
FIELDS = [
    ("project", "project", r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"),
    ("region", "region", r"^[a-z]+-[a-z]+[0-9]$"),
    ("bucket", "bucket", r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$"),
    ("pipeline_name", "pipeline_name", r"^[a-z][a-z0-9-]{0,62}$"),
    ("pipeline_image", "pipeline_image", "image"),
    ("bigquery.interactions_table", "interactions_table", r"^[a-z][a-z0-9-]+\.\w+\.\w+$"),
    ("bigquery.feedback_table", "feedback_table", r"^[a-z][a-z0-9-]+\.\w+\.\w+$"),
    ("bigquery.window_days", "window_days", "int"),
    ("catalog_uri", "catalog_uri", r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^/]+)+\.csv$"),
    ("dataflow.machine_type", "dataflow_machine_type", r"^[a-z0-9]+-[a-z0-9-]+$"),
    ("dataflow.max_workers", "dataflow_max_workers", "int"),
    ("dataflow.disk_size_gb", "dataflow_disk_size_gb", "int"),
    ("trainer.machine_type", "trainer_machine_type", r"^[a-z0-9]+-[a-z0-9-]+$"),
    ("trainer.accelerator_type", "trainer_accelerator_type", "accelerator"),
    ("trainer.accelerator_count", "trainer_accelerator_count", "count"),
    ("trainer.image", "trainer_image", "image"),
    ("serving.model_name", "model_name", r"^[a-z][a-z0-9_-]{0,62}$"),
    ("serving.namespace", "namespace", r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
    ("serving.grpc_port", "grpc_port", "port"),
    ("serving.rest_port", "rest_port", "port"),
    ("serving.proxy_port", "proxy_port", "port"),
    ("serving.proxy_image", "proxy_image", "image"),
    ("identity.pipeline_service_account", "pipeline_service_account", "service_account"),
    ("identity.dataflow_service_account", "dataflow_service_account", "service_account"),
    # Vertex AI peers with a network named by project number; "" leaves its jobs on Google's own network.
    (
        "network.vertex_network",
        "vertex_network",
        r"^(projects/[0-9]+/global/networks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?)?$",
    ),
    (
        "network.dataflow_subnetwork",
        "dataflow_subnetwork",
        r"^(https://www\.googleapis\.com/compute/v1/projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/)?"
        r"regions/[a-z]+-[a-z]+[0-9]/subnetworks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
    ),
    ("store.instance", "store_instance", r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"),
    ("store.url_secret", "store_url_secret", r"^[A-Za-z0-9_-]{1,255}$"),
    ("store.ca_secret", "store_ca_secret", r"^[A-Za-z0-9_-]{1,255}$"),
    ("drift.l_infinity", "drift_l_infinity", "threshold"),
    ("drift.jensen_shannon", "drift_jensen_shannon", "threshold"),
    ("drift.stop_on_drift", "stop_on_drift", "bool"),
]
SERVICE_ACCOUNT = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
IMAGE = r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[\w.-]+|@sha256:[0-9a-f]{64})$"


def _check(key: str, value, kind: str) -> str | None:
    """A problem with one value, or None."""
    if kind == "threshold":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1
        return None if ok else f"{key}: expected a number above 0, at most 1, got {value!r}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"{key}: expected true or false, got {value!r}"
    if kind in ("int", "count", "port"):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{key}: expected an integer, got {value!r}"
        low, high = {"int": (1, 10**6), "count": (0, 16), "port": (1, 65535)}[kind]
        return None if low <= value <= high else f"{key}: {value} is outside {low}..{high}"
    if not isinstance(value, str):
        return f"{key}: expected a string, got {value!r}"
    if kind == "accelerator":
        return (
            None
            if value in ("",) + ACCELERATORS
            else f"{key}: {value!r} is not one of {', '.join(ACCELERATORS)}"
        )
    if kind == "service_account":
        return (
            None
            if re.match(SERVICE_ACCOUNT, value)
            else f"{key}: {value!r} is not a service account's email (name@project.iam.gserviceaccount.com)"
        )
    if re.match(IMAGE if kind == "image" else kind, value):
        return None
    return (
        f"{key}: {value!r} is not an image reference with a tag or digest"
        if kind == "image"
        else f"{key}: {value!r} does not match {kind}"
    )


def _unknown_keys(node: dict, prefix: str = "") -> list[str]:
    """The file's dotted keys that no field reads: a misspelt one would otherwise be ignored."""
    known = {key for key, _, _ in FIELDS}
    sections = {key.rsplit(".", 1)[0] for key in known if "." in key}
    unknown = []
    for name, value in node.items():
        key = f"{prefix}{name}"
        if key in sections and isinstance(value, dict):
            unknown += _unknown_keys(value, f"{key}.")
        elif key not in known:
            unknown.append(key)
    return unknown


def _unknown_key_problem(key: str) -> str:
    close = difflib.get_close_matches(key, [known for known, _, _ in FIELDS], n=1)
    return f"{key}: unknown setting" + (f" (did you mean {close[0]}?)" if close else "")


def load(path: str) -> CloudConfig:
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    values, problems = {}, [_unknown_key_problem(key) for key in _unknown_keys(raw)]
    for key, field, kind in FIELDS:
        node = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            problems.append(f"{key}: missing")
            continue
        problem = _check(key, node, kind)
        if problem:
            problems.append(problem)
        values[field] = node
    if not problems and bool(values["trainer_accelerator_type"]) != bool(values["trainer_accelerator_count"]):
        problems.append(
            "trainer: accelerator_type and accelerator_count must be set together (or both empty/0)"
        )
    if not problems and len({values["grpc_port"], values["rest_port"], values["proxy_port"]}) < 3:
        problems.append("serving: grpc_port, rest_port and proxy_port must differ")
    subnetwork_region = re.search(r"regions/([^/]+)/", values.get("dataflow_subnetwork") or "")
    if not problems and subnetwork_region.group(1) != values["region"]:
        problems.append(
            f"network.dataflow_subnetwork: in region {subnetwork_region.group(1)}, "
            f"not the pipeline's region {values['region']}"
        )
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return CloudConfig(**values)
