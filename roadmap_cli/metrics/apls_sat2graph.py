"""APLS as Sat2Graph, RNGDet++ and SAM-Road compute it (their Go ``metrics/apls/main.go``), written from the rules in
``shared/spec/sat2graph-metrics.md`` §A (section numbers below refer to it).

It differs from SpaceNet's APLS (:mod:`roadmap_cli.metrics.apls`) in every step: edges are densified into hops of
at most 2 m; control points are junctions, dead ends and points every ~25 hops on long chains, inside a margin and
de-duplicated on a 2 m grid; each control point snaps one-to-one to the nearest free vertex of the other graph within
10 m; all unordered pairs are scored, matched pairs only when the ground-truth path is longer than 100 m, pairs with
an unmatched point always (score 1); the two directions are averaged arithmetically.

Coordinates are the Go program's: metres ``(x, y)`` = (south from the top edge, east from the left edge) turned into
its fake latitude / longitude (111 111 m per degree around 41 N, 71 W), so densification counts, the de-duplication
key, the 2 m cells and the truncated-centimetre path weights round as the Go program's do.

Determinism (the Go program iterates Go maps, whose order is random, §A.10): here a vertex's neighbours are walked in
ascending id order and control points are snapped in ascending id order; equal-distance snap candidates are taken in
the k-d tree's order.  The cross-graph coverage BFS of §A.5 rule 5 is kept (``faithful=True``, needed to match
published numbers); ``faithful=False`` runs the evidently intended BFS over the graph itself.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

M_PER_DEG = 111111.0
COS41 = math.cos(math.radians(41.0))
COS41_BOUNDS = math.cos(41 * 3.1415926 / 180)  # the Go program's in-bounds test uses this truncated pi (l.79-93)


@dataclass(frozen=True)
class GoParams:
    """§A.3: the default (2048 m tile) preset and the small ones."""

    interval_1: int = 37  # a chain needs more than this many vertices for interior control points
    interval_2: float = 25.0  # control point spacing in hops
    min_distance: float = 100.0  # matched pairs count only when the first graph's path is longer (m)
    prop_step: int = 4  # hops blocked around a snapped vertex
    margin: float = 100.0  # control points lie more than this inside every edge of the region (m)


PRESETS = {"default": GoParams(), "small": GoParams(22, 15.0, 30.0, 3, 30.0),
           "spacenet": GoParams(15, 10.0, 30.0, 3, 30.0)}


def fake_latlon(x: float, y: float) -> tuple[float, float]:
    """Metres (south, east) from the region's top-left -> the Go program's (lat, lon) (``convert.py``)."""
    return 41.0 - x / M_PER_DEG, -71.0 + (y / M_PER_DEG) / COS41


def dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    """§A.2: metres between two (lat, lon), with the first point's latitude in the cosine (slightly asymmetric)."""
    return math.sqrt(((a[0] - b[0]) * M_PER_DEG) ** 2
                     + ((a[1] - b[1]) * M_PER_DEG * math.cos(math.radians(a[0]))) ** 2)


class DenseGraph:
    """§A.4: the densified graph; vertices keyed by ``%.7f_%.7f`` of (lat, lon), ids in order of first use."""

    def __init__(self):
        self.coords: list[tuple[float, float]] = []
        self.ids: dict[str, int] = {}
        self.adj: list[set[int]] = []

    def vertex(self, p: tuple[float, float]) -> int:
        """Id of the vertex at ``p`` (points within ~1 cm share one)."""
        key = "%.7f_%.7f" % p
        if key not in self.ids:
            self.ids[key] = len(self.coords)
            self.coords.append(p)
            self.adj.append(set())
        return self.ids[key]

    def add_segment(self, p: tuple[float, float], q: tuple[float, float]) -> None:
        """An undirected segment (duplicates merge; a self-loop counts toward the degree)."""
        a, b = self.vertex(p), self.vertex(q)
        self.adj[a].add(b)
        self.adj[b].add(a)

    @property
    def n(self) -> int:
        """Number of vertices."""
        return len(self.coords)

    def degree(self, v: int) -> int:
        """Number of distinct neighbours (a self-loop counts once)."""
        return len(self.adj[v])


