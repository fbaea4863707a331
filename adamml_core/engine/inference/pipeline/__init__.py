"""adamml_core/engine/inference/pipeline: see docs/architecture.md."""
