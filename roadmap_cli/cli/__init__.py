"""The command line: one module per command, shared options in ``options``, drawing in ``render``.  Only this
layer prints; nothing in the package imports it."""
from .main import app, main

__all__ = ["app", "main"]
