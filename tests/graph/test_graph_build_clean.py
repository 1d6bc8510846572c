"""Tiled skeleton + sknw graph building, seams, cleanup, georeferencing."""
import networkx as nx
import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.morphology import skeletonize

from roadmap_cli.graph import CleanOptions, build_graph, graph_from_mask, graph_from_rasters, line_length
from roadmap_cli.tiling import array_reader


def roads(shape, segments, width=5):
    m = np.zeros(shape, bool)
    for r0, c0, r1, c1 in segments:
        rr, cc = draw_line(r0, c0, r1, c1)
        m[rr, cc] = True
    return ndimage.binary_dilation(m, iterations=width // 2)


def signature(g):
    return (g.number_of_nodes(), g.number_of_edges(), sorted(d for _, d in g.degree()))


def total_length(g):
    return sum(line_length(d["line"]) for _, _, d in g.edges(data=True))


CASES = {
    "cross": ([(50, 5, 50, 95), (5, 50, 95, 50)], (5, 4, [1, 1, 1, 1, 4])),
    "T": ([(30, 5, 30, 95), (30, 50, 95, 50)], (4, 3, [1, 1, 1, 3])),
    "loop": ([(20, 20, 20, 80), (20, 80, 80, 80), (80, 80, 80, 20), (80, 20, 20, 20)], (1, 1, [2])),
    "diagonal across seams": ([(3, 3, 96, 96)], (2, 1, [1, 1])),
    "along the seam": ([(64, 5, 64, 95)], (2, 1, [1, 1])),
    "junction on the seam": ([(10, 63, 90, 63), (50, 10, 50, 90)], (5, 4, [1, 1, 1, 1, 4])),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("tile", [2048, 64, 32, 17])
def test_hand_made_masks_tiled_equals_expected(name, tile):
    segments, expected = CASES[name]
    m = roads((100, 100), segments)
    g = graph_from_mask(m, tile=tile)
    assert signature(g) == expected
    whole = graph_from_mask(m)
    assert abs(total_length(g) - total_length(whole)) < 1.0


def test_cross_geometry_is_centred():
    g = graph_from_mask(roads((100, 100), [(50, 5, 50, 95), (5, 50, 95, 50)]), tile=32)
    junction = [n for n, d in g.degree() if d == 4][0]
    assert np.allclose(g.nodes[junction]["o"], (50, 50), atol=1.5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tiled_graph_equals_whole_graph_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    m = roads((300, 300), [tuple(rng.integers(0, 300, 4)) for _ in range(8)], width=7)
    whole, tiled = graph_from_mask(m), graph_from_mask(m, tile=64)
    assert signature(whole) == signature(tiled)
    assert abs(total_length(whole) - total_length(tiled)) / total_length(whole) < 0.01


def test_tiled_skeleton_equals_whole_skeleton():
    rng = np.random.default_rng(5)
    m = roads((256, 256), [tuple(rng.integers(0, 256, 4)) for _ in range(10)], width=9)
    out = np.zeros_like(m)

    def write(r0, c0, a):
        out[r0:r0 + a.shape[0], c0:c0 + a.shape[1]] = a

    build_graph(array_reader(m), 256, 256, tile=50, halo=32, skeleton=write)
    assert np.array_equal(out, skeletonize(m))


def test_spur_pruning_and_small_components():
    m = roads((120, 120), [(60, 5, 60, 115), (60, 60, 52, 60)], width=3)  # road + 8 px spur
    m |= roads((120, 120), [(10, 10, 10, 16)], width=3)                   # 6 px blob far away
    raw = graph_from_mask(m)
    assert signature(raw)[0] >= 5
    clean = graph_from_mask(m, clean=CleanOptions(gsd=1.0, min_spur_m=10, min_component_m=20, bridge_m=0,
                                                  spur_width_ratio=0))
    assert signature(clean) == (2, 1, [1, 1])


def test_gap_bridging_uses_probability():
    m = roads((60, 200), [(30, 5, 30, 90), (30, 100, 30, 195)], width=3)  # 10 px gap
    prob = m.astype(np.float32)
    prob[28:33, 90:101] = 0.6  # the gap is road-like in the probabilities
    opts = CleanOptions(gsd=1.0, min_spur_m=0, min_component_m=0, bridge_m=15, bridge_min_prob=0.2)
    g = graph_from_mask(m, prob=prob, clean=opts)
    assert signature(g) == (4, 3, [1, 1, 2, 2])  # the bridge stays an edge of its own between the two roads
    assert nx.is_connected(g)
    bridges = [d for _, _, d in g.edges(data=True) if d["bridged"]]
    assert len(bridges) == 1 and bridges[0]["source"] == "bridge"
    assert 9 <= line_length(bridges[0]["line"]) <= 13
    assert all(d["source"] == "skeleton" for _, _, d in g.edges(data=True) if not d["bridged"])
    no_prob = np.where(m, 1.0, 0.0).astype(np.float32)  # the gap looks like background: no bridge
    g2 = graph_from_mask(m, prob=no_prob, clean=opts)
    assert g2.number_of_edges() == 2


def test_gap_bridging_respects_angle():
    m = roads((200, 200), [(100, 5, 100, 90), (5, 100, 90, 100)], width=3)  # dead ends at right angles
    opts = CleanOptions(gsd=1.0, min_spur_m=0, min_component_m=0, bridge_m=15, bridge_angle_deg=30)
    g = graph_from_mask(m, prob=np.ones(m.shape, np.float32), clean=opts)
    assert g.number_of_edges() == 2


def test_raster_graph_stage_equals_in_memory_graph():
    """graph_from_rasters (the extract stage: one pass per tile, join, cleanup) gives the graph that
    graph_from_mask gives on the whole mask, edge widths and probabilities included."""
    rng = np.random.default_rng(5)
    m = roads((300, 300), [tuple(rng.integers(0, 300, 4)) for _ in range(8)], width=7)
    prob = np.where(m, 0.9, 0.1).astype(np.float32)
    clean = CleanOptions(gsd=1.0, min_spur_m=10, min_component_m=20, bridge_m=15)
    ticks = []
    g = graph_from_rasters(array_reader(m), 300, 300, clean, array_reader(prob), tile=64,
                           tick=lambda: ticks.append(1))
    whole = graph_from_mask(m, prob=prob, clean=clean)
    assert signature(g) == signature(whole) and len(ticks) == 25  # 5 x 5 tiles, one pass
    assert abs(total_length(g) - total_length(whole)) < 1e-9

    def widths(gg):  # mean half-width per edge, keyed by its rounded end points
        return {tuple(np.round(np.r_[d["line"][0], d["line"][-1]])): d["sum_w"] / d["n"]
                for _, _, d in gg.edges(data=True)}
    a, b = widths(g), widths(whole)
    assert a.keys() == b.keys()
    assert max(abs(a[k] - b[k]) for k in a) < 1e-5
    expected = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]  # the scene edge counts as background
    e = next(iter(whole.edges(data=True)))[2]
    pix = np.round(e["line"][1:-1]).astype(int)
    assert abs(e["sum_w"] - expected[pix[:, 0], pix[:, 1]].sum()) < 1e-3


def test_edge_attributes_width_and_probability():
    m = roads((80, 200), [(40, 10, 40, 190)], width=9)
    prob = np.where(m, 0.8, 0.0).astype(np.float32)
    g = graph_from_mask(m, prob=prob)
    (_, _, d), = g.edges(data=True)
    assert abs(d["sum_p"] / d["n"] - 0.8) < 1e-5 and abs(d["min_p"] - 0.8) < 1e-5
    width = 2 * d["sum_w"] / d["n"]
    assert 7 <= width <= 11


def test_stable_ids():
    m = roads((100, 100), [(50, 5, 50, 95), (5, 50, 95, 50)])
    a, b = graph_from_mask(m, tile=32), graph_from_mask(m, tile=2048)
    assert list(a.nodes) == list(range(5)) == list(b.nodes)
    assert [k for _, _, k in a.edges(keys=True)] == [k for _, _, k in b.edges(keys=True)]


def _bridges(g):
    return [d for _, _, d in g.edges(data=True) if d["source"] == "bridge"]


def test_dead_end_joins_the_side_of_an_edge():
    """A road ending 12 px short of a crossing road becomes a T junction on it (the edge is split there)."""
    m = roads((120, 120), [(60, 5, 60, 115), (5, 40, 48, 40)], width=3)
    opts = CleanOptions(gsd=1.0, min_spur_m=0, min_component_m=0, bridge_m=15, bridge_angle_deg=30)
    g = graph_from_mask(m, prob=np.where(m, 0.9, 0.0).astype(np.float32), clean=opts)
    assert nx.is_connected(g)
    (b,) = _bridges(g)
    assert abs(b["line"][-1][1] - 40) <= 1 and abs(b["line"][-1][0] - 60) <= 1  # on the road's side, straight ahead
    assert sorted(d for _, d in g.degree()).count(3) == 1  # the T junction
    no_edges = graph_from_mask(m, clean=CleanOptions(gsd=1.0, min_spur_m=0, min_component_m=0, bridge_m=15,
                                                     join_edges=False))
    assert not nx.is_connected(no_edges)  # nothing but the edge's side is ahead of the dead end


def test_bridge_within_one_piece_only_where_the_way_round_is_long():
    """A loop road broken by a 10 px gap: bridged when the way round is more than ``detour`` times the gap."""
    m = roads((120, 120), [(20, 20, 20, 100), (20, 100, 100, 100), (100, 100, 100, 20), (100, 20, 32, 20)],
              width=3)
    base = dict(gsd=1.0, min_spur_m=0, min_component_m=0, bridge_m=15, bridge_angle_deg=30)
    closed = graph_from_mask(m, clean=CleanOptions(**base, bridge_detour=2))
    assert len(_bridges(closed)) == 1 and min(d for _, d in closed.degree()) >= 2  # a ring again
    assert not _bridges(graph_from_mask(m, clean=CleanOptions(**base, bridge_detour=0)))
    assert not _bridges(graph_from_mask(m, clean=CleanOptions(**base, bridge_detour=40)))  # 300 px < 40 x 12 px


def test_bridge_follows_the_probability():
    """Across a gap where the probability bends, the bridge follows the faint road instead of the straight line."""
    m = roads((80, 200), [(40, 5, 40, 80), (40, 120, 40, 195)], width=3)
    prob = np.where(m, 0.9, 0.0).astype(np.float32)
    rr, cc = draw_line(40, 80, 45, 100)
    prob[rr, cc] = 0.4
    rr, cc = draw_line(45, 100, 40, 120)
    prob[rr, cc] = 0.4
    opts = CleanOptions(gsd=1.0, min_spur_m=0, min_component_m=0, bridge_m=45, bridge_angle_deg=30,
                        bridge_follow=True)
    (b,) = _bridges(graph_from_mask(m, prob=prob, clean=opts))
    assert b["line"][:, 0].max() >= 44  # through the bend at row 45
    (s,) = _bridges(graph_from_mask(m, prob=prob, clean=CleanOptions(**{**opts.__dict__, "bridge_follow": False})))
    assert s["line"][:, 0].max() <= 41  # straight


def test_spur_pruning_relative_to_road_width():
    """A 14 px spur off a 13 px wide road survives a 10 px limit but not two road widths."""
    m = roads((160, 160), [(80, 5, 80, 155)], width=13)
    m |= roads((160, 160), [(80, 80, 60, 80)], width=3)  # ends 14 px beyond the wide road's edge
    base = dict(gsd=1.0, min_spur_m=10, min_component_m=0, bridge_m=0)
    kept = graph_from_mask(m, clean=CleanOptions(**base, spur_width_ratio=0))
    pruned = graph_from_mask(m, clean=CleanOptions(**base, spur_width_ratio=2))
    assert kept.number_of_edges() == 3 and pruned.number_of_edges() == 1
