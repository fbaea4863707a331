"""Placeholder for the dataset plugins (filled by their issue)."""
