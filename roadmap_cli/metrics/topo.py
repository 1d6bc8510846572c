"""TOPO, the road-topology precision / recall of Sat2Graph, RNGDet++ and SAM-Road (their ``metrics/topo``), written
from the rules in ``shared/spec/sat2graph-metrics.md`` §B (section numbers below refer to it).

Seeds are laid every ~55.6 m along the ground-truth chains; each seed is matched to a proposal edge within 11.1 m
and ~16 deg; from the seed, "holes" are laid every 5.56 m of graph distance over the ground truth and "marbles" over
the proposal, out to a radius ``r`` (333 m, or 167 m for small tiles); a seed's precision is the share of marbles
matched one-to-one to holes (within 11.1 m and ~45 deg; every hole has a twin 1.4 m off, so a road drawn twice is not
punished), its recall the share of holes matched to marbles.  Seeds that snap to the same stretch of proposal road
keep only the best (TOPO121).  Tile precision = mean over kept seeds; recall = that mean x kept / all seeds.

Everything is in the program's fake degrees (111 111 m per degree around 41 N, 71 W, see :mod:`.apls_sat2graph`).
Deterministic: neighbours in insertion order, seeds in order, ties as a stable sort leaves them.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree

from .apls_sat2graph import fake_latlon, frame_origin, line_parts, sat2graph_pickle

DENSITY = 0.0005  # seed spacing (deg)
SNAP = 0.0001  # seed -> proposal edge
SNAP_ANGLE = 0.04  # 1 - |cos| for seed -> proposal edge
STEP = 0.00005  # marble / hole spacing
MATCH = 0.0001  # marble <-> hole
MATCH_ANGLE = 0.29
TWIN = 0.00001
COS40 = math.cos(math.radians(40.0))


def distance(p, q) -> float:
    """§B.1: degrees of latitude between two (lat, lon), longitude scaled by cos(p.lat)."""
    return math.sqrt((p[0] - q[0]) ** 2 + ((p[1] - q[1]) * math.cos(math.radians(p[0]))) ** 2)


def _norm(dlat: float, dlon: float) -> tuple[float, float]:
    """Direction normalised after scaling longitude by cos 40 deg (``latlonNorm``)."""
    x, y = dlat, dlon * COS40
    n = math.hypot(x, y)
    return (x / n, y / n) if n > 0 else (0.0, 0.0)


class Graph:
    """Vertices keyed by ``%.7f_%.7f``; both directions of every segment; neighbours in insertion order."""

    def __init__(self):
        self.coords: list[tuple[float, float]] = []
        self.ids: dict[str, int] = {}
        self.nbrs: list[dict[int, None]] = []

    def vertex(self, p) -> int:
        """Id of the vertex at ``p``."""
        key = "%.7f_%.7f" % p
        if key not in self.ids:
            self.ids[key] = len(self.coords)
            self.coords.append((float(p[0]), float(p[1])))
            self.nbrs.append({})
        return self.ids[key]

    def add(self, p, q) -> None:
        """A segment, both directions."""
        a, b = self.vertex(p), self.vertex(q)
        if a != b:
            self.nbrs[a][b] = None
            self.nbrs[b][a] = None

    def degree(self, v: int) -> int:
        """Number of neighbours."""
        return len(self.nbrs[v])

    def edges(self):
        """Directed edges (u, w)."""
        return [(u, w) for u in range(len(self.coords)) for w in self.nbrs[u]]


def seeds(g: Graph) -> list[tuple]:
    """§B.3: (position, a, b, da, db) every ~DENSITY along each chain of degree-2 vertices, chain ends excluded; a
    chain of one edge is walked from both ends, so its seeds appear twice (as in the original)."""
    interior: set[int] = set()
    out = []
    for v in range(len(g.coords)):
        if g.degree(v) == 2:
            continue
        for m in g.nbrs[v]:
            if m in interior:
                continue
            chain, prev, cur = [v, m], v, m
            while g.degree(cur) == 2:
                interior.add(cur)
                nxt = next(w for w in g.nbrs[cur] if w != prev)
                chain.append(nxt)
                prev, cur = cur, nxt
                if cur == v:
                    break
            seg = [distance(g.coords[a], g.coords[b]) for a, b in zip(chain[:-1], chain[1:])]
            total = sum(seg)
            if total < DENSITY / 2:
                continue
            n = max(int(math.floor(total / DENSITY)), 1)
            marks = [total * k / (n + 1) for k in range(1, n + 1)]
            start = 0.0
            for (a, b), length in zip(zip(chain[:-1], chain[1:]), seg):
                for s in marks:
                    if start <= s <= start + length and length > 0:
                        t = (s - start) / length
                        pa, pb = g.coords[a], g.coords[b]
                        pos = (pa[0] + (pb[0] - pa[0]) * t, pa[1] + (pb[1] - pa[1]) * t)
                        out.append((pos, a, b, s - start, start + length - s))
                start += length
    return out


def _point_segment(s, u, w) -> float:
    """Distance from s to segment u-w, longitude scaled by cos(u.lat)."""
    c = math.cos(math.radians(u[0]))
    px, py = s[0] - u[0], (s[1] - u[1]) * c
    dx, dy = w[0] - u[0], (w[1] - u[1]) * c
    n2 = dx * dx + dy * dy
    t = 0.0 if n2 == 0 else max(0.0, min(1.0, (px * dx + py * dy) / n2))
    return math.hypot(px - t * dx, py - t * dy)


def match_seed(seed, gt: Graph, prop: Graph, tree, reach: float, prop_edges):
    """§B.4: the nearest proposal edge within SNAP and SNAP_ANGLE of the seed's segment, or None (``tree`` holds the
    edges' centres; ``reach`` is SNAP plus the largest half edge, so no candidate is missed)."""
    pos, a, b = seed[0], seed[1], seed[2]
    ga, gb = gt.coords[a], gt.coords[b]
    na = _norm(gb[0] - ga[0], gb[1] - ga[1])
    best, best_d = None, SNAP
    for k in sorted(tree.query_ball_point(pos, reach)) if tree is not None else []:
        u, w = prop_edges[k]
        pu, pw = prop.coords[u], prop.coords[w]
        d = _point_segment(pos, pu, pw)
        if d < best_d:
            nb = _norm(pw[0] - pu[0], pw[1] - pu[1])
            if 1 - abs(na[0] * nb[0] + na[1] * nb[1]) < SNAP_ANGLE:
                best, best_d = (u, w, distance(pu, pos), distance(pw, pos)), d
    return best


