"""Runs a compiled Vertex AI PipelineJob on this machine the way Vertex AI Pipelines runs it (runner.py)."""
