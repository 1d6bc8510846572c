"""Building the road graph from a road mask, tile by tile, with the seams leaving no trace.

The graph of a skeleton is defined as sknw defines it (sknw stays the reference the tests compare against): a
skeleton pixel with exactly two skeleton 8-neighbours is an *edge pixel*, any other skeleton pixel a *node pixel*;
8-connected node pixels form one node (its centre is their mean); every maximal chain of edge pixels joins the
nodes at its two ends (a self-loop when both are the same node); a closed chain without node pixels (a ring) gets
one node at its first pixel in raster order.  Each edge pixel has two skeleton neighbours, so chains are simple
paths or cycles.

sknw cannot be called on a tile: it classifies pixels by the neighbours inside the array it gets (a junction on a
seam is seen as two end points), loops forever on a chain that leaves the array, and wraps coordinates past 32767.
So each tile is processed here in ONE pass over the mask (:func:`tile_part`):

* the mask is read with a halo, skeletonized (thinning is local: the core plus a 2 px ring equals the whole-mask
  skeleton when the halo exceeds twice the thickest road: :func:`halo_for`, one halo for all tiles, found by a
  cheap first pass of :func:`thickness`) and its half-width measured at the skeleton;
* every core pixel and the 1 px ring around it is classified with its true neighbour count (the 2 px ring supplies
  the neighbours), so node pixels are the same as in a whole-scene call;
* node pixels of the core are labelled into clusters keyed by their smallest linear pixel index ``r * w + c``;
  node pixels adjacent across the seam are recorded as pairs;
* chains of core edge pixels are traced (numba) into *pieces*; a piece ends at a node pixel (in the core or the
  ring) or at a *seam link*: the edge pixel across the seam its chain continues to.

:func:`join_parts` then unions clusters across seams, follows seam links from piece to piece into whole chains,
turns chains that close on themselves into rings exactly as a single call would, and builds the graph in a
canonical order (nodes by key, edges by end nodes and first pixel), so the cleanup that follows is independent of
the tiling.  The result equals one call on the whole mask for any tile size (tests/graph, hypothesis).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
from numba import njit
from scipy import ndimage
from skimage.morphology import skeletonize

from ..tiling import Reader, read_padded
from .union import KeyUnion, keyed_components, seam_links

NODE, SEAM, NONE = 0, 1, 2  # what lies beyond the end of a piece
MAX_HALO = 1024  # the halo grows with the thickest road of the mask, up to this


@njit(cache=True)
def _trace(cls):
    """Trace the chains of edge pixels (``cls == 1``) in the core ``cls[1:-1, 1:-1]`` of a classified window
    (0 background, 1 edge pixel, 2 node pixel; the 1 px ring classified too).

    Returns ``seq`` (K, 2) window coordinates of the pieces' pixels in order, ``starts`` (P + 1) offsets, and
    ``ends`` (P, 2, 3): for each piece's first and last pixel, ``(kind, r, c)`` of what lies beyond it: a node pixel
    (NODE), an edge pixel in the ring (SEAM), or nothing for a cycle inside the core (NONE)."""
    hh, ww = cls.shape[0] - 2, cls.shape[1] - 2
    dr = (-1, -1, -1, 0, 0, 1, 1, 1)
    dc = (-1, 0, 1, -1, 1, -1, 0, 1)
    n_edge = 0
    for r in range(1, hh + 1):
        for c in range(1, ww + 1):
            if cls[r, c] == 1:
                n_edge += 1
    seq = np.empty((n_edge, 2), np.int32)
    starts = np.zeros(n_edge + 1, np.int64)
    ends = np.full((n_edge, 2, 3), -1, np.int64)
    visited = np.zeros(cls.shape, np.bool_)
    k = 0
    p = 0

    for phase in range(2):
        for r in range(1, hh + 1):
            for c in range(1, ww + 1):
                if cls[r, c] != 1 or visited[r, c]:
                    continue
                inner = 0
                for j in range(8):
                    rr, cc = r + dr[j], c + dc[j]
                    if 1 <= rr <= hh and 1 <= cc <= ww and cls[rr, cc] == 1:
                        inner += 1
                if phase == 0 and inner >= 2:
                    continue  # not a piece end: traced from its end, or a cycle (phase 1)
                first = k
                cr, cc_ = r, c
                while True:
                    visited[cr, cc_] = True
                    seq[k, 0] = cr
                    seq[k, 1] = cc_
                    k += 1
                    nr, nc = -1, -1
                    for j in range(8):  # ascending linear offset: a cycle turns to its smaller neighbour
                        rr, cc = cr + dr[j], cc_ + dc[j]
                        if 1 <= rr <= hh and 1 <= cc <= ww and cls[rr, cc] == 1 and not visited[rr, cc]:
                            nr, nc = rr, cc
                            break
                    if nr < 0:
                        break
                    cr, cc_ = nr, nc
                starts[p] = first
                if phase == 1:
                    ends[p, 0, 0] = NONE
                    ends[p, 1, 0] = NONE
                else:
                    # what lies beyond each end: skeleton neighbours that are not core edge pixels
                    slot = 0
                    for side in range(2):
                        if side == 1 and k - first == 1:
                            break  # a one-pixel piece: both outside neighbours found from its single pixel
                        pr, pc = (seq[first, 0], seq[first, 1]) if side == 0 else (seq[k - 1, 0], seq[k - 1, 1])
                        if side == 1:
                            slot = 1
                        for j in range(8):
                            rr, cc = pr + dr[j], pc + dc[j]
                            v = cls[rr, cc]
                            if v == 0 or (v == 1 and 1 <= rr <= hh and 1 <= cc <= ww):
                                continue
                            if slot < 2:
                                ends[p, slot, 0] = NODE if v == 2 else SEAM
                                ends[p, slot, 1] = rr
                                ends[p, slot, 2] = cc
                            slot += 1
                p += 1
    starts[p] = k
    return seq, starts[:p + 1], ends[:p]


@dataclass
class TilePart:
    """What one tile contributes to the scene graph (global pixel coordinates, linear keys ``r * w + c``)."""

    node_keys: np.ndarray                       # (N,) cluster key = smallest linear index of its core pixels
    node_sums: np.ndarray                       # (N, 3) sum of rows, sum of cols, pixel count
    border: dict = field(default_factory=dict)  # linear index of a core node pixel on the tile edge -> its key
    node_pairs: list = field(default_factory=list)  # (key, linear index of an adjacent node pixel across the seam)
    pieces: list = field(default_factory=list)  # Piece


@dataclass
class Piece:
    pts: np.ndarray        # (N, 2) int32 global (row, col) in order
    ends: list             # two (kind, ref): NODE -> ("key", k) or ("pix", lin); SEAM -> (own lin, other lin)
    n: int
    sum_p: float
    min_p: float
    sum_w: float


@njit(cache=True)
def _classify(ske2):
    """0/1/2 (background / edge pixel / node pixel) for ``ske2[1:-1, 1:-1]`` from the true neighbour counts."""
    hh, ww = ske2.shape[0] - 2, ske2.shape[1] - 2
    out = np.zeros((hh, ww), np.int8)
    for r in range(1, hh + 1):
        for c in range(1, ww + 1):
            if not ske2[r, c]:
                continue
            n = 0
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    if (dr or dc) and ske2[r + dr, c + dc]:
                        n += 1
            out[r - 1, c - 1] = 1 if n == 2 else 2
    return out


def _half_width(m: np.ndarray, core_sk: np.ndarray, pad: int) -> np.ndarray:
    """Euclidean distance transform of the window ``m`` at the core's skeleton pixels only (elsewhere 0): the
    distance to the nearest background pixel 4-adjacent to the road, which is the nearest background pixel."""
    out = np.zeros(core_sk.shape, np.float32)
    near = m.copy()
    near[1:] |= m[:-1]
    near[:-1] |= m[1:]
    near[:, 1:] |= m[:, :-1]
    near[:, :-1] |= m[:, 1:]
    outer = near & ~m
    if not outer.any():
        return out
    from scipy.spatial import cKDTree

    rr, cc = np.nonzero(core_sk)
    d, _ = cKDTree(np.argwhere(outer)).query(np.c_[rr + pad, cc + pad])
    out[rr, cc] = d
    return out


def thickness(read_mask: Reader, h: int, w: int, r0: int, r1: int, c0: int, c1: int) -> int:
    """An upper bound of the largest road half-width in the tile (taxicab distance to the background, which is
    at least the Euclidean one; a road cut by the tile's edge counts as continuing)."""
    m = read_padded(read_mask, h, w, r0 - 1, r1 + 1, c0 - 1, c1 + 1).astype(bool)
    return int(ndimage.distance_transform_cdt(m, metric="taxicab").max()) if m.any() else 0


def halo_for(thick: int, halo: int) -> int:
    """The halo that makes every tile's skeleton equal the whole mask's: thinning removes one layer per iteration
    and looks 2 px further each time, so twice the thickest road plus a margin, at least ``halo`` and at most
    :data:`MAX_HALO`.  One halo for all tiles, so that neighbours agree on what lies between them."""
    return max(halo, min(2 * thick + 4, MAX_HALO))


def tile_part(read_mask: Reader, h: int, w: int, r0: int, r1: int, c0: int, c1: int, halo: int = 64,
              read_prob: Reader | None = None) -> tuple[TilePart, np.ndarray]:
    """One pass over the mask for the tile core [r0, r1) x [c0, c1): skeleton, half-width, pixel classes, node
    clusters and traced pieces.  Returns the part and the core skeleton (bool)."""
    th, tw = r1 - r0, c1 - c0
    empty = TilePart(np.zeros(0, np.int64), np.zeros((0, 3)))
    pad = halo + 2
    m = read_padded(read_mask, h, w, r0 - pad, r1 + pad, c0 - pad, c1 + pad).astype(bool)
    if not m[halo:halo + th + 4, halo:halo + tw + 4].any():
        return empty, np.zeros((th, tw), bool)
    sk = skeletonize(m)[halo:halo + th + 4, halo:halo + tw + 4]  # core + 2 px ring
    core_sk = sk[2:-2, 2:-2]
    if not core_sk.any():
        return empty, core_sk
    cls = _classify(sk)                                 # core + 1 px ring
    prob = (read_padded(read_prob, h, w, r0, r1, c0, c1).astype(np.float32) if read_prob is not None
            else np.zeros((th, tw), np.float32))
    dist = _half_width(m, core_sk, pad)

    # node clusters of the core
    lab, keys, rr, cc, ids = keyed_components(cls[1:-1, 1:-1] == 2, r0, c0, w)
    nlab = len(keys)
    sums = np.zeros((nlab, 3))
    sums[:, 0] = np.bincount(ids, rr + r0, nlab)
    sums[:, 1] = np.bincount(ids, cc + c0, nlab)
    sums[:, 2] = np.bincount(ids, None, nlab)
    border, pairs = seam_links(cls == 2, keys, rr, cc, ids, r0, c0, w)
    part = TilePart(keys, sums, border, pairs)

    def node_ref(r, c):  # window coordinates of a node pixel -> its cluster
        if 1 <= r <= th and 1 <= c <= tw:
            return ("key", int(keys[lab[r - 1, c - 1] - 1]))
        return ("pix", int((r - 1 + r0) * w + c - 1 + c0))

    seq, starts, ends = _trace(cls)
    for i in range(len(starts) - 1):
        s = seq[starts[i]:starts[i + 1]]
        loc = s - 1
        p = prob[loc[:, 0], loc[:, 1]]
        d = dist[loc[:, 0], loc[:, 1]]
        pts = (loc + np.array([r0, c0], np.int32)).astype(np.int32)
        refs = []
        for side in range(2):
            kind, er, ec = (int(x) for x in ends[i, side])
            own = pts[0] if side == 0 else pts[-1]
            if kind == NODE:
                refs.append((NODE, node_ref(er, ec)))
            elif kind == SEAM:
                refs.append((SEAM, (int(own[0]) * w + int(own[1]), int((er - 1 + r0) * w + ec - 1 + c0))))
            else:
                refs.append((NONE, None))
        part.pieces.append(Piece(pts, refs, len(pts), float(p.sum()), float(p.min()), float(d.sum())))
    return part, core_sk


def join_parts(parts, w: int) -> nx.MultiGraph:
    """Join tile parts into one MultiGraph (pixel coordinates, row/col), in canonical order.

    Node attrs: ``o`` (row, col) float.  Edge attrs: ``pts`` (N, 2) int32 pixel path from the edge's ``_from`` node
    (without the node pixels), ``n``/``sum_p``/``min_p``/``sum_w`` statistics, ``bridged`` False,
    ``source`` "skeleton"."""
    uf = KeyUnion()
    border: dict[int, int] = {}
    sums: dict[int, np.ndarray] = {}
    pieces: list[Piece] = []
    for part in parts:
        border.update(part.border)
        for k, s in zip(part.node_keys.tolist(), part.node_sums):
            sums[k] = s
        pieces += part.pieces
    for part in parts:
        for k, lin in part.node_pairs:
            uf.union(k, border[lin])

    def resolve(ref) -> int:
        kind, v = ref
        return uf.find(v if kind == "key" else border[v])

    merged: dict[int, np.ndarray] = {}
    for k, s in sums.items():
        r = uf.find(k)
        merged[r] = merged[r] + s if r in merged else s.copy()

    links = {}  # (own lin, other lin) -> (piece index, side)
    for i, pc in enumerate(pieces):
        for side, (kind, ref) in enumerate(pc.ends):
            if kind == SEAM:
                links[ref] = (i, side)

    used = np.zeros(len(pieces), bool)
    edges = []

    def walk(i, side):
        """Follow the chain entering piece i at ``side``; returns the pieces (oriented) and the far end."""
        chain = []
        while True:
            used[i] = True
            pc = pieces[i]
            chain.append((pc, side == 1))  # reversed when entered at its last pixel
            kind, ref = pc.ends[1 - side]
            if kind != SEAM:
                return chain, (kind, ref)
            nxt = links[(ref[1], ref[0])]
            if used[nxt[0]]:
                return chain, (kind, ref)  # closed the cycle
            i, side = nxt

    def stats(chain):
        return (sum(p.n for p, _ in chain), sum(p.sum_p for p, _ in chain), min(p.min_p for p, _ in chain),
                sum(p.sum_w for p, _ in chain))

    def path(chain):
        return np.concatenate([p.pts[::-1] if rev else p.pts for p, rev in chain])

    rings = []
    for i, pc in enumerate(pieces):
        for side in range(2):
            if used[i] or pc.ends[side][0] != NODE:
                continue
            chain, far = walk(i, side)
            u, v = resolve(pc.ends[side][1]), resolve(far[1])
            edges.append((u, v, path(chain), stats(chain)))
    for i, pc in enumerate(pieces):
        if not used[i]:
            chain, _ = walk(i, 0)
            rings.append((path(chain), stats(chain)))
    for pts, st in rings:  # a ring's node is its first pixel in raster order, as in a single sknw call
        lin = pts[:, 0].astype(np.int64) * w + pts[:, 1]
        j = int(np.argmin(lin))
        pts = np.roll(pts, -j, axis=0)
        lin = np.roll(lin, -j)
        if len(pts) > 2 and lin[-1] < lin[1]:
            pts = np.concatenate([pts[:1], pts[:0:-1]])
        key = int(lin.min())
        merged[key] = np.array([pts[0, 0], pts[0, 1], 1.0])
        edges.append((key, key, pts[1:], st))  # statistics count the node pixel too

    out = []
    for u, v, pts, st in edges:
        def first_lin(a):
            return int(a[0, 0]) * w + int(a[0, 1]) if len(a) else -1
        if u > v or (u == v and len(pts) > 1 and first_lin(pts[::-1]) < first_lin(pts)):
            u, v, pts = v, u, pts[::-1]
        out.append((u, v, first_lin(pts), len(pts), np.ascontiguousarray(pts), st))
    out.sort(key=lambda e: e[:4])
    g = nx.MultiGraph()
    for k in sorted(merged):
        s = merged[k]
        g.add_node(k, o=np.array([s[0] / s[2], s[1] / s[2]]))
    for u, v, _, _, pts, (n, sp, mp, sw) in out:
        g.add_edge(u, v, pts=pts, _from=u, n=n, sum_p=sp, min_p=mp, sum_w=sw, bridged=False, source="skeleton")
    return g
