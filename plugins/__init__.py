"""Built-in adamml plugins, each registered through the `adamml` entry-point group like any third-party plugin."""
