"""cli/predict: see docs/architecture.md."""
