"""Road graph from a road mask: tiled skeleton -> per-tile sknw graphs -> exact join -> cleanup -> export.

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

import logging
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import networkx as nx
import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

log = logging.getLogger(__name__)

Reader = Callable[[int, int, int, int], np.ndarray]  # read(r0, r1, c0, c1) -> array, window inside the raster


class ScratchRaster(Protocol):
    """A raster the size of the scene that the graph stage writes and reads back by windows (on disk for scenes
    larger than memory)."""

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray: ...

    def write(self, r0: int, c0: int, a: np.ndarray) -> None: ...


def array_reader(a: np.ndarray) -> Reader:
    return lambda r0, r1, c0, c1: a[r0:r1, c0:c1]


def _read_padded(read: Reader, h: int, w: int, r0: int, r1: int, c0: int, c1: int, fill=0) -> np.ndarray:
    """Read [r0, r1) x [c0, c1), which may extend outside the raster (filled with ``fill``)."""
    rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    data = read(rr0, rr1, cc0, cc1)
    if (rr0, rr1, cc0, cc1) == (r0, r1, c0, c1):
        return data
    out = np.full((r1 - r0, c1 - c0), fill, dtype=data.dtype)
    out[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = data
    return out


def tile_ranges(size: int, tile: int) -> list[tuple[int, int]]:
    return [(s, min(s + tile, size)) for s in range(0, size, tile)]


def skeletonize_tiled(read_mask: Reader, h: int, w: int, write: Callable[[int, int, np.ndarray], None],
                      tile: int = 2048, halo: int = 64) -> None:
    """Skeletonize a large mask tile by tile (core + halo); ``write(r0, c0, core_skeleton)``."""
    for r0, r1 in tile_ranges(h, tile):
        for c0, c1 in tile_ranges(w, tile):
            m = _read_padded(read_mask, h, w, r0 - halo, r1 + halo, c0 - halo, c1 + halo).astype(bool)
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

    sub = _read_padded(ske_read, h, w, r0 - 1, r1 + 1, c0 - 1, c1 + 1).astype(bool)
    core = sub[1:-1, 1:-1]
    nodes, pieces, alias, cross = {}, [], {}, []
    if not core.any():
        return nodes, pieces, alias, cross
    prob = (_read_padded(prob_read, h, w, r0 - 1, r1 + 1, c0 - 1, c1 + 1).astype(np.float32)
            if prob_read else None)
    dist = (_read_padded(dist_read, h, w, r0 - 1, r1 + 1, c0 - 1, c1 + 1).astype(np.float32)
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


# -------------------------------------------------------------------------------------------------------- cleanup

def edge_line(g: nx.MultiGraph, u, v, d) -> np.ndarray:
    """Polyline (row, col) of an edge from node u's centre through its pixels to node v's centre."""
    return np.vstack([g.nodes[u]["o"][None], _oriented_pts(d, u).astype(float), g.nodes[v]["o"][None]])


def _oriented_pts(d, start) -> np.ndarray:
    """The edge's pixel path starting at node ``start`` (``_from`` records where ``pts`` starts)."""
    return d["pts"] if d.get("_from", start) == start else d["pts"][::-1]


def _normalize_orientation(g: nx.MultiGraph) -> None:
    """Record for each edge which node its ``pts`` start at (``_from``)."""
    for u, v, k, d in g.edges(keys=True, data=True):
        if "_from" in d:
            continue
        pts = d["pts"]
        if len(pts) == 0:
            d["_from"] = u
            continue
        ou, ov = g.nodes[u]["o"], g.nodes[v]["o"]
        a = np.hypot(*(pts[0] - ou)) + np.hypot(*(pts[-1] - ov))
        b = np.hypot(*(pts[0] - ov)) + np.hypot(*(pts[-1] - ou))
        d["_from"] = u if a <= b else v


def line_length(line: np.ndarray) -> float:
    return float(np.hypot(*np.diff(line, axis=0).T).sum()) if len(line) > 1 else 0.0


def _merge_stats(a: dict, b: dict) -> dict:
    return {"n": a["n"] + b["n"], "sum_p": a["sum_p"] + b["sum_p"], "min_p": min(a["min_p"], b["min_p"]),
            "sum_w": a["sum_w"] + b["sum_w"], "bridged": a.get("bridged", False) or b.get("bridged", False)}


