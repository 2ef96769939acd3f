"""ExampleGen for each data source, all running the same history SQL (history_query.py).

- local: a FileBasedExampleGen over the data directory whose executor runs the SQL in DuckDB; the
  file-based driver fingerprints the input files, so new data means a new span and no stale cache.
- BigQuery: BigQueryExampleGen with the SQL over the recent interactions and feedback (vertex_runner.py).
"""

import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from google.protobuf import any_pb2, wrappers_pb2
from tfx import v1 as tfx
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

import contract
from tfx_pipeline.data import local_source
from tfx_pipeline.history_query import history_query

INTERACTIONS_PATTERN = "interactions*"
# 95% of the events train the model, 5% are held out for the validation loss and the Evaluator's ranking
# metrics. Every held-out event costs the model quality (docs/experiments.md measures how much), so the share
# is small; TFX's default 2:1 split cost far more. An event's side is decided by its timestamp, which never
# changes: hashing the whole example (TFX's default) moved events between the sides whenever new events
# changed their history, so the last blessed model had trained on part of the next run's held-out events and
# the Evaluator compared against an inflated baseline.
SPLITS = example_gen_pb2.Output(
    split_config=example_gen_pb2.SplitConfig(
        partition_feature_name=contract.TIMESTAMP,
        splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=19),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
        ],
    )
)


def _feature(value) -> tf.train.Feature:
    # Not tfx's dict_to_example: it turns falsy values (a 0.0 rating, an empty category) into missing ones.
    values = [] if value is None else value if isinstance(value, list) else [value]  # None: no history yet
    if isinstance(value, float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if isinstance(value, int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))


def _query_examples(input_base: str):
    con = local_source.open_data_dir(input_base)
    cursor = con.execute(history_query(local_source.INTERACTIONS_TABLE))
    names = [d[0] for d in cursor.description]
    while batch := cursor.fetchmany(10_000):
        for row in batch:
            yield tf.train.Example(
                features=tf.train.Features(feature={name: _feature(value) for name, value in zip(names, row)})
            )


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _DuckDBToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str):
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    return pipeline | "DataDir" >> beam.Create([input_base]) | "HistoryQuery" >> beam.FlatMap(_query_examples)


class DuckDBExecutor(BaseExampleGenExecutor):
    """Reads a local data directory (interactions CSV/Parquet) through the history SQL in DuckDB."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _DuckDBToExample


def local_example_gen(data_dir: str, code_fingerprint: str):
    """code_fingerprint: of the code this executor runs (pipeline.code_fingerprint), so a change of the SQL
    or of the contract checks re-runs ExampleGen instead of reusing its cached output."""
    fingerprint = any_pb2.Any()
    fingerprint.Pack(wrappers_pb2.StringValue(value=code_fingerprint))
    return FileBasedExampleGen(
        input_base=os.path.abspath(data_dir),
        custom_config=example_gen_pb2.CustomConfig(custom_config=fingerprint),
        input_config=tfx.proto.Input(
            splits=[tfx.proto.Input.Split(name="single", pattern=INTERACTIONS_PATTERN)]
        ),
        output_config=SPLITS,
        custom_executor_spec=executor_spec.BeamExecutorSpec(DuckDBExecutor),
    )


def bigquery_example_gen(source: str):
    """source: a table (`project.dataset.table`) or a parenthesized query with the contract's columns."""
    return tfx.extensions.google_cloud_big_query.BigQueryExampleGen(
        query=history_query(source), output_config=SPLITS
    )
