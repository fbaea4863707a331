"""adamml core: registries, plugin contract and machinery. It names no concrete modality, dataset or network."""

from adamml_core.hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
