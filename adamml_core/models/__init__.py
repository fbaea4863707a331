"""The networks around the recognition backbones: Gumbel-Softmax decisions (``gumbel``), the
policy network (``policy``), the AdaMML system with its masked and selected-only execution paths
(``system``), and building all of it from a config through the registries (``build``).
See docs/models.md."""
