"""Placeholder for the audio plugin (filled by its issue)."""
