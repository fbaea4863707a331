"""The ``adamml`` command-line interface (installed as ``adamml_cli``)."""
