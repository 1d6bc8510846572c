"""APLS as Sat2Graph, RNGDet++ and SAM-Road compute it (their Go ``metrics/apls/main.go``), written from the rules in
``shared/spec/sat2graph-metrics.md`` §A (section numbers below refer to it).

It differs from SpaceNet's APLS (:mod:`roadmap_cli.metrics.apls`) in every step: edges are densified into hops of
at most 2 m; control points are junctions, dead ends and points every ~25 hops on long chains, inside a margin and
de-duplicated on a 2 m grid; each control point snaps one-to-one to the nearest free vertex of the other graph within
10 m; all unordered pairs are scored, matched pairs only when the ground-truth path is longer than 100 m, pairs with
an unmatched point always (score 1); the two directions are averaged arithmetically.

The frame is SAM-Road's (§A.1, §A.11): the inputs become a graph pickle of whole-metre vertex keys (row, col) =
(south from the tile's top edge, east from its left edge; the ``spacenet`` preset counts rows north from the bottom edge,
as SAM-Road's SpaceNet predictions and labels are saved as ``(400 - row, col)``), rounded as Python's ``round`` does,
with vertices in order of first appearance; ``convert.py``'s edge order and fake latitude / longitude (111 111 m per
degree around 41 N, 71 W) follow, so densification counts, the de-duplication key, the 2 m cells and the
truncated-centimetre path weights round as the Go program's do.  The in-bounds test is the Go program's: control
points lie more than ``margin`` inside a square of ``region`` metres (2048 m default, 352 m small / spacenet) measured
from the frame's origin, the tile's corner when it is known, else the corner of the union of both inputs.  On a tile
smaller than the region the far margins are never applied, as in Go.

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
COS41 = math.cos(math.radians(41.0))  # convert.py's
COS41_BOUNDS = math.cos(41.0 / 180.0 * 3.1415926)  # the Go program's in-bounds test uses this truncated pi (l.79-93)


@dataclass(frozen=True)
class GoParams:
    """§A.3: the default (2048 m tile) preset and the small ones."""

    interval_1: int = 37  # a chain needs more than this many vertices for interior control points
    interval_2: float = 25.0  # control point spacing in hops
    min_distance: float = 100.0  # matched pairs count only when the first graph's path is longer (m)
    prop_step: int = 4  # hops blocked around a snapped vertex
    margin: float = 100.0  # control points lie more than this inside every edge of the region (m)
    region: float = 2048.0  # side of the square of the in-bounds test, from the frame's origin (m)
    rows_up: bool = False  # rows counted north from the tile's bottom edge (SAM-Road's SpaceNet files: 400 - row)


PRESETS = {"default": GoParams(),  # Sat2Graph / SAM-Road / RNGDet++ CityScale: 2048 m tiles at 1 m
           "small": GoParams(22, 15.0, 30.0, 3, 30.0, 352.0),  # the Go program's small-tile switch (Sat2Graph's copy)
           "spacenet": GoParams(15, 10.0, 30.0, 3, 30.0, 352.0, rows_up=True)}  # SAM-Road's SpaceNet copy and files


def fake_latlon(x: float, y: float) -> tuple[float, float]:
    """Metres (south, east) from the region's top-left -> the Go program's (lat, lon) (``convert.py``)."""
    return 41.0 - x / M_PER_DEG, -71.0 + (y / M_PER_DEG) / COS41


def dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    """§A.2: metres between two (lat, lon), with the first point's latitude in the cosine (slightly asymmetric);
    the Go program's float operations."""
    x = (a[0] - b[0]) * M_PER_DEG
    y = (a[1] - b[1]) * M_PER_DEG * math.cos(a[0] / 360.0 * 2.0 * math.pi)
    return math.sqrt(x * x + y * y)


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
    """§A.4: each edge longer than 3 m becomes ``floor(d/2) + 1`` equal pieces, in edge order (points interpolated
    as the Go program does, ``p1 (1 - a) + p2 a``, the ends exact)."""
    g = DenseGraph()
    for p1, p2 in edges:
        d = dist(p1, p2)
        if d > 3.0:
            n = int(d / 2.0) + 1
            pts = [p1] + [(p1[0] * (1 - i / n) + p2[0] * (i / n), p1[1] * (1 - i / n) + p2[1] * (i / n))
                          for i in range(1, n)] + [p2]
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


def in_bounds(p: tuple[float, float], params: GoParams) -> bool:
    """§A.5 (a), ``GPSInBound``: more than ``margin`` inside the ``region`` square from the frame's origin (41 N,
    71 W), strict, in the Go program's float operations."""
    lat2 = 41.0 - params.region / M_PER_DEG
    lon2 = -71.0 + params.region / M_PER_DEG / COS41_BOUNDS
    m_lat, m_lon = params.margin / M_PER_DEG, params.margin / M_PER_DEG / COS41_BOUNDS
    return lat2 + m_lat < p[0] < 41.0 - m_lat and -71.0 + m_lon < p[1] < lon2 - m_lon


