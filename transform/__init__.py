"""Transform: the preprocessing_fn that builds the vocabularies (the feature names are contract.py's)."""
