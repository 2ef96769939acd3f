"""Input data: the local data directory (validated), sample data and dataset converters."""
