"""The `recsys` command: cli/main.py builds the parser from one module per command group."""
