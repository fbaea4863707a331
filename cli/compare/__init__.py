"""cli/compare: see docs/architecture.md."""
