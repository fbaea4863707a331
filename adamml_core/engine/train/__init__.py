"""adamml_core/engine/train: see docs/architecture.md."""
