"""Placeholder for the synthetic plugin (filled by its issue)."""