def merge_degree2(g: nx.MultiGraph) -> nx.MultiGraph:
    """Remove every node with exactly two edge ends that is not a self-loop, joining its two edges."""
    _normalize_orientation(g)
    changed = True
    while changed:
        changed = False
        for n in list(g.nodes):
            if n not in g or g.degree(n) != 2:
                continue
            es = list(g.edges(n, keys=True, data=True))
            if len(es) != 2 or any(a == b for a, b, _, _ in es):
                continue
            (_, a, ka, da), (_, b, kb, db) = es
            if a == n or b == n:
                continue
            # path a -> n -> b
            pa = _oriented_pts(da, a)
            pb = _oriented_pts(db, n)
            pts = np.vstack([pa, pb]) if len(pa) and len(pb) else (pa if len(pa) else pb)
            g.remove_edge(n, a, ka)
            g.remove_edge(n, b, kb)
            g.remove_node(n)
            g.add_edge(a, b, pts=pts, _from=a, **_merge_stats(da, db))
            changed = True
    return g


def consolidate_junctions(g: nx.MultiGraph, tol_px: float) -> nx.MultiGraph:
    """Contract edges shorter than ``tol_px`` between two nodes of degree >= 3 (split or clustered junctions)."""
    _normalize_orientation(g)
    changed = True
    while changed:
        changed = False
        for u, v, k, d in list(g.edges(keys=True, data=True)):
            if u == v or u not in g or v not in g or not g.has_edge(u, v, k):
                continue
            if g.degree(u) < 3 or g.degree(v) < 3:
                continue
            if line_length(edge_line(g, u, v, d)) >= tol_px:
                continue
            ou, ov = g.nodes[u]["o"], g.nodes[v]["o"]
            g.nodes[u]["o"] = (ou + ov) / 2
            while g.has_edge(u, v):
                g.remove_edge(u, v)
            for _, x, kk, dd in list(g.edges(v, keys=True, data=True)):
                pts = _oriented_pts(dd, v)
                g.remove_edge(v, x, kk)
                other = u if x == v else x
                g.add_edge(u, other, **{**dd, "pts": pts, "_from": u})
            g.remove_node(v)
            changed = True
            break
    return g


def prune_spurs(g: nx.MultiGraph, min_len_px: float) -> nx.MultiGraph:
    """Remove dead-end edges shorter than ``min_len_px`` that hang off a junction (degree >= 3)."""
    for _ in range(3):
        removed = False
        for u, v, k, d in list(g.edges(keys=True, data=True)):
            if not g.has_edge(u, v, k) or u == v:
                continue
            du, dv = g.degree(u), g.degree(v)
            if not ((du == 1 and dv >= 3) or (dv == 1 and du >= 3)):
                continue
            if line_length(edge_line(g, u, v, d)) < min_len_px:
                g.remove_edge(u, v, k)
                g.remove_node(u if du == 1 else v)
                removed = True
        merge_degree2(g)
        if not removed:
            break
    return g


def remove_small_components(g: nx.MultiGraph, min_len_px: float) -> nx.MultiGraph:
    for comp in list(nx.connected_components(g)):
        total = sum(line_length(edge_line(g, u, v, d)) for u, v, d in g.subgraph(comp).edges(data=True))
        if total < min_len_px:
            g.remove_nodes_from(comp)
    return g


