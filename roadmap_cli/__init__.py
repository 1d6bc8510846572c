"""roadmap: road networks from georeferenced aerial and satellite images (Anchor-SAM)."""
__version__ = "0.1.0"
