"""adamml_core/engine/decisions: see docs/architecture.md."""