def bridge_gaps(g: nx.MultiGraph, max_gap_px: float, prob_read: Reader | None = None, h: int = 0, w: int = 0,
                max_angle_deg: float = 45.0, min_prob: float = 0.2) -> nx.MultiGraph:
    """Connect dead ends to the nearest node within ``max_gap_px`` that lies ahead of the dead end (angle limit)
    and, with a probability raster, along a line at least 75 % of whose samples have probability >= ``min_prob``."""
    if max_gap_px <= 0:
        return g
    from scipy.spatial import cKDTree

    _normalize_orientation(g)
    keys = list(g.nodes)
    if len(keys) < 2:
        return g
    xy = np.array([g.nodes[k]["o"] for k in keys])
    tree = cKDTree(xy)
    comp, parent = {}, []
    for cid, nodes in enumerate(nx.connected_components(g)):
        parent.append(cid)
        for m in nodes:
            comp[m] = cid

    def find(c):  # union-find over component ids
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    done = set()
    for n in keys:
        if n not in g or g.degree(n) != 1 or n in done:
            continue
        (_, x, k, d), = list(g.edges(n, keys=True, data=True))
        line = edge_line(g, n, x, d) if d.get("_from", n) == n else edge_line(g, x, n, d)[::-1]
        back = line[min(len(line) - 1, 10)]
        direction = g.nodes[n]["o"] - back
        if not np.any(direction):
            continue
        direction = direction / np.linalg.norm(direction)
        best, best_d = None, None
        for j in tree.query_ball_point(g.nodes[n]["o"], max_gap_px):
            m = keys[j]
            if m == n or m not in g or find(comp[m]) == find(comp[n]):  # only join separate pieces
                continue
            vec = g.nodes[m]["o"] - g.nodes[n]["o"]
            dist = float(np.linalg.norm(vec))
            if dist == 0 or np.degrees(np.arccos(np.clip(vec @ direction / dist, -1, 1))) > max_angle_deg:
                continue
            if best_d is None or dist < best_d:
                best, best_d = m, dist
        if best is None:
            continue
        a, b = g.nodes[n]["o"], g.nodes[best]["o"]
        steps = max(2, int(math.ceil(best_d)) + 1)
        seg = np.round(np.linspace(a, b, steps)).astype(np.int64)
        probs = np.zeros(len(seg), np.float32)
        if prob_read is not None:
            r0, c0 = seg.min(0)
            r1, c1 = seg.max(0) + 1
            win = prob_read(int(max(r0, 0)), int(min(r1, h)), int(max(c0, 0)), int(min(c1, w))).astype(np.float32)
            rr = np.clip(seg[:, 0] - max(r0, 0), 0, win.shape[0] - 1)
            cc = np.clip(seg[:, 1] - max(c0, 0), 0, win.shape[1] - 1)
            probs = win[rr, cc]
            if np.percentile(probs, 25) < min_prob:  # most of the bridge must look like road
                continue
        g.add_edge(n, best, pts=seg[1:-1], _from=n, n=len(seg), sum_p=float(probs.sum()),
                   min_p=float(probs.min()), sum_w=0.0, bridged=True)
        done.update({n, best})
        parent[find(comp[best])] = find(comp[n])
    return g


@dataclass
class CleanOptions:
    gsd: float = 1.0                # metres per pixel of the graph's raster
    min_spur_m: float = 10.0
    min_component_m: float = 20.0
    junction_m: float = 3.0
    bridge_m: float = 15.0
    bridge_angle_deg: float = 45.0


def clean_graph(g: nx.MultiGraph, opts: CleanOptions, prob_read: Reader | None = None, h: int = 0,
                w: int = 0) -> nx.MultiGraph:
    px = 1.0 / opts.gsd
    merge_degree2(g)
    consolidate_junctions(g, opts.junction_m * px)
    merge_degree2(g)
    prune_spurs(g, opts.min_spur_m * px)
    bridge_gaps(g, opts.bridge_m * px, prob_read, h, w, opts.bridge_angle_deg)
    merge_degree2(g)
    remove_small_components(g, opts.min_component_m * px)
    return relabel(g)


def relabel(g: nx.MultiGraph) -> nx.MultiGraph:
    """Stable ids: nodes numbered in raster order of their centres, edges by (u, v, first pixel)."""
    order = sorted(g.nodes, key=lambda k: (round(float(g.nodes[k]["o"][0]), 3), round(float(g.nodes[k]["o"][1]), 3)))
    mapping = {k: i for i, k in enumerate(order)}
    h = nx.MultiGraph()
    for k in order:
        h.add_node(mapping[k], **g.nodes[k])
    edges = []
    for u, v, d in g.edges(data=True):
        line = edge_line(g, u, v, d)
        a, b = mapping[u], mapping[v]
        if (a, tuple(line[0])) > (b, tuple(line[-1])):
            a, b, line = b, a, line[::-1]
        edges.append((a, b, line, d))
    edges.sort(key=lambda e: (e[0], e[1], tuple(np.round(e[2][len(e[2]) // 2], 3))))
    for i, (a, b, line, d) in enumerate(edges):
        h.add_edge(a, b, key=i, line=line, n=d["n"], sum_p=d["sum_p"], min_p=d["min_p"], sum_w=d["sum_w"],
                   bridged=bool(d.get("bridged", False)))
    return h


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
        m = _read_padded(read_mask, h, w, r0 - halo, r1 + halo, c0 - halo, c1 + halo)
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
