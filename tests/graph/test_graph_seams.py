"""Exact seams: the tiled graph equals one sknw call on the whole skeleton, for dense masks with junctions on
seams and tile corners, any tile size, and a halo small enough that it has to grow (property-based)."""
import numpy as np
import sknw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.morphology import skeletonize

from roadmap_cli.graph import build_graph, graph_from_mask, line_length
from roadmap_cli.tiling import array_reader


def canon(g):
    """Node centres and edges (end centres + pixel set): the graph independent of ids and orientation."""
    def o(n):
        return tuple(np.round(np.asarray(g.nodes[n]["o"], float), 6))
    nodes = sorted(o(n) for n in g.nodes)
    edges = []
    for u, v, d in g.edges(data=True):
        pts = d["pts"][1:-1] if "weight" in d else d["pts"]  # sknw keeps the two node pixels in pts
        edges.append((min(o(u), o(v)), max(o(u), o(v)), tuple(sorted(map(tuple, np.asarray(pts).tolist())))))
    return nodes, sorted(edges)


@st.composite
def dense_masks(draw):
    h = draw(st.integers(24, 110))
    w = draw(st.integers(24, 110))
    tile = draw(st.integers(8, max(h, w)))
    seams_r = list(range(tile, h, tile)) or [h // 2]
    seams_c = list(range(tile, w, tile)) or [w // 2]

    def coord(size, seams):  # a third of the end points sit on or next to a seam or a tile corner
        if draw(st.integers(0, 2)) == 0:
            return int(np.clip(draw(st.sampled_from(seams)) + draw(st.integers(-2, 1)), 0, size - 1))
        return draw(st.integers(0, size - 1))

    m = np.zeros((h, w), bool)
    for _ in range(draw(st.integers(1, 25))):
        r0, c0, r1, c1 = coord(h, seams_r), coord(w, seams_c), coord(h, seams_r), coord(w, seams_c)
        rr, cc = draw_line(r0, c0, r1, c1)
        road = np.zeros_like(m)
        road[rr, cc] = True
        width = draw(st.integers(1, 9))
        m |= ndimage.binary_dilation(road, iterations=width // 2) if width > 1 else road
    for _ in range(draw(st.integers(0, 6))):  # specks and small blobs: isolated nodes, rings, short spurs
        r, c = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        m[r:r + draw(st.integers(1, 4)), c:c + draw(st.integers(1, 4))] = True
    return m, tile


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dense_masks(), st.integers(2, 12))
def test_tiled_graph_equals_one_sknw_call(case, halo):
    m, tile = case
    ref = sknw.build_sknw(skeletonize(m).astype(np.uint16), multi=True, iso=True, ring=True, full=False)
    h, w = m.shape
    tiled = build_graph(array_reader(m), h, w, tile=tile, halo=halo)
    assert canon(tiled) == canon(ref)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dense_masks())
def test_cleaned_tiled_graph_equals_cleaned_one_tile_graph(case):
    m, tile = case
    prob = np.where(m, 0.9, 0.3).astype(np.float32)
    whole = graph_from_mask(m, prob=prob, tile=4096)
    tiled = graph_from_mask(m, prob=prob, tile=tile, halo=8)
    assert sorted(d for _, d in whole.degree()) == sorted(d for _, d in tiled.degree())
    assert list(whole.nodes) == list(tiled.nodes)
    for n in whole.nodes:
        assert np.allclose(whole.nodes[n]["o"], tiled.nodes[n]["o"])
    a, b = list(whole.edges(keys=True, data=True)), list(tiled.edges(keys=True, data=True))
    assert [e[:3] for e in a] == [e[:3] for e in b]
    for (_, _, _, da), (_, _, _, db) in zip(a, b):
        assert abs(line_length(da["line"]) - line_length(db["line"])) <= 0.5
        assert da["n"] == db["n"] and abs(da["sum_w"] - db["sum_w"]) < 1e-3
