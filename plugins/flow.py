"""Placeholder for the flow plugin (filled by its issue)."""
