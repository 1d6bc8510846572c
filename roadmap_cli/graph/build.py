"""Building the road graph from a road mask: tiled skeleton -> per-tile sknw graphs -> exact join.

Scale: sknw labels pixels with uint16 and wraps coordinates past 32767, so it is only ever called on one tile
(default 2048 px).  Tiles share nothing but their seams:

* The skeleton of a tile is computed with a halo (default 64 px) and only its core is kept; thinning is local, so
  the result equals the whole-mask skeleton as long as roads are narrower than the halo.
* Each tile's skeleton core goes through sknw.  A skeleton pixel with an 8-neighbour in another tile's core is a
  *stitch* pixel: sknw edges passing through one are split there, and each cross-tile pixel pair becomes a one-step
  edge, owned by the tile holding the smaller linear index (so it is emitted exactly once).
* Globally, node keys are linear pixel indices (a junction cluster is keyed by its smallest pixel), stitch pixels
  are resolved through an alias table, and degree-2 nodes are merged: the seam leaves no trace.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import networkx as nx
import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from ..tiling import Reader, read_padded, tile_ranges


class ScratchRaster(Protocol):
    """A raster the size of the scene that the graph stage writes and reads back by windows (on disk for scenes
    larger than memory)."""

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Window [r0, r1) x [c0, c1)."""

    def write(self, r0: int, c0: int, a: np.ndarray) -> None:
        """Write ``a`` with its top-left corner at (r0, c0)."""


def skeletonize_tiled(read_mask: Reader, h: int, w: int, write: Callable[[int, int, np.ndarray], None],
                      tile: int = 2048, halo: int = 64) -> None:
    """Skeletonize a large mask tile by tile (core + halo); ``write(r0, c0, core_skeleton)``."""
    for r0, r1 in tile_ranges(h, tile):
        for c0, c1 in tile_ranges(w, tile):
            m = read_padded(read_mask, h, w, r0 - halo, r1 + halo, c0 - halo, c1 + halo).astype(bool)
            sk = skeletonize(m) if m.any() else np.zeros_like(m)
            write(r0, c0, sk[halo:halo + r1 - r0, halo:halo + c1 - c0])


@dataclass
class EdgePiece:
    u: int
    v: int
    pts: np.ndarray  # (N, 2) int64 global (row, col), oriented u -> v
    n: int
    sum_p: float
    min_p: float
    sum_w: float


