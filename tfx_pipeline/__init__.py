"""The TFX pipeline: one factory (pipeline.py), thin runners, the data sources and the `recsys` CLI."""
