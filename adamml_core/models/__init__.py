"""adamml_core.models"""
