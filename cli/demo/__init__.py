"""cli/demo: see docs/architecture.md."""
