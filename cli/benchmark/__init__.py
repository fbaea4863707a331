"""cli/benchmark: see docs/architecture.md."""
