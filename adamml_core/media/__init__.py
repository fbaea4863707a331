"""adamml_core.media"""
