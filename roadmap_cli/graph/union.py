"""Union-find over integer keys (linear pixel indices), used to join what tiles saw across their seams."""
from __future__ import annotations


class KeyUnion:
    """Union-find over integer keys; the root of a set is its smallest key, so results do not depend on the order
    in which tiles were visited."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        """The smallest key of ``a``'s set (path compression on the way)."""
        root = a
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while a != root:
            self.parent[a], a = root, self.parent.get(a, a)
        return root

    def union(self, a: int, b: int) -> None:
        """Merge the sets of ``a`` and ``b``."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def keyed_components(mask, r0: int, c0: int, w: int):
    """8-connected components of a tile's ``mask`` (its top-left pixel at (r0, c0) of a raster ``w`` wide), each
    keyed by the smallest linear index ``r * w + c`` of its pixels, which no other tile can give another component.
    Returns ``(labels, keys, rows, cols, ids)``: the label image (0 = none), the key per label - 1, and the mask's
    pixels (tile rows, cols) with their label - 1."""
    import numpy as np
    from scipy import ndimage

    lab, n = ndimage.label(mask, np.ones((3, 3), bool))
    rr, cc = np.nonzero(mask)
    ids = lab[rr, cc] - 1
    keys = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(keys, ids, (rr + r0).astype(np.int64) * w + cc + c0)
    return lab, keys, rr, cc, ids


def seam_links(ring, keys, rr, cc, ids, r0: int, c0: int, w: int) -> tuple[dict, list]:
    """What a tile tells its neighbours about components that may continue across its edge: ``border`` maps the
    linear index of each component pixel on the tile's edge to its key, ``pairs`` lists (key, linear index) for
    every 8-neighbour outside the tile that is set in ``ring`` (the tile's mask with a 1 px ring, shape (th + 2,
    tw + 2)).  Joining: ``union(key, border_of_the_neighbour[index])`` for every pair."""
    import numpy as np

    th, tw = ring.shape[0] - 2, ring.shape[1] - 2
    border, pairs = {}, []
    for i in np.flatnonzero((rr == 0) | (rr == th - 1) | (cc == 0) | (cc == tw - 1)):
        k = int(keys[ids[i]])
        border[int((rr[i] + r0) * w + cc[i] + c0)] = k
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                qr, qc = rr[i] + dr, cc[i] + dc
                if not (0 <= qr < th and 0 <= qc < tw) and ring[qr + 1, qc + 1]:
                    pairs.append((k, int((qr + r0) * w + qc + c0)))
    return border, pairs
