"""Hyperparameter search with Ray Tune: searchers and schedulers by name, the driver, trial tables."""
