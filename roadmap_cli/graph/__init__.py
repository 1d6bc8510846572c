"""The graph stage: a road mask becomes a clean road graph.  ``build`` makes the raw graph tile by tile in one
pass over the mask and joins the tiles exactly across seams; ``clean`` simplifies and repairs it.  The functions
here run both, for a scene on disk (:func:`graph_from_rasters`, memory bounded by the tile) or an in-memory mask
(:func:`graph_from_mask`)."""
from __future__ import annotations

from typing import Callable

import networkx as nx
import numpy as np

from ..tiling import Reader, array_reader, tile_ranges
from .build import halo_for, join_parts, thickness, tile_part
from .clean import CleanOptions, clean_graph, edge_line, line_length

__all__ = ["CleanOptions", "build_graph", "clean_graph", "edge_line", "graph_from_mask", "graph_from_rasters",
           "graph_tiles", "line_length", "tile_part"]


def graph_tiles(h: int, w: int, tile: int) -> list[tuple[int, int, int, int]]:
    """The graph tiles (r0, r1, c0, c1) of an h x w raster, in the order their parts are joined."""
    return [(r0, r1, c0, c1) for r0, r1 in tile_ranges(h, tile) for c0, c1 in tile_ranges(w, tile)]


def build_graph(read_mask: Reader, h: int, w: int, tile: int = 2048, read_prob: Reader | None = None,
                halo: int = 64, tick: Callable[[], None] | None = None,
                skeleton: Callable[[int, int, np.ndarray], None] | None = None, parts=None) -> nx.MultiGraph:
    """The raw graph of an h x w mask read by windows: one pass per ``tile`` (skeleton, half-width, pixel classes,
    traced pieces; ``tick`` after each, ``skeleton(r0, c0, core)`` receives each tile's skeleton), then the exact
    join.  Equal to one sknw call on the whole mask's skeleton while roads are narrower than ``halo``.  ``parts``
    may supply the tiles' parts instead (``parts(tiles, halo)`` yields one :class:`TilePart` per tile, in order:
    an engine computing them on workers)."""
    if tile < 1 or halo < 1:
        raise ValueError(f"graph tile ({tile}) and halo ({halo}) must be at least 1 px")
    tiles = graph_tiles(h, w, tile)
    halo = halo_for(max((thickness(read_mask, h, w, *t) for t in tiles), default=0), halo)
    if parts is None:
        def parts(tiles, halo):
            for r0, r1, c0, c1 in tiles:
                part, core = tile_part(read_mask, h, w, r0, r1, c0, c1, halo, read_prob)
                if skeleton is not None:
                    skeleton(r0, c0, core)
                yield part
    done = []
    for part in parts(tiles, halo):
        done.append(part)
        if tick is not None:
            tick()
    return join_parts(done, w)


def graph_from_rasters(read_mask: Reader, h: int, w: int, clean: CleanOptions, read_prob: Reader | None = None,
                       tile: int = 2048, halo: int = 64, tick: Callable[[], None] | None = None,
                       parts=None) -> nx.MultiGraph:
    """The graph stage of ``roadmap extract`` for a scene of any size: :func:`build_graph` then cleanup.  Memory is
    bounded by the tile (plus the graph), not the scene.  ``tick`` is called once per tile."""
    g = build_graph(read_mask, h, w, tile, read_prob, halo, tick, parts=parts)
    return clean_graph(g, clean, read_prob, h, w)


def graph_from_mask(mask: np.ndarray, prob: np.ndarray | None = None, gsd: float = 1.0, tile: int = 2048,
                    clean: CleanOptions | None = None, halo: int = 64) -> nx.MultiGraph:
    """In-memory convenience: mask -> tiled graph -> cleaned graph (with ``line`` per edge).  Without ``clean``
    only the lossless steps run (no spur, component or gap tolerance)."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    read_prob = array_reader(prob) if prob is not None else None
    g = build_graph(array_reader(mask), h, w, tile, read_prob, halo)
    if clean is None:
        clean = CleanOptions(gsd=gsd, min_spur_m=0, min_component_m=0, bridge_m=0, spur_width_ratio=0)
    return clean_graph(g, clean, read_prob, h, w)
