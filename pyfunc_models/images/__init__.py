"""Image models trained on images that ship inside scikit-learn (no downloads)."""
