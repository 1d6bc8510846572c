"""Training data: sources and splits (``sources``), the sampled and augmented dataset (``dataset``,
``augment``), and pairs made from a scene and road vectors (``from_vectors``)."""