def walk(g: Graph, p: int, q: int, dp: float, dq: float, r: float, bidirection: bool = False) -> list[tuple]:
    """§B.5: points (lat, lon, dlat, dlon) every STEP of graph distance from the seed, out to ``r``, the whole seed
    segment included; with ``bidirection`` each point has a twin TWIN degrees north-east."""
    points: dict[tuple, None] = {}

    def add(x, y, t, d):
        pt = (x[0] + (y[0] - x[0]) * t, x[1] + (y[1] - x[1]) * t, d[0], d[1])
        points[pt] = None
        if bidirection:
            points[(pt[0] + TWIN, pt[1] + TWIN, d[0], d[1])] = None

    cp, cq = g.coords[p], g.coords[q]
    seg = distance(cq, cp)
    k = 0
    while seg > 0 and k * STEP / seg <= 1:  # the whole seed segment, from q toward p
        add(cq, cp, k * STEP / seg, (cp[0] - cq[0], cp[1] - cq[1]))
        k += 1
    if seg == 0:
        add(cq, cp, 0.0, (0.0, 0.0))
    expanded: dict[int, float] = {}
    covered: dict[tuple[int, int], float] = {}
    queue = deque([(p, -1, dp), (q, -1, dq)])
    while queue:
        x, prev, d = queue.popleft()
        if (x in expanded and expanded[x] <= d) or d > r:
            continue
        old = expanded.get(x, 1.0)
        expanded[x] = d
        for y in g.nbrs[x]:
            if y in (prev, x, p, q):
                continue
            cx, cy = g.coords[x], g.coords[y]
            length = distance(cx, cy)
            if old + length < r:
                queue.append((y, x, d + length))
                continue
            o = STEP * math.ceil(d / STEP) - d
            lo = covered.get((x, y), 0.0)
            hi = length - covered[(y, x)] if (y, x) in covered else length
            while o < length:
                if d + o > r:
                    break
                if o < lo:
                    o += STEP
                    continue
                if o > hi:
                    break
                add(cx, cy, o / length if length else 0.0, (cy[0] - cx[0], cy[1] - cx[1]))
                o += STEP
            covered[(x, y)] = o - STEP
            queue.append((y, x, d + length))
    return list(points)


def _matching(a: list[tuple], b: list[tuple]) -> int:
    """§B.6: size of the maximum one-to-one matching of compatible points (distance < MATCH, directions within
    MATCH_ANGLE unless a direction is degenerate)."""
    if not a or not b:
        return 0
    tree = cKDTree(np.asarray([(p[0], p[1]) for p in b]))
    rows, cols = [], []
    for i, m in enumerate(a):
        nm = _norm(m[2], m[3])
        for j in tree.query_ball_point((m[0], m[1]), 2 * MATCH):  # a wider box; the exact test follows
            h = b[j]
            if distance(m, h) >= MATCH:
                continue
            if m[2] == m[3] or h[2] == h[3]:
                ok = True
            else:
                nh = _norm(h[2], h[3])
                ok = 1 - abs(nm[0] * nh[0] + nm[1] * nh[1]) < MATCH_ANGLE
            if ok:
                rows.append(i)
                cols.append(j)
    if not rows:
        return 0
    adj = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(a), len(b)))
    return int((maximum_bipartite_matching(adj, perm_type="column") >= 0).sum())


