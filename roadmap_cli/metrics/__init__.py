"""Scores: pixel metrics (``pixel``) and APLS (``apls``).  Pure computation on arrays and geometries; files are
read by ``roadmap_cli.io`` and matched by ``roadmap_cli.score``."""
