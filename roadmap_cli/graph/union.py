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
