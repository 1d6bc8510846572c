"""Input and output: rasters read by windows, vectors, image/label files (one label rule), atomic writes,
downloads.  Imports only ``errors`` and ``settings`` from the package."""