def densify(edges: list[tuple[tuple[float, float], tuple[float, float]]]) -> DenseGraph:
    """§A.4: each edge longer than 3 m becomes ``floor(d/2) + 1`` equal pieces, in edge order."""
    g = DenseGraph()
    for p1, p2 in edges:
        d = dist(p1, p2)
        if d > 3.0:
            n = int(math.floor(d / 2)) + 1
            pts = [(p1[0] + (p2[0] - p1[0]) * i / n, p1[1] + (p2[1] - p1[1]) * i / n) for i in range(n + 1)]
            for a, b in zip(pts[:-1], pts[1:]):
                g.add_segment(a, b)
        else:
            g.add_segment(p1, p2)
    return g


def _bfs(adj: list[set[int]], start: int, hops: int):
    """Vertices within ``hops`` steps of ``start`` (``start`` included); nothing if it is not a vertex."""
    if start >= len(adj):
        return [start]
    seen, queue = {start}, deque([(start, 0)])
    while queue:
        v, d = queue.popleft()
        if d == hops:
            continue
        for w in adj[v]:
            if w not in seen:
                seen.add(w)
                queue.append((w, d + 1))
    return seen


def control_points(a: DenseGraph, b: DenseGraph, params: GoParams, region: tuple[float, float],
                   faithful: bool = True) -> list[int]:
    """§A.5: the control points of ``a`` in the order they are found (``b`` only matters for the faithful coverage
    BFS).  ``region`` is the (south, east) extent in metres of the in-bounds test."""
    visited: set[int] = set()
    cells: set[tuple[int, int]] = set()
    covered = np.zeros(a.n, bool)
    cps: dict[int, None] = {}  # insertion-ordered set

    def in_bounds(v: int) -> bool:
        lat, lon = a.coords[v]
        x, y = (41.0 - lat) * M_PER_DEG, (lon + 71.0) * M_PER_DEG * COS41_BOUNDS
        m = params.margin
        return m < x < region[0] - m and m < y < region[1] - m

    def cell(v: int) -> tuple[int, int]:
        lat, lon = a.coords[v]
        return int(lat * M_PER_DEG / 2), int(lon * M_PER_DEG / 2)

    def cover(c: int) -> None:
        graph = b.adj if faithful else a.adj  # the Go program walks the other graph with this graph's id
        for i in _bfs(graph, c, 4):
            if i < a.n:
                covered[i] = True

    for v in range(a.n):
        if a.degree(v) == 2:
            continue
        for m in sorted(a.adj[v]):
            if m in visited:
                continue
            chain, prev, cur = [v, m], v, m
            while a.degree(cur) == 2:
                nxt = next(iter(a.adj[cur] - {prev}), None)
                if nxt is None or nxt == cur:  # a two-vertex cycle, or a self-loop: stop
                    break
                chain.append(nxt)
                prev, cur = cur, nxt
                if cur == v:
                    break
            size = len(chain)
            if size > params.interval_1:
                n = int(math.floor(size / params.interval_2)) + 1
                for i in range(1, n):
                    c = chain[int(math.floor(size * i / n))]
                    if in_bounds(c) and not covered[c] and cell(c) not in cells:
                        cps[c] = None
                        cells.add(cell(c))
                        cover(c)
            visited.update(chain)
        if in_bounds(v) and (not covered[v] or a.degree(v) == 1) and cell(v) not in cells:
            cps[v] = None
            cells.add(cell(v))
            cover(v)
    return list(cps)


def snap(cps: list[int], a: DenseGraph, b: DenseGraph, params: GoParams) -> dict[int, int]:
    """§A.6: each control point (ascending id) to the first of its 10 nearest ``b`` vertices (raw-degree distance)
    that is free and within 10 m; the ``prop_step`` hops around a match are then blocked.  -1 = unmatched."""
    match = {c: -1 for c in cps}
    if not b.n or not cps:
        return match
    tree = cKDTree(np.asarray(b.coords))
    blocked = np.zeros(b.n, bool)
    k = min(10, b.n)
    for c in sorted(cps):
        _, idx = tree.query(a.coords[c], k=k)
        for j in np.atleast_1d(idx):
            j = int(j)
            if not blocked[j] and dist(b.coords[j], a.coords[c]) < 10.0:
                match[c] = j
                for w in _bfs(b.adj, j, params.prop_step):
                    blocked[w] = True
                break
    return match


