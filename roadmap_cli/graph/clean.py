"""Cleaning a joined road graph, with tolerances given in pixels (callers convert from metres): degree-2 merging,
junction consolidation, spur pruning, gap bridging guided by the probability raster, small-component removal, and
stable relabelling (as osmnx separates simplification from building)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..tiling import Reader
from .union import KeyUnion


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
    """Length of a polyline in its own units."""
    return float(np.hypot(*np.diff(line, axis=0).T).sum()) if len(line) > 1 else 0.0


def _merge_stats(a: dict, b: dict) -> dict:
    return {"n": a["n"] + b["n"], "sum_p": a["sum_p"] + b["sum_p"], "min_p": min(a["min_p"], b["min_p"]),
            "sum_w": a["sum_w"] + b["sum_w"], "bridged": a.get("bridged", False) or b.get("bridged", False),
            "source": a.get("source", "skeleton")}


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
            if a == n or b == n or da.get("source", "skeleton") != db.get("source", "skeleton"):
                continue  # what the cleanup added stays its own edge
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


def _half_width(d) -> float:
    return d["sum_w"] / d["n"] if d.get("n") else 0.0


def prune_spurs(g: nx.MultiGraph, min_len_px: float, width_ratio: float = 0.0) -> nx.MultiGraph:
    """Remove dead-end edges that hang off a junction (degree >= 3) and are shorter than ``min_len_px`` or than
    ``width_ratio`` times the road width at that junction (the widest other edge there): skeleton spurs grow with
    the road's width."""
    for _ in range(3):
        removed = False
        for u, v, k, d in list(g.edges(keys=True, data=True)):
            if not g.has_edge(u, v, k) or u == v:
                continue
            du, dv = g.degree(u), g.degree(v)
            if not ((du == 1 and dv >= 3) or (dv == 1 and du >= 3)):
                continue
            junction = v if du == 1 else u
            limit = min_len_px
            if width_ratio > 0:
                widths = [2 * _half_width(dd) for a, b, kk, dd in g.edges(junction, keys=True, data=True)
                          if (a, b, kk) != (u, v, k) and (b, a, kk) != (u, v, k)]
                limit = max(limit, width_ratio * max(widths, default=0.0))
            if line_length(edge_line(g, u, v, d)) < limit:
                g.remove_edge(u, v, k)
                g.remove_node(u if du == 1 else v)
                removed = True
        merge_degree2(g)
        if not removed:
            break
    return g


def remove_small_components(g: nx.MultiGraph, min_len_px: float) -> nx.MultiGraph:
    """Drop connected components whose total edge length is below ``min_len_px``."""
    for comp in list(nx.connected_components(g)):
        total = sum(line_length(edge_line(g, u, v, d)) for u, v, d in g.subgraph(comp).edges(data=True))
        if total < min_len_px:
            g.remove_nodes_from(comp)
    return g


def _split_edge(g: nx.MultiGraph, u, v, k, i: int, key: int) -> None:
    """Split edge (u, v, k) at its pixel ``pts[i]`` (counted from its ``_from`` end) into two edges meeting at a new
    node ``key``; statistics are shared in proportion to the pixels on each side."""
    d = g.edges[u, v, k]
    start = d.get("_from", u)
    end = v if start == u else u
    pts = d["pts"]
    g.add_node(key, o=pts[i].astype(float))
    n = max(len(pts), 1)
    for a, b, seg, share in ((start, key, pts[:i], i / n), (key, end, pts[i + 1:], (n - i - 1) / n)):
        g.add_edge(a, b, pts=seg, _from=a, n=max(1, round(d["n"] * share)), sum_p=d["sum_p"] * share,
                   min_p=d["min_p"], sum_w=d["sum_w"] * share, bridged=d.get("bridged", False),
                   source=d.get("source", "skeleton"))
    g.remove_edge(u, v, k)


def _line_probs(seg: np.ndarray, prob_read: Reader, h: int, w: int) -> np.ndarray:
    r0, c0 = seg.min(0)
    r1, c1 = seg.max(0) + 1
    win = prob_read(int(max(r0, 0)), int(min(r1, h)), int(max(c0, 0)), int(min(c1, w))).astype(np.float32)
    rr = np.clip(seg[:, 0] - max(r0, 0), 0, win.shape[0] - 1)
    cc = np.clip(seg[:, 1] - max(c0, 0), 0, win.shape[1] - 1)
    return win[rr, cc]


def _pixel_weight(u, v, d) -> float:
    return min(len(dd["pts"]) + 1 for dd in d.values())


