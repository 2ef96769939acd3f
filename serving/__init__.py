"""Serving code apart from the API: the exported model in-process or through TF Serving, its catalog, and the
users' recent items. The API and the pipeline's Evaluator import it; it imports neither."""
