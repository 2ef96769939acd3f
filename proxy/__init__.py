"""The recommendation API (Cloud Run proxy) and its model backends."""
