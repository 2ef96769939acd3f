"""Executes the PipelineJob that `recsys pipeline submit` sends, task by task, as Vertex AI Pipelines does.

What runs is the document, not the Python pipeline object: for each task in dependency order, the harness
builds the ExecutorInput from the spec (parameters, upstream artifacts with their metadata, output URIs laid
out as Vertex lays them out), runs the task's own container `command` + `args` as a subprocess (`{{$}}`
replaced) and reads `executor_output.json` back. Resolver tasks evaluate their `outputArtifactQueries` filters
against the artifacts earlier runs recorded, as Vertex ML Metadata would; a task whose caching is enabled in
the job as submitted reuses the outputs of an earlier successful execution with the same cache key (its
component, its container and its inputs: parameters and the names of its input artifacts).

Stand-ins where this machine has no cloud: gs:// is a local directory; Dataflow is Beam's DirectRunner, once
the Dataflow options were checked to be options Beam knows; BigQuery and Vertex AI Training as
stand_ins/sitecustomize.py says.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime

import yaml
from apache_beam.options.pipeline_options import PipelineOptions

STAND_INS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stand_ins")
PROJECT_NUMBER = "123456789012"


class TaskFailed(RuntimeError):
    pass


class MetadataStore:
    """What Vertex ML Metadata and the cache keep between runs: artifacts (in creation order) and executions,
    in one JSON file."""

    def __init__(self, path: str):
        self.path = path
        self.data = {"artifacts": [], "executions": {}}
        if os.path.exists(path):
            with open(path) as fh:
                self.data = json.load(fh)

    def save(self):
        with open(self.path, "w") as fh:
            json.dump(self.data, fh, indent=1)

    def new_id(self) -> int:
        self.data["last_id"] = self.data.get("last_id", 1000) + 1
        return self.data["last_id"]

    def record(self, artifact: dict):
        self.data["artifacts"].append(artifact)

    def query(self, query_filter: str) -> list[dict]:
        """The artifacts that match a filter of the ML Metadata filter syntax (the parts resolvers use),
        newest first; a term it does not know fails, rather than matching wrongly."""
        tests = []
        for term in query_filter.split(" AND "):
            field, _, value = term.strip().partition("=")
            value = value.strip('"')
            if field == "schema_title":
                tests.append(lambda a, v=value: a["schema_title"] == v)
            elif field == "state":
                tests.append(lambda a, v=value: v == "LIVE")
            elif field == "name":
                tests.append(lambda a, v=value: a["name"] == v)
            elif m := re.fullmatch(r"metadata\.(\w+)\.(number_value|string_value)", field):
                key, kind = m.groups()
                if kind == "number_value":
                    tests.append(
                        lambda a, k=key, v=float(value): (
                            isinstance(a["metadata"].get(k), (int, float)) and float(a["metadata"][k]) == v
                        )
                    )
                else:
                    tests.append(lambda a, k=key, v=value: a["metadata"].get(k) == v)
            else:
                raise ValueError(f"filter term the harness does not know: {term!r}")
        return [a for a in reversed(self.data["artifacts"]) if all(test(a) for test in tests)]


def schema_title(artifact_type: dict) -> str:
    return artifact_type.get("schemaTitle") or yaml.safe_load(artifact_type["instanceSchema"])["title"]


def dataflow_to_direct_runner(args: list[str]) -> list[str]:
    """The task's Beam arguments with the DirectRunner for Dataflow. Every option must be one Beam knows:
    Dataflow refuses a job with an option it does not know, the DirectRunner would ignore it."""
    beam = [
        a
        for a in args
        if a.startswith("--") and a not in ("--executor_class_path", "--json_serialized_invocation_args")
    ]
    options = PipelineOptions(beam)
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    if unknown:
        raise TaskFailed(f"options Dataflow does not know: {sorted(unknown)}")
    return [("--runner=DirectRunner" if a == "--runner=DataflowRunner" else a) for a in args]


def topological_order(tasks: dict) -> list[str]:
    def upstream(task):
        producers = {
            a["taskOutputArtifact"]["producerTask"]
            for a in task.get("inputs", {}).get("artifacts", {}).values()
            if "taskOutputArtifact" in a
        }
        return producers | set(task.get("dependentTasks", []))

    order, placed = [], set()
    while len(order) < len(tasks):
        ready = sorted(n for n, t in tasks.items() if n not in placed and upstream(t) <= placed)
        if not ready:
            raise ValueError("the task graph has a cycle")
        order += ready
        placed.update(ready)
    return order


class VertexHarness:
    """Runs PipelineJobs in `root`: gs://BUCKET/... is root/gcs/BUCKET/..., BigQuery's tables are the CSV
    files `bigquery_tables` maps them to, and its clock (CURRENT_TIMESTAMP) reads `bigquery_now`; metadata and
    cache persist in root between runs."""

    def __init__(self, root: str, bigquery_tables: dict[str, str], region: str, bigquery_now: datetime):
        self.root = os.path.abspath(root)
        self.bigquery_now = bigquery_now.isoformat()
        self.location = f"projects/{PROJECT_NUMBER}/locations/{region}"
        os.makedirs(self.root, exist_ok=True)
        self.store = MetadataStore(os.path.join(self.root, "metadata.json"))
        self.tables_file = os.path.join(self.root, "bigquery_tables.json")
        with open(self.tables_file, "w") as fh:
            json.dump(bigquery_tables, fh)
        self.custom_jobs = os.path.join(self.root, "custom_jobs")
        os.makedirs(self.custom_jobs, exist_ok=True)

    def local(self, text: str) -> str:
        return text.replace("gs://", os.path.join(self.root, "gcs") + "/")

    def run(self, pipeline_job: dict, job_id: str, echo=print) -> dict[str, str]:
        """Runs one PipelineJob (the REST form of the request's pipeline_job); returns {task: "ran" | "cached"
        | "resolved"}. A failed task raises TaskFailed with the end of its output."""
        job = json.loads(self.local(json.dumps(pipeline_job)))
        spec = job["pipelineSpec"]
        job_root = os.path.join(job["runtimeConfig"]["gcsOutputDirectory"], PROJECT_NUMBER, job_id)
        tasks = spec["root"]["dag"]["tasks"]
        produced, statuses = {}, {}
        for name in topological_order(tasks):
            task = tasks[name]
            component = spec["components"][task["componentRef"]["name"]]
            executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
            inputs = {
                key: produced[src["taskOutputArtifact"]["producerTask"]][
                    src["taskOutputArtifact"]["outputArtifactKey"]
                ]
                for key, src in task.get("inputs", {}).get("artifacts", {}).items()
            }
            inputs = {key: artifacts for key, artifacts in inputs.items() if artifacts}
            parameters = {
                key: value["runtimeValue"]["constantValue"]
                for key, value in task.get("inputs", {}).get("parameters", {}).items()
            }
            if "resolver" in executor:
                produced[name] = self._resolve(executor["resolver"], inputs)
                statuses[name] = "resolved"
                continue
            cache_key = hashlib.sha256(
                json.dumps(
                    [component, executor, parameters, {k: [a["name"] for a in v] for k, v in inputs.items()}],
                    sort_keys=True,
                ).encode()
            ).hexdigest()
            cached = self.store.data["executions"].get(cache_key)
            if task.get("cachingOptions", {}).get("enableCache") and cached:
                produced[name], statuses[name] = cached, "cached"
                echo(f"[vertex] {name}: cached")
                continue
            started = time.time()
            produced[name] = self._execute(
                name,
                component,
                executor["container"],
                parameters,
                inputs,
                os.path.join(job_root, f"{name}_{self.store.new_id()}"),
                job["displayName"],
            )
            self.store.data["executions"][cache_key] = produced[name]
            self.store.save()
            statuses[name] = "ran"
            echo(f"[vertex] {name}: done in {time.time() - started:.1f} s")
        return statuses

    def _resolve(self, resolver: dict, inputs: dict) -> dict[str, list]:
        def placeholder(match):
            key, field = match.groups()
            return str(inputs[key][0]["metadata"][field]) if key in inputs else "\0"  # an input not resolved

        outputs = {}
        for key, query in resolver["outputArtifactQueries"].items():
            query_filter = re.sub(
                r"\{\{\$\.inputs\.artifacts\['(\w+)'\]\.metadata\['(\w+)'\]\}\}", placeholder, query["filter"]
            )
            found = [] if "\0" in query_filter else self.store.query(query_filter)
            outputs[key] = [{k: found[0][k] for k in ("name", "type", "uri", "metadata")}] if found else []
        return outputs

    def _execute(
        self,
        name: str,
        component: dict,
        container: dict,
        parameters: dict,
        inputs: dict,
        task_root: str,
        pipeline_name: str,
    ) -> dict[str, list]:
        outputs = {
            key: [
                {
                    "name": f"{self.location}/metadataStores/default/artifacts/{self.store.new_id()}",
                    "type": definition["artifactType"],
                    "uri": os.path.join(task_root, key),
                    "metadata": {},
                }
            ]
            for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()
        }
        executor_input = {
            "inputs": {
                "parameters": parameters,
                "artifacts": {k: {"artifacts": v} for k, v in inputs.items()},
            },
            "outputs": {
                "artifacts": {k: {"artifacts": v} for k, v in outputs.items()},
                "outputFile": os.path.join(task_root, "executor_output.json"),
            },
        }
        args = [a.replace("{{$}}", json.dumps(executor_input)) for a in container["args"]]
        env = dict(
            os.environ,
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
            PYTHONPATH=os.pathsep.join([STAND_INS] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
            VERTEX_HARNESS_BIGQUERY=self.tables_file,
            VERTEX_HARNESS_BIGQUERY_NOW=self.bigquery_now,
            VERTEX_HARNESS_CUSTOM_JOBS=self.custom_jobs,
        )
        for [artifact] in outputs.values():  # any gs:// path is writable: an object store has no directories
            os.makedirs(artifact["uri"], exist_ok=True)
        os.makedirs(task_root, exist_ok=True)  # a task without outputs (a gate) has its log there too
        with open(os.path.join(task_root, "log.txt"), "w") as log:
            done = subprocess.run(
                container["command"] + dataflow_to_direct_runner(args),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if done.returncode != 0:
            with open(os.path.join(task_root, "log.txt")) as fh:
                raise TaskFailed(f"{name} exited {done.returncode}:\n" + "".join(fh.readlines()[-40:]))
        with open(executor_input["outputs"]["outputFile"]) as fh:
            written = json.load(fh).get("artifacts", {})
        for key, [artifact] in outputs.items():
            if key in written:
                [update] = written[key]["artifacts"]
                artifact.update(uri=update.get("uri", artifact["uri"]), metadata=update.get("metadata", {}))
            self.store.record(
                dict(artifact, schema_title=schema_title(artifact["type"]), pipeline=pipeline_name)
            )
        return outputs