def _prop_distance(prop: Graph, i: tuple, j: tuple, cutoff: float = 0.0003) -> float:
    """§B.7: proposal-graph distance between two matched seeds' positions on their proposal edges."""
    ui, wi, dui, _ = i
    uj, wj, duj, dwj = j
    if (ui, wi) == (uj, wj):
        return abs(dui - duj)
    if (ui, wi) == (wj, uj):
        return abs(dui - dwj)
    best = 100000.0
    for start in (ui, wi):
        seen = {start: dui}
        queue = deque([(start, dui)])
        while queue:
            x, d = queue.popleft()
            for y in prop.nbrs[x]:
                if y in (ui, wi):
                    continue
                nd = d + distance(prop.coords[x], prop.coords[y])
                if nd > cutoff or (y in seen and seen[y] <= nd):
                    continue
                seen[y] = nd
                if y == uj:
                    best = min(best, nd + duj)
                if y == wj:
                    best = min(best, nd + dwj)
                queue.append((y, nd))
    return best


def topo(gt_lines, prop_lines, r: float | None = None, tile=None) -> dict:
    """TOPO precision, recall and F1 of two sets of LineStrings in metres (one tile).  ``r`` (deg): 0.003 when the
    tile spans at least 0.01 deg (1.1 km) north-south, else 0.0015, as the original chooses it.  Both inputs are fed
    as SAM-Road feeds the program: whole-metre vertex keys from the tile's top-left (``tile`` = min x, min y, max x,
    max y; else the union's), see :func:`.apls_sat2graph.sat2graph_pickle`."""
    gt_lines, prop_lines = list(gt_lines), list(prop_lines)
    if not any(True for _ in line_parts(gt_lines + prop_lines)):
        return {"topo_precision": 0.0, "topo_recall": 0.0, "topo_f1": 0.0, "seeds": 0, "kept": 0}
    origin = frame_origin(gt_lines, prop_lines, tile)
    graphs = []
    for lines in (gt_lines, prop_lines):
        g = Graph()
        for k, nbrs in sat2graph_pickle(lines, origin).items():
            for n in nbrs:
                g.add(fake_latlon(*k), fake_latlon(*n))
        graphs.append(g)
    gt, prop = graphs
    if r is None:
        min_lat = min(c[0] for g in graphs for c in g.coords) if any(g.coords for g in graphs) else 41.0
        r = 0.003 if 41.0 - min_lat >= 0.01 else 0.0015
    seed_list = seeds(gt)
    prop_edges = prop.edges()
    tree, reach = None, 0.0
    if prop_edges:
        centres = [((prop.coords[u][0] + prop.coords[w][0]) / 2, (prop.coords[u][1] + prop.coords[w][1]) / 2)
                   for u, w in prop_edges]
        half = max(math.hypot(prop.coords[u][0] - prop.coords[w][0], prop.coords[u][1] - prop.coords[w][1])
                   for u, w in prop_edges) / 2
        tree, reach = cKDTree(np.asarray(centres)), 2 * SNAP + half * 1.5  # lon degrees are longer at 41 N
    results = []
    for sd in seed_list:
        m = match_seed(sd, gt, prop, tree, reach, prop_edges)
        if m is None:
            continue
        u, w, du, dw = m
        marbles = walk(prop, u, w, du, dw, r)
        holes = walk(gt, sd[1], sd[2], sd[3], sd[4], r)
        if not marbles or not holes:
            continue
        holes2 = walk(gt, sd[1], sd[2], sd[3], sd[4], r, bidirection=True)
        precision = _matching(marbles, holes2) / len(marbles)
        recall = _matching(holes, marbles) / len(holes)
        results.append((sd[0], precision, recall, m))
    kept = _one_to_one(results, prop)
    n = len(seed_list)
    p = float(np.mean([results[k][1] for k in kept])) if kept else 0.0
    rc = float(np.mean([results[k][2] for k in kept])) * len(kept) / n if kept and n else 0.0
    return {"topo_precision": p, "topo_recall": rc, "topo_f1": 2 * p * rc / (p + rc) if p + rc else 0.0,
            "seeds": n, "kept": len(kept)}


def _one_to_one(results: list[tuple], prop: Graph) -> list[int]:
    """§B.7 TOPO121: from the most precise down, keep a seed unless a kept one already claimed its stretch of proposal
    road (graph distance < 0.0002 deg) and its precision is under 0.9."""
    if not results:
        return []
    pos = np.asarray([r[0] for r in results])
    order = sorted(range(len(results)), key=lambda k: results[k][1])  # ascending, stable
    marked = np.zeros(len(results), bool)
    kept = []
    for k in reversed(order):
        if marked[k] and results[k][1] < 0.9:
            continue
        kept.append(k)
        lat, lon = pos[k]
        box = (np.abs(pos[:, 0] - lat) <= 0.0003) & (np.abs(pos[:, 1] - lon) <= 0.0003 / math.cos(math.radians(lat)))
        for j in np.flatnonzero(box):
            if j == k or _prop_distance(prop, results[k][3], results[j][3]) < 0.0002:
                marked[j] = True
    return sorted(kept)
