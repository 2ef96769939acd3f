"""The pipeline's components by id, as tfx_pipeline/pipeline.py's create_pipeline wires them: the one list the
tests of a local run, of the compiled Vertex pipeline and of its run name them from."""

LOCAL_EXAMPLE_GEN, BIGQUERY_EXAMPLE_GEN = "FileBasedExampleGen", "BigQueryExampleGen"
# Every component after ExampleGen, in the order the pipeline lists them.
COMPONENTS = (
    "StatisticsGen",
    "DriftCheck",
    "DriftGate",
    "ContractSchemaGen",
    "ExampleValidator",
    "AnomaliesGate",
    "Transform",
    "Trainer",
    "RefitTrainer",
    "Evaluator",
    "Pusher",
)
# The drift check and its gate read the previous run's statistics, so no run repeats their inputs.
DRIFT_CHECKS = {"DriftCheck", "DriftGate"}
# The Resolvers of a local run (on Vertex the last blessed model's splits in two tasks).
RESOLVERS = ("previous_statistics", "last_blessed_model")
