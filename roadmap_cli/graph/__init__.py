"""The graph stage: a road mask becomes a clean road graph.  ``build`` skeletonizes by tiles and joins per-tile
sknw graphs exactly across seams; ``clean`` simplifies and repairs it.  The two functions here run both, for a
scene on disk (:func:`graph_from_rasters`, memory bounded by the tile) or an in-memory mask
(:func:`graph_from_mask`)."""
from __future__ import annotations

from typing import Callable

import networkx as nx
import numpy as np
from scipy import ndimage

from ..tiling import Reader, array_reader, read_padded, tile_ranges
from .build import ScratchRaster, build_graph, skeletonize_tiled
from .clean import CleanOptions, clean_graph, edge_line, line_length

__all__ = ["CleanOptions", "ScratchRaster", "build_graph", "clean_graph", "edge_line", "graph_from_mask",
           "graph_from_rasters", "line_length", "skeletonize_tiled"]


def graph_from_rasters(read_mask: Reader, h: int, w: int, skeleton: ScratchRaster, dist: ScratchRaster,
                       clean: CleanOptions, read_prob: Reader | None = None, tile: int = 2048, halo: int = 64,
                       tick: Callable[[], None] | None = None) -> nx.MultiGraph:
    """The raster graph stage of ``roadmap extract`` for a scene of any size: tiled skeleton (written to
    ``skeleton``), road half-width by a per-tile distance transform with halo (written to ``dist``), per-tile sknw
    joined into one graph, cleanup.  Memory is bounded by the tile, not the scene.  ``tick`` is called once per tile
    of each of the three passes (progress)."""
    tick = tick or (lambda: None)

    def write_ske(r0, c0, a):
        skeleton.write(r0, c0, a)
        tick()

    skeletonize_tiled(read_mask, h, w, write_ske, tile, halo)
    tiles = [(r, c) for r in tile_ranges(h, tile) for c in tile_ranges(w, tile)]
    for (r0, r1), (c0, c1) in tiles:
        m = read_padded(read_mask, h, w, r0 - halo, r1 + halo, c0 - halo, c1 + halo)
        dist.write(r0, c0, ndimage.distance_transform_edt(m)[halo:halo + r1 - r0, halo:halo + c1 - c0])
        tick()
    g = build_graph(skeleton.read, h, w, tile, read_prob, dist.read)
    for _ in tiles:
        tick()
    return clean_graph(g, clean, read_prob, h, w)


def graph_from_mask(mask: np.ndarray, prob: np.ndarray | None = None, gsd: float = 1.0, tile: int = 2048,
                    clean: CleanOptions | None = None, halo: int = 64) -> nx.MultiGraph:
    """In-memory convenience: mask -> tiled skeleton -> graph (-> cleaned, with ``line`` per edge)."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    ske = np.zeros_like(mask)

    def write(r0, c0, a):
        ske[r0:r0 + a.shape[0], c0:c0 + a.shape[1]] = a

    skeletonize_tiled(array_reader(mask), h, w, write, tile, halo)
    dist = ndimage.distance_transform_edt(mask).astype(np.float32)
    g = build_graph(array_reader(ske), h, w, tile, array_reader(prob) if prob is not None else None,
                    array_reader(dist))
    if clean is None:
        clean = CleanOptions(gsd=gsd, min_spur_m=0, min_component_m=0, bridge_m=0)
    return clean_graph(g, clean, array_reader(prob) if prob is not None else None, h, w)
