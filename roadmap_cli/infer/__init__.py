"""Model inference: device and precision (``device``), batched prediction and in-memory sliding windows
(``predict``), per-tile predictions cached on disk and blended block by block (``stitch``)."""
