"""APLS (Average Path Length Similarity), SpaceNet 3 definition (Van Etten et al. 2018, arXiv:1807.01232).

Both graphs are planar line networks in metres.  For one direction (ground truth -> proposal):

1. control nodes: every graph node plus points inserted every ``node_spacing_m`` along each edge (placed as the
   SpaceNet reference tool places them, see :func:`densify`);
2. each ground-truth control node is snapped onto the nearest point of the proposal's edges when it lies within
   ``snap_m`` (that point is inserted into the proposal graph); nodes farther away are unmatched;
3. for every ordered pair (a, b) of ground-truth control nodes joined by a path of length L, the proposal path
   L' between their snapped nodes scores ``min(1, |L - L'| / L)``; an unmatched node or a missing proposal path
   scores 1;
4. the direction's score is 1 - the mean over pairs.

APLS is the harmonic mean of the two directions; an empty proposal scores 0.  Shortest paths are computed for all
control nodes at once with ``scipy.sparse.csgraph.dijkstra`` (deterministic, no sampling).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from shapely import STRtree
from shapely.geometry import LineString, Point
from shapely.ops import substring, unary_union


class LineGraph:
    """Nodes = coordinates (metres), edges = polylines; built from a list of LineStrings noded at endpoints.  Each
    edge has a ``rate``, the cost of one metre of it: 1 (path length) or seconds per metre (travel time)."""

    def __init__(self, ndigits: int = 3):
        self.nd = ndigits
        self.coords: list[tuple[float, float]] = []
        self.index: dict[tuple, int] = {}
        self.edges: list[tuple[int, int, LineString]] = []
        self.rate: list[float] = []

    def node(self, xy) -> int:
        """Index of the node at ``xy`` (rounded to ``ndigits``), added when new."""
        key = (round(float(xy[0]), self.nd), round(float(xy[1]), self.nd))
        if key not in self.index:
            self.index[key] = len(self.coords)
            self.coords.append(key)
        return self.index[key]

    def add_line(self, line: LineString, rate: float = 1.0) -> None:
        """Add a polyline as an edge between its end nodes (zero-length lines are ignored)."""
        if line.length <= 0:
            return
        c = list(line.coords)
        self.add_edge(self.node(c[0]), self.node(c[-1]), line, rate)

    def add_edge(self, u: int, v: int, line: LineString, rate: float = 1.0) -> None:
        """Add an edge between existing nodes."""
        self.edges.append((u, v, line))
        self.rate.append(rate)

    @property
    def n(self) -> int:
        """Number of nodes."""
        return len(self.coords)


def graph_from_lines(lines, rates=None) -> LineGraph:
    """LineStrings in metres -> LineGraph.  Crossing lines are split and joined (``unary_union``), as SpaceNet
    ground truth assumes for streets that cross.  ``rates`` (one per line, e.g. seconds per metre) go to the pieces
    of each line (the piece's midpoint lies on its line)."""
    keep = [i for i, ln in enumerate(lines) if ln is not None and not ln.is_empty]
    lines = [lines[i] for i in keep]
    rates = None if rates is None else [float(rates[i]) for i in keep]
    parts = []
    for ln in lines:
        parts += list(ln.geoms) if hasattr(ln, "geoms") else [ln]
    if parts:
        merged = unary_union(parts)
        parts = list(merged.geoms) if hasattr(merged, "geoms") else [merged]
    g = LineGraph()
    tree = STRtree(lines) if rates is not None and lines else None
    for p in parts:
        rate = 1.0
        if tree is not None:
            rate = rates[int(tree.nearest(p.interpolate(0.5, normalized=True)))]
        g.add_line(p, rate)
    return g


def densify(g: LineGraph, spacing: float) -> LineGraph:
    """Insert control nodes along each edge, placed as the SpaceNet reference tool places them: none on an edge
    shorter than ``0.75 * spacing``, one at the middle of an edge up to ``spacing`` long, otherwise
    ``ceil(length / spacing) - 1`` evenly spaced points (segments at most ``spacing`` long)."""
    out = LineGraph(g.nd)
    for (_, _, line), rate in zip(g.edges, g.rate):
        L = line.length
        if L < 0.75 * spacing:
            n_seg = 1
        elif L <= spacing:
            n_seg = 2
        else:
            n_seg = int(math.ceil(L / spacing - 1e-9))
        cuts = np.linspace(0.0, L, n_seg + 1)
        for a, b in zip(cuts[:-1], cuts[1:]):
            out.add_line(substring(line, a, b), rate)
    return out


def snap_into(src: LineGraph, dst: LineGraph, snap: float) -> tuple[LineGraph, np.ndarray]:
    """Snap every node of ``src`` onto ``dst`` (within ``snap`` metres), inserting the snapped points as nodes.
    Returns the augmented copy of ``dst`` and, per src node, the dst node index (-1 when unmatched)."""
    match = np.full(src.n, -1, np.int64)
    if not dst.edges or not src.n:
        return dst, match
    lines = [e[2] for e in dst.edges]
    tree = STRtree(lines)
    pts = [Point(c) for c in src.coords]
    idx_src, idx_line = tree.query(pts, predicate="dwithin", distance=snap)
    best = {}
    for i, j in zip(idx_src, idx_line):
        d = lines[j].distance(pts[i])
        if d <= snap and (i not in best or d < best[i][1]):
            best[i] = (j, d)
    cuts: dict[int, list[tuple[float, int]]] = {}
    out = LineGraph(dst.nd)
    out.coords, out.index = list(dst.coords), dict(dst.index)
    for i, (j, _) in best.items():
        line = lines[j]
        s = line.project(pts[i])
        if src.coords[i] in out.index:  # on one of dst's nodes (same mm): that node, not a copy beside it
            node = out.index[src.coords[i]]
            match[i] = node
            continue
        node = out.node(line.interpolate(s).coords[0])
        match[i] = node
        cuts.setdefault(j, []).append((s, node))
    for j, ((u, v, line), rate) in enumerate(zip(dst.edges, dst.rate)):
        if j not in cuts:
            out.add_edge(u, v, line, rate)
            continue
        marks = sorted(set([(0.0, u)] + cuts[j] + [(line.length, v)]))
        for (a, na), (b, nb) in zip(marks[:-1], marks[1:]):
            if b - a > 1e-9:
                out.add_edge(na, nb, substring(line, a, b), rate)
    return out, match


def _csgraph(g: LineGraph):
    """The graph as a symmetric sparse matrix of edge lengths (the shortest of parallel edges)."""
    best: dict[tuple[int, int], float] = {}
    for (u, v, ln), rate in zip(g.edges, g.rate):
        if u != v:
            w = ln.length * rate
            for key in ((u, v), (v, u)):
                if key not in best or w < best[key]:
                    best[key] = w
    if not best:
        return None
    r, c = zip(*best)
    return coo_matrix((list(best.values()), (r, c)), shape=(g.n, g.n)).tocsr()


def _paths(mat, n: int, sources: np.ndarray) -> np.ndarray:
    """Shortest path lengths from ``sources`` to every node (inf where unreachable)."""
    if mat is None:
        d = np.full((len(sources), n), np.inf)
        d[np.arange(len(sources)), sources] = 0
        return d
    return dijkstra(mat, directed=False, indices=sources)


def one_direction(gt: LineGraph, prop: LineGraph, snap: float, block: int = 256) -> float:
    """1 - mean path-length penalty for control nodes of ``gt`` (already densified).

    Dijkstra runs from ``block`` sources at a time and only running sums are kept, so memory is O(block x nodes)
    whatever the size of the network, and the result is the all-pairs one (no sampling)."""
    if gt.n < 2:  # no pair of control nodes: nothing to miss
        return 1.0
    prop_aug, match = snap_into(gt, prop, snap)
    g_mat, p_mat = _csgraph(gt), _csgraph(prop_aug)
    matched = match >= 0
    mi = np.flatnonzero(matched)
    total, n_pairs = 0.0, 0
    for start in range(0, gt.n, block):
        rows = np.arange(start, min(start + block, gt.n))
        L = _paths(g_mat, gt.n, rows)  # (b, n)
        valid = np.isfinite(L) & (L > 0)
        valid[np.arange(len(rows)), rows] = False
        n_pairs += int(valid.sum())
        penalty = np.ones_like(L)
        rows_m = rows[matched[rows]]
        if len(rows_m) and len(mi):
            Lp = _paths(p_mat, prop_aug.n, match[rows_m])[:, match[mi]]  # (b_m, m)
            sub = L[np.searchsorted(rows, rows_m)][:, mi]
            with np.errstate(invalid="ignore", divide="ignore"):
                pen = np.minimum(1.0, np.abs(sub - Lp) / sub)
            pen[~np.isfinite(Lp)] = 1.0
            penalty[np.ix_(np.searchsorted(rows, rows_m), mi)] = pen
        total += float(penalty[valid].sum())
    if n_pairs == 0:
        return 1.0
    return float(1.0 - total / n_pairs)


def apls(gt_lines, prop_lines, node_spacing_m: float = 50.0, snap_m: float = 4.0, gt_rates=None,
         prop_rates=None) -> dict:
    """APLS between two sets of LineStrings in metres.  Returns apls, gt_to_prop, prop_to_gt.  With ``gt_rates``
    and ``prop_rates`` (seconds per metre of each line: 1 / speed) paths are travel times (SpaceNet 5's APLS_time);
    control points and snapping stay in metres."""
    g = graph_from_lines(gt_lines, gt_rates)
    p = graph_from_lines(prop_lines, prop_rates)
    if g.n == 0 and p.n == 0:
        return {"apls": 1.0, "gt_to_prop": 1.0, "prop_to_gt": 1.0}
    if p.n == 0 or g.n == 0:
        return {"apls": 0.0, "gt_to_prop": 0.0, "prop_to_gt": 0.0}
    gd, pd = densify(g, node_spacing_m), densify(p, node_spacing_m)
    a = one_direction(gd, pd, snap_m)
    b = one_direction(pd, gd, snap_m)
    hm = 0.0 if a + b == 0 else 2 * a * b / (a + b)
    return {"apls": hm, "gt_to_prop": a, "prop_to_gt": b}


def lines_from_graph(g, gsd: float = 1.0) -> list[LineString]:
    """Edges of a cleaned pixel graph (``line`` attr, row/col) -> LineStrings in metres (x = col, y = -row)."""
    out = []
    for _, _, d in g.edges(data=True):
        ln = np.asarray(d["line"], float)
        if len(ln) >= 2:
            out.append(LineString(np.c_[ln[:, 1] * gsd, -ln[:, 0] * gsd]))
    return out


def lines_from_mask(mask: np.ndarray, gsd: float = 1.0) -> list[LineString]:
    """The road graph of a mask (the scoring cleanup: 10 m spurs, 20 m pieces, no gap bridging) as LineStrings in
    metres."""
    from ..graph import CleanOptions, graph_from_mask

    clean = CleanOptions(gsd=gsd, min_spur_m=10, min_component_m=20, bridge_m=0, spur_width_ratio=0)
    return lines_from_graph(graph_from_mask(mask, gsd=gsd, clean=clean), gsd)


def apls_from_masks(gt_mask: np.ndarray, pred_mask: np.ndarray, gsd: float = 1.0, node_spacing_m: float = 50.0,
                    snap_m: float = 4.0) -> float:
    """APLS between the graphs of two masks (same cleanup for both, no gap bridging)."""
    return apls(lines_from_mask(gt_mask, gsd), lines_from_mask(pred_mask, gsd), node_spacing_m, snap_m)["apls"]
