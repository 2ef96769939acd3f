"""Transform: the feature names and the preprocessing_fn that builds the vocabularies."""
