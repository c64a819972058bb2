"""Data stages: one decode path, catalog, embedders, outlier detectors, the Ray Data clean pipeline."""
