"""Finding, reading, validating and transforming segmentation data."""
