"""Package data: variant configs (``*.yaml``), the weights registry and the bundled road model, read with
``importlib.resources`` by ``roadmap_cli.weights``."""
