"""adamml_core/engine/inference: see docs/architecture.md."""