def _csgraph(g: DenseGraph):
    """Directed sparse matrix of truncated-centimetre weights (§A.7; zero weights kept as a tiny one)."""
    rows, cols, w = [], [], []
    for u in range(g.n):
        for v in g.adj[u]:
            if u != v:
                rows.append(u)
                cols.append(v)
                w.append(max(int(dist(g.coords[u], g.coords[v]) * 100), 1e-6))
    return coo_matrix((w, (rows, cols)), shape=(g.n, g.n)).tocsr()


def one_way(a: DenseGraph, b: DenseGraph, params: GoParams, region: tuple[float, float], faithful: bool = True,
            block: int = 256) -> float:
    """§A.8: 1 - mean pair score over the counted pairs of ``a``'s control points (NaN when none is counted)."""
    cps = sorted(control_points(a, b, params, region, faithful))
    match = snap(cps, a, b, params)
    if len(cps) < 2:
        return float("nan")
    cp_arr = np.asarray(cps)
    m_arr = np.asarray([match[c] for c in cps])
    ga, gb = _csgraph(a), _csgraph(b) if b.n else None
    total, count = 0.0, 0
    for start in range(0, len(cps), block):
        rows = np.arange(start, min(start + block, len(cps)))
        da = dijkstra(ga, directed=True, indices=cp_arr[rows])[:, cp_arr] / 100.0  # (r, all cps) metres
        da[~np.isfinite(da)] = -1.0
        upper = np.arange(len(cps))[None, :] > rows[:, None]  # unordered pairs c1 < c2
        missing = (m_arr[rows][:, None] < 0) | (m_arr[None, :] < 0)
        total += float((upper & missing).sum())
        count += int((upper & missing).sum())
        matched_rows = rows[m_arr[rows] >= 0]
        if len(matched_rows) and gb is not None:
            db = dijkstra(gb, directed=True, indices=m_arr[matched_rows])
            db = db[:, np.where(m_arr >= 0, m_arr, 0)] / 100.0
            db[~np.isfinite(db)] = 0.0  # no path in the other graph: L' = 0
            d1 = da[np.searchsorted(rows, matched_rows)]
            sel = (upper[np.searchsorted(rows, matched_rows)] & (m_arr[None, :] >= 0) & (d1 > params.min_distance))
            with np.errstate(divide="ignore", invalid="ignore"):
                pen = np.minimum(1.0, np.abs(d1 - db) / d1)
            total += float(pen[sel].sum())
            count += int(sel.sum())
    return float("nan") if count == 0 else 1.0 - total / count


def lines_to_edges(lines, origin: tuple[float, float]) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """LineStrings in a metric CRS (easting, northing) -> Go edges between consecutive vertices, in fake lat/lon;
    ``origin`` is the region's top-left (min easting, max northing)."""
    edges = []
    for ln in lines:
        parts = list(ln.geoms) if hasattr(ln, "geoms") else [ln]
        for part in parts:
            pts = [fake_latlon(origin[1] - y, x - origin[0]) for x, y in part.coords]
            edges += list(zip(pts[:-1], pts[1:]))
    return edges


def apls_sat2graph(gt_lines, prop_lines, preset: str = "default", faithful: bool = True) -> dict:
    """The Sat2Graph-family APLS of two sets of LineStrings in metres: ``apls`` (arithmetic mean of the two
    directions; NaN when a direction counts no pair, as in Go), ``gt_to_prop``, ``prop_to_gt``.  The region of the
    in-bounds test is the bounding box of both inputs."""
    from shapely.geometry import MultiLineString

    params = PRESETS[preset]
    both = [ln for ln in list(gt_lines) + list(prop_lines) if ln is not None and not ln.is_empty]
    if not both:
        return {"apls": float("nan"), "gt_to_prop": float("nan"), "prop_to_gt": float("nan")}
    x0, y0, x1, y1 = MultiLineString([c for ln in both for c in
                                      (ln.geoms if hasattr(ln, "geoms") else [ln])]).bounds
    origin, region = (x0, y1), (y1 - y0, x1 - x0)
    g = densify(lines_to_edges(gt_lines, origin))
    p = densify(lines_to_edges(prop_lines, origin))
    a = one_way(g, p, params, region, faithful)
    b = one_way(p, g, params, region, faithful)
    return {"apls": (a + b) / 2, "gt_to_prop": a, "prop_to_gt": b}
