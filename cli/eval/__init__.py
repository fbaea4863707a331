"""cli/eval: see docs/architecture.md."""
