"""adamml_core.engine"""