def _follow_probability(seg: np.ndarray, prob_read: Reader, h: int, w: int, margin: int = 6) -> np.ndarray:
    """The bridge's pixel path between its two end pixels along the most road-like way (least cost ``1.05 - p``,
    8-connected) inside the segment's box widened by ``margin``; the straight line where that path is more than
    1.5 times as long."""
    from skimage.graph import route_through_array

    r0, c0 = np.maximum(seg.min(0) - margin, 0)
    r1, c1 = np.minimum(seg.max(0) + margin + 1, [h, w])
    win = prob_read(int(r0), int(r1), int(c0), int(c1)).astype(np.float32)
    a, b = seg[0] - [r0, c0], seg[-1] - [r0, c0]
    if not (np.all(a >= 0) and np.all(a < win.shape) and np.all(b >= 0) and np.all(b < win.shape)):
        return seg
    path, _ = route_through_array(1.05 - np.clip(win, 0, 1), tuple(a), tuple(b), fully_connected=True,
                                  geometric=True)
    path = np.asarray(path, np.int64) + [r0, c0]
    return path if len(path) <= 1.5 * len(seg) else seg


def bridge_gaps(g: nx.MultiGraph, max_gap_px: float, prob_read: Reader | None = None, h: int = 0, w: int = 0,
                max_angle_deg: float = 45.0, min_prob: float = 0.2, to_edges: bool = True,
                detour: float = 0.0, follow: bool = False) -> nx.MultiGraph:
    """Connect each dead end to the nearest point of another piece of the network within ``max_gap_px`` that lies
    ahead of it (``max_angle_deg`` from its direction): a node, or with ``to_edges`` any pixel of an edge (the edge
    is split there: a road that ends against the side of another becomes a T junction).  A point of the dead end's
    own piece qualifies too when ``detour`` > 0 and the way to it along the graph is more than ``detour`` times the
    gap (a road broken in two that still connects far away).  With a probability
    raster, at least 75 % of the samples along the bridge must have probability >= ``min_prob``.  Bridges are
    edges of their own (``source`` "bridge", ``bridged`` True); dead ends are visited in node order."""
    if max_gap_px <= 0:
        return g
    from scipy.spatial import cKDTree

    _normalize_orientation(g)
    if g.number_of_nodes() < 2:
        return g
    comp = {}  # node -> its component id; pieces joined by bridges are unioned in ``pieces``
    for cid, nodes in enumerate(sorted(nx.connected_components(g), key=min)):
        for m in nodes:
            comp[m] = cid
    pieces = KeyUnion()
    find = pieces.find

    # candidate targets: node centres, and (to_edges) edge pixels, looked up through the edge that holds them now
    cand_xy, cand = [], []
    for m in g.nodes:
        cand_xy.append(g.nodes[m]["o"])
        cand.append(("node", m))
    where: dict[tuple, tuple] = {}
    if to_edges:
        for u, v, k, d in g.edges(keys=True, data=True):
            for p in d["pts"]:
                key = (int(p[0]), int(p[1]))
                where[key] = (u, v, k)
                cand_xy.append(p)
                cand.append(("pix", key))
    cand_arr = np.asarray(cand_xy, float)
    tree = cKDTree(cand_arr)

    def target_node(c):
        """The node a candidate stands for now (splitting its edge if it is an edge pixel), or None."""
        kind, ref = c
        if kind == "node":
            return ref if ref in g else None
        u, v, k = where[ref]
        d = g.edges[u, v, k]
        pts = d["pts"]
        i = int(np.flatnonzero((pts[:, 0] == ref[0]) & (pts[:, 1] == ref[1]))[0])
        if i == 0:
            return d.get("_from", u)
        if i == len(pts) - 1:
            return v if d.get("_from", u) == u else u
        key = -(ref[0] * (w or 1 << 31) + ref[1] + 1)  # never a raster-built key (those are >= 0)
        start = d.get("_from", u)
        _split_edge(g, u, v, k, i, key)
        del where[ref]  # the pixel is a node now
        comp[key] = comp[start]
        for a, b, kk, dd in g.edges(key, keys=True, data=True):
            for p in dd["pts"]:
                where[(int(p[0]), int(p[1]))] = (a, b, kk)
        return key

    for n in list(g.nodes):
        if n not in g or g.degree(n) != 1:
            continue
        (_, x, k, d), = list(g.edges(n, keys=True, data=True))
        if d.get("source") == "bridge":
            continue
        line = edge_line(g, n, x, d) if d.get("_from", n) == n else edge_line(g, x, n, d)[::-1]
        back = line[min(len(line) - 1, 10)]
        direction = g.nodes[n]["o"] - back
        if not np.any(direction):
            continue
        direction = direction / np.linalg.norm(direction)
        here = g.nodes[n]["o"]
        best = None
        along = None
        # geometry first, for all candidates in reach at once: ahead of the dead end (within the angle), nearest
        # first (ties by index); then the graph checks, on those only, until one passes
        idx = np.asarray(tree.query_ball_point(here, max_gap_px), np.int64)
        vecs = cand_arr[idx] - here
        dists = np.sqrt(vecs[:, 0] * vecs[:, 0] + vecs[:, 1] * vecs[:, 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            angle = np.degrees(np.arccos(np.clip((vecs[:, 0] * direction[0] + vecs[:, 1] * direction[1]) / dists,
                                                 -1, 1)))
        ahead = np.flatnonzero((dists != 0) & (angle <= max_angle_deg))
        for t in ahead[np.lexsort((idx[ahead], dists[ahead]))]:
            j = int(idx[t])
            kind, ref = cand[j]
            if kind == "node":
                if ref not in g or ref == n:
                    continue
                other = comp[ref]
            else:
                if ref not in where or (x in where[ref][:2] and n in where[ref][:2]):
                    continue
                other = comp[where[ref][0]]
            if find(other) == find(comp[n]):  # the same piece: only where the way round is long
                if detour <= 0:
                    continue
                if along is None:
                    along = nx.single_source_dijkstra_path_length(g, n, cutoff=detour * max_gap_px,
                                                                  weight=_pixel_weight)
                limit = detour * float(dists[t])
                if kind == "node":
                    if along.get(ref, np.inf) <= limit:
                        continue
                else:
                    a_, b_, k_ = where[ref]
                    dd = g.edges[a_, b_, k_]
                    start = dd.get("_from", a_)
                    end = b_ if start == a_ else a_
                    pts = dd["pts"]
                    i = int(np.flatnonzero((pts[:, 0] == ref[0]) & (pts[:, 1] == ref[1]))[0])
                    if min(along.get(start, np.inf) + i + 1, along.get(end, np.inf) + len(pts) - i) <= limit:
                        continue
            best = (float(dists[t]), j, vecs[t])
            break
        if best is None:
            continue
        dist, j, vec = best
        a = here
        b = a + vec
        steps = max(2, int(math.ceil(dist)) + 1)
        seg = np.round(np.linspace(a, b, steps)).astype(np.int64)
        probs = np.zeros(len(seg), np.float32)
        if prob_read is not None:
            if follow:
                seg = _follow_probability(seg, prob_read, h, w)
            probs = _line_probs(seg, prob_read, h, w)
            if np.percentile(probs, 25) < min_prob:  # most of the bridge must look like road
                continue
        m = target_node(cand[j])
        if m is None:
            continue
        g.add_edge(n, m, pts=seg[1:-1].astype(np.int32), _from=n, n=len(seg), sum_p=float(probs.sum()),
                   min_p=float(probs.min()), sum_w=0.0, bridged=True, source="bridge")
        pieces.union(comp[m], comp[n])
    return g


@dataclass
class CleanOptions:
    """Cleanup tolerances in metres (``gsd``: metres per pixel of the graph's raster).  The defaults were chosen on
    the bundled model's Massachusetts validation tiles only (benchmarks/bench_topology.py, BENCHMARKS.md)."""

    gsd: float = 1.0                # metres per pixel of the graph's raster
    min_spur_m: float = 10.0
    min_component_m: float = 20.0
    junction_m: float = 3.0
    bridge_m: float = 45.0           # dead ends are bridged over gaps up to this long ...
    bridge_angle_deg: float = 30.0   # ... to a point this close to straight ahead
    bridge_min_prob: float = 0.0     # most of a bridge must have at least this probability (0: geometry only)
    join_edges: bool = True          # dead ends may join the side of an edge, not only a node
    bridge_detour: float = 2.0       # ... and their own piece where the way round is this many times longer
    bridge_follow: bool = True       # a bridge follows the probability instead of a straight line
    spur_width_ratio: float = 2.0    # spurs shorter than this many road widths are pruned too (0 = off)


def clean_graph(g: nx.MultiGraph, opts: CleanOptions, prob_read: Reader | None = None, h: int = 0,
                w: int = 0) -> nx.MultiGraph:
    """The cleanup sequence with ``opts`` tolerances in metres; returns a relabelled graph with ``line`` per
    edge."""
    px = 1.0 / opts.gsd
    merge_degree2(g)
    consolidate_junctions(g, opts.junction_m * px)
    merge_degree2(g)
    prune_spurs(g, opts.min_spur_m * px, opts.spur_width_ratio)
    bridge_gaps(g, opts.bridge_m * px, prob_read, h, w, opts.bridge_angle_deg, opts.bridge_min_prob,
                opts.join_edges, opts.bridge_detour, opts.bridge_follow)
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
                   bridged=bool(d.get("bridged", False)), source=d.get("source", "skeleton"))
    return h


