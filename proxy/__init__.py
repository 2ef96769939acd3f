"""The recommendation API (Cloud Run proxy): app.py wires it, routes/ holds the endpoints, settings.py the
settings; the model itself is served by serving/."""
