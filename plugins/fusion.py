"""Placeholder for the fusion plugin (filled by its issue)."""
