"""Training, evaluation, inference and export."""
