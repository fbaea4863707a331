"""Placeholder for the rgb plugin (filled by its issue)."""
