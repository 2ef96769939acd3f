"""Data validation: the examples are checked against the data contract's schema, and anomalies stop the run.

The schema is built from contract.py (the one definition of the contract), not inferred from
each run's data: an inferred schema follows whatever the data became, so a table that changed (a new
interaction type, a missing column, ids gone empty) would be trained on without a word. Locally most of
this is refused earlier by tfx_pipeline/data/local_source.py; on BigQuery this is the only check.
"""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

import contract
from tfx_pipeline.data.local_source import DataError

SCHEMA_FILE = "schema.pbtxt"
ANOMALIES_FILE = "SchemaDiff.pb"  # what ExampleValidator writes per split


class DataAnomalies(DataError):
    """The examples break the contract's schema: nothing is trained on them."""


def contract_schema() -> schema_pb2.Schema:
    """The examples' schema: every feature in every example, of its type; interaction types of the contract
    (dislikes are not examples: history_query.py leaves them out); at most HISTORY_LENGTH history items."""
    schema = schema_pb2.Schema()
    kinds = {
        contract.USER_ID: schema_pb2.BYTES,
        contract.ITEM_ID: schema_pb2.BYTES,
        contract.INTERACTION_TYPE: schema_pb2.BYTES,
        contract.RATING: schema_pb2.FLOAT,
        contract.TIMESTAMP: schema_pb2.INT,
        contract.CATEGORY: schema_pb2.BYTES,
    }
    for name, kind in kinds.items():
        feature = schema.feature.add(name=name, type=kind)
        feature.presence.min_fraction = 1.0
        feature.shape.dim.add(size=1)
        if name == contract.INTERACTION_TYPE:
            feature.domain = name
        if name == contract.TIMESTAMP:
            feature.int_domain.min = 0  # seconds since 1970
    schema.string_domain.add(
        name=contract.INTERACTION_TYPE, value=[t for t in contract.INTERACTION_TYPES if t != "dislike"]
    )
    history = schema.feature.add(name=contract.HISTORY, type=schema_pb2.BYTES)
    history.presence.min_fraction = 1.0
    history.value_count.max = contract.HISTORY_LENGTH
    schema.dataset_constraints.min_examples_count = 1
    return schema


def anomalies_found(anomalies_uri: str, split_names: list[str]) -> list[str]:
    """One line per anomaly ExampleValidator recorded: split, feature, what is wrong."""
    found = []
    for split in split_names:
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(
            io_utils.read_bytes_file(os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE))
        )
        for feature, info in sorted(anomalies.anomaly_info.items()):
            found.append(f"{split} split, {feature}: {info.description or info.short_description}")
        if anomalies.HasField("dataset_anomaly_info"):
            found.append(f"{split} split: {anomalies.dataset_anomaly_info.description}")
    return found


@tfx.dsl.components.component
def ContractSchemaGen(
    schema: tfx.dsl.components.OutputArtifact[standard_artifacts.Schema],
    code: tfx.dsl.components.Parameter[str] = "",
):  # code_fingerprint: a change re-runs it
    io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE), contract_schema())


@tfx.dsl.components.component
def AnomaliesGate(
    anomalies: tfx.dsl.components.InputArtifact[standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[standard_artifacts.Schema],
    validated_schema: tfx.dsl.components.OutputArtifact[standard_artifacts.Schema],
):
    """Fails the run on any anomaly; else passes the schema on. Transform and Trainer take the schema from
    here, so they cannot start before the examples passed."""
    found = anomalies_found(anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
    if found:
        raise DataAnomalies(
            "the examples break the data contract's schema (ExampleValidator):\n  " + "\n  ".join(found)
        )
    io_utils.copy_file(os.path.join(schema.uri, SCHEMA_FILE), os.path.join(validated_schema.uri, SCHEMA_FILE))
