"""The TFX pipeline: one factory (pipeline.py), thin runners (local_runner.py, vertex_runner.py), its
components (components/) and the data sources (data/)."""