def control_points(a: DenseGraph, b: DenseGraph, params: GoParams, faithful: bool = True) -> list[int]:
    """§A.5: the control points of ``a`` in the order they are found (``b`` only matters for the faithful coverage
    BFS)."""
    visited: set[int] = set()
    cells: set[tuple[int, int]] = set()
    covered = np.zeros(a.n, bool)
    cps: dict[int, None] = {}  # insertion-ordered set
    inside = [in_bounds(p, params) for p in a.coords]

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
                    if inside[c] and not covered[c] and cell(c) not in cells:
                        cps[c] = None
                        cells.add(cell(c))
                        cover(c)
            visited.update(chain)
        if inside[v] and (not covered[v] or a.degree(v) == 1) and cell(v) not in cells:
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


def one_way(a: DenseGraph, b: DenseGraph, params: GoParams, faithful: bool = True, block: int = 256) -> float:
    """§A.8: 1 - mean pair score over the counted pairs of ``a``'s control points (NaN when none is counted)."""
    cps = sorted(control_points(a, b, params, faithful))
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


def line_parts(lines):
    """The non-empty single LineStrings of a list of (Multi)LineStrings."""
    for ln in lines:
        if ln is None or ln.is_empty:
            continue
        yield from (ln.geoms if hasattr(ln, "geoms") else [ln])


def frame_origin(gt_lines, prop_lines, tile=None, rows_up: bool = False) -> tuple[float, float]:
    """The corner (easting, northing) the Go frame is measured from: the tile's top-left (``rows_up``: bottom-left)
    when ``tile`` = (min x, min y, max x, max y) is known, else that of the union of both inputs' bounds."""
    if tile is None:
        from shapely.geometry import MultiLineString

        parts = list(line_parts(list(gt_lines) + list(prop_lines)))
        if not parts:
            return 0.0, 0.0
        tile = MultiLineString(parts).bounds
    return float(tile[0]), float(tile[1] if rows_up else tile[3])


def sat2graph_pickle(lines, origin: tuple[float, float], rows_up: bool = False) -> dict:
    """LineStrings in metres (easting, northing) -> the adjacency dict SAM-Road pickles (``convert_to_sat2graph_format``):
    keys (row, col) in whole metres from ``origin`` (rows south, or north with ``rows_up``; Python's ``round``),
    vertices in order of first appearance, neighbours in order of appearance, no self-loop or repeated neighbour."""
    x0, y0 = origin
    adj: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for part in line_parts(lines):
        keys = [(round(float(y - y0) if rows_up else float(y0 - y)), round(float(x - x0))) for x, y in part.coords]
        for a, b in zip(keys[:-1], keys[1:]):
            na, nb = adj.setdefault(a, []), adj.setdefault(b, [])
            if a != b and b not in na:
                na.append(b)
                nb.append(a)
    return adj


def convert_edges(adj: dict) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """§A.1 ``convert.py``: the edges of an adjacency dict in its order (each key's neighbours in list order, an
    unordered pair once), as fake (lat, lon) ends."""
    seen, edges = set(), []
    for k, nbrs in adj.items():
        for n in nbrs:
            if (k, n) in seen or (n, k) in seen:
                continue
            seen.add((k, n))
            edges.append((fake_latlon(*k), fake_latlon(*n)))
    return edges


def apls_sat2graph(gt_lines, prop_lines, preset: str = "default", faithful: bool = True, tile=None) -> dict:
    """The Sat2Graph-family APLS of two sets of LineStrings in metres: ``apls`` (arithmetic mean of the two
    directions; NaN when a direction counts no pair, as in Go), ``gt_to_prop``, ``prop_to_gt``.  ``tile`` (min x,
    min y, max x, max y in the lines' CRS) places the Go frame's origin on the tile's corner; without it the corner
    of both inputs' union is taken."""
    params = PRESETS[preset]
    gt_lines, prop_lines = list(gt_lines), list(prop_lines)
    if not any(True for _ in line_parts(gt_lines + prop_lines)):
        return {"apls": float("nan"), "gt_to_prop": float("nan"), "prop_to_gt": float("nan")}
    origin = frame_origin(gt_lines, prop_lines, tile, params.rows_up)
    g = densify(convert_edges(sat2graph_pickle(gt_lines, origin, params.rows_up)))
    p = densify(convert_edges(sat2graph_pickle(prop_lines, origin, params.rows_up)))
    a = one_way(g, p, params, faithful)
    b = one_way(p, g, params, faithful)
    return {"apls": (a + b) / 2, "gt_to_prop": a, "prop_to_gt": b}
