"""Cleaning a joined road graph, with tolerances given in pixels (callers convert from metres): degree-2 merging,
junction consolidation, spur pruning, gap bridging guided by the probability raster, small-component removal, and
stable relabelling (as osmnx separates simplification from building)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..tiling import Reader


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
    """Drop connected components whose total edge length is below ``min_len_px``."""
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
    """Cleanup tolerances in metres (``gsd``: metres per pixel of the graph's raster)."""

    gsd: float = 1.0                # metres per pixel of the graph's raster
    min_spur_m: float = 10.0
    min_component_m: float = 20.0
    junction_m: float = 3.0
    bridge_m: float = 15.0
    bridge_angle_deg: float = 45.0


def clean_graph(g: nx.MultiGraph, opts: CleanOptions, prob_read: Reader | None = None, h: int = 0,
                w: int = 0) -> nx.MultiGraph:
    """The cleanup sequence with ``opts`` tolerances in metres; returns a relabelled graph with ``line`` per
    edge."""
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


