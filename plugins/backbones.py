"""Placeholder for the backbones plugin (filled by its issue)."""