_NB = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _tile_pieces(ske_read: Reader, prob_read: Reader | None, dist_read: Reader | None, h: int, w: int,
                 r0: int, r1: int, c0: int, c1: int, tile_of: Callable[[int, int], tuple]):
    """sknw on one tile core; returns (nodes {key: (sum_r, sum_c, n)}, pieces, alias {lin: key}, cross pairs)."""
    import sknw

    sub = read_padded(ske_read, h, w, r0 - 1, r1 + 1, c0 - 1, c1 + 1).astype(bool)
    core = sub[1:-1, 1:-1]
    nodes, pieces, alias, cross = {}, [], {}, []
    if not core.any():
        return nodes, pieces, alias, cross
    prob = (read_padded(prob_read, h, w, r0 - 1, r1 + 1, c0 - 1, c1 + 1).astype(np.float32)
            if prob_read else None)
    dist = (read_padded(dist_read, h, w, r0 - 1, r1 + 1, c0 - 1, c1 + 1).astype(np.float32)
            if dist_read else None)

    halo = sub.copy()
    halo[1:-1, 1:-1] = False
    near_halo = ndimage.binary_dilation(halo, np.ones((3, 3), bool))[1:-1, 1:-1]
    stitch = core & near_halo
    lin = lambda r, c: int(r) * w + int(c)  # noqa: E731

    g = sknw.build_sknw(core.astype(np.uint16), multi=True, iso=True, ring=True, full=False)
    member = np.full(core.shape, -1, np.int64)  # node id per cluster pixel
    key_of = {}
    for nid, d in g.nodes(data=True):
        pts = np.asarray(d["pts"], np.int64)
        member[pts[:, 0], pts[:, 1]] = nid
        glin = (pts[:, 0] + r0) * w + (pts[:, 1] + c0)
        key = int(glin.min())
        key_of[nid] = key
        nodes[key] = (float(pts[:, 0].sum() + r0 * len(pts)), float(pts[:, 1].sum() + c0 * len(pts)), len(pts))
        for (pr, pc) in pts[stitch[pts[:, 0], pts[:, 1]]]:
            alias[lin(pr + r0, pc + c0)] = key

    def stats(pts_local: np.ndarray):
        rr, cc = pts_local[:, 0] + 1, pts_local[:, 1] + 1
        p = prob[rr, cc] if prob is not None else np.zeros(len(rr), np.float32)
        dw = dist[rr, cc] if dist is not None else np.zeros(len(rr), np.float32)
        return len(rr), float(p.sum()), float(p.min()) if len(p) else 0.0, float(dw.sum())

    def add_piece(u, v, pts_local):
        n, sp, mp, sw = stats(pts_local)
        pieces.append(EdgePiece(u, v, pts_local + np.array([r0, c0]), n, sp, mp, sw))

    for s, e, k, d in g.edges(keys=True, data=True):
        pts = np.asarray(d["pts"], np.int64).reshape(-1, 2)
        ks, ke = key_of[s], key_of[e]
        if len(pts):  # orient from s to e (sknw does not guarantee the order)
            head = member[pts[0, 0], pts[0, 1]]
            tail = member[pts[-1, 0], pts[-1, 1]]
            if (head == e and tail != e) or (head != s and tail == s):
                pts = pts[::-1]
        interior = np.flatnonzero((member[pts[:, 0], pts[:, 1]] < 0) & stitch[pts[:, 0], pts[:, 1]])
        prev_key, prev_i = ks, 0
        for i in interior:  # split at stitch pixels in the middle of the edge
            pr, pc = pts[i]
            key = lin(pr + r0, pc + c0)
            nodes.setdefault(key, (float(pr + r0), float(pc + c0), 1))
            alias[key] = key
            add_piece(prev_key, key, pts[prev_i:i + 1])
            prev_key, prev_i = key, i
        add_piece(prev_key, ke, pts[prev_i:])

    # cross-tile pixel pairs owned by this tile (smaller linear index on our side)
    for pr, pc in np.argwhere(stitch):
        gp = lin(pr + r0, pc + c0)
        for dr, dc in _NB:
            qr, qc = pr + dr, pc + dc
            if 0 <= qr < core.shape[0] and 0 <= qc < core.shape[1]:
                continue
            if not sub[qr + 1, qc + 1]:
                continue
            gq = lin(qr + r0, qc + c0)
            if gp < gq and tile_of(qr + r0, qc + c0) != tile_of(pr + r0, pc + c0):
                pts_local = np.array([[pr, pc], [qr, qc]])
                n, sp, mp, sw = stats(pts_local)
                cross.append(EdgePiece(gp, gq, pts_local + np.array([r0, c0]), n, sp, mp, sw))
    return nodes, pieces, alias, cross


def build_graph(ske_read: Reader, h: int, w: int, tile: int = 2048, prob_read: Reader | None = None,
                dist_read: Reader | None = None) -> nx.MultiGraph:
    """Join per-tile sknw graphs into one MultiGraph (pixel coordinates, row/col).

    Node attrs: ``o`` (row, col) float.  Edge attrs: ``pts`` (N, 2) pixel path from the edge's ``u`` node to its
    ``v`` node (without the node centres), ``n``/``sum_p``/``min_p``/``sum_w`` statistics, ``bridged``.
    """
    def tile_of(r, c):
        return (r // tile, c // tile)

    nodes_acc: dict[int, list] = {}
    pieces: list[EdgePiece] = []
    alias: dict[int, int] = {}
    for r0, r1 in tile_ranges(h, tile):
        for c0, c1 in tile_ranges(w, tile):
            n, p, a, x = _tile_pieces(ske_read, prob_read, dist_read, h, w, r0, r1, c0, c1, tile_of)
            for k, (sr, sc, cnt) in n.items():
                acc = nodes_acc.setdefault(k, [0.0, 0.0, 0])
                acc[0] += sr
                acc[1] += sc
                acc[2] += cnt
            pieces += p
            alias.update(a)
            pieces += x
    g = nx.MultiGraph()
    for k, (sr, sc, cnt) in nodes_acc.items():
        g.add_node(k, o=np.array([sr / cnt, sc / cnt]))
    for e in pieces:
        u, v = alias.get(e.u, e.u), alias.get(e.v, e.v)
        for key in (u, v):
            if key not in g:  # a stitch pixel whose own tile saw it as plain chain pixel
                g.add_node(key, o=np.array([key // w, key % w], float))
        g.add_edge(u, v, pts=e.pts, _from=u, n=e.n, sum_p=e.sum_p, min_p=e.min_p, sum_w=e.sum_w, bridged=False)
    return g
