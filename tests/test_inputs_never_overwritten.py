"""No command writes over (or removes) an input (issue 32): hypothesis draws a command, one of its outputs and an
input it meets (directly, through ``..``, a symbolic link or a hard link; the input given itself, in a folder, a
list or a STAC item), with and without ``--overwrite``; every draw must be refused with exit 2 before any work, and
every file of the inputs must be unchanged to the bit."""
import hashlib
import json
import os
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from conftest import run_cli_in
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin
from shapely.geometry import LineString

from roadmap_cli.errors import InputError
from roadmap_cli.io.guard import Inputs, guard_outputs

E0, N0 = 660000.0, 4010000.0


def _raster(path: Path, size: int = 96, x0: float = E0):
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32611",
                       transform=from_origin(x0, N0, 1.0, 1.0)) as ds:
        ds.write(np.random.default_rng(int(x0) % 97).integers(0, 255, (3, size, size), dtype=np.uint8))


def _world(root: Path) -> None:
    """Every input a scenario may name: scenes (alone, in a folder, a list, a STAC item), road vectors, checkpoints,
    a recipe, a training run folder."""
    _raster(root / "scene.tif")
    (root / "scenes").mkdir()
    _raster(root / "scenes" / "a.tif")
    _raster(root / "scenes" / "b.tif", x0=E0 + 96)
    (root / "list.txt").write_text("# scenes\n\nscene.tif\n")
    (root / "stac.json").write_text(json.dumps({"type": "Feature", "id": "s", "assets": {
        "visual": {"href": "scene.tif", "type": "image/tiff"}}}))
    lines = [LineString([(E0 + 5, N0 - 48), (E0 + 90, N0 - 48)]), LineString([(E0 + 48, N0 - 5), (E0 + 48, N0 - 90)])]
    for name in ("roads.geojson", "gt.geojson"):
        gpd.GeoDataFrame(geometry=lines, crs=32611).to_file(root / name)
    gpd.GeoDataFrame(geometry=lines, crs=32611).to_file(root / "roads.json", driver="GeoJSON")
    gpd.GeoDataFrame(geometry=lines[:1], crs=32611).to_file(root / "pred.gpkg")
    (root / "init.pt").write_bytes(b"a checkpoint the guard must never need to read")
    (root / "run").mkdir()
    (root / "run" / "best.pt").write_bytes(b"an earlier run's best weights")
    (root / "run" / "summary.yaml").write_text("epochs: 1\n")
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "labels").mkdir()
    (root / "work.adapt").mkdir()
    _raster(root / "work.adapt" / "held.tif")
    (root / "out.gpkg.roadmap-work").mkdir()
    _raster(root / "out.gpkg.roadmap-work" / "kept.tif")


# (command argv with {OUT} where the colliding output goes, the input it meets, whether OUT is a removed folder's
# owner rather than the file itself)
SCENARIOS = [
    (["extract", "scene.tif", "-o", "o.gpkg", "--prob-out", "{OUT}"], "scene.tif"),
    (["extract", "scene.tif", "-o", "o.gpkg", "--mask-out", "{OUT}"], "scene.tif"),
    (["extract", "scenes", "-o", "o.gpkg", "--prob-out", "{OUT}"], "scenes/a.tif"),
    (["extract", "scenes", "-o", "o.gpkg", "--mask-out", "{OUT}"], "scenes/b.tif"),
    (["extract", "list.txt", "-o", "o.gpkg", "--prob-out", "{OUT}"], "scene.tif"),
    (["extract", "stac.json", "-o", "o.gpkg", "--mask-out", "{OUT}"], "scene.tif"),
    (["extract", "scene.tif", "scenes/a.tif", "-o", "o.gpkg", "--prob-out", "{OUT}"], "scenes/a.tif"),
    (["adapt", "scene.tif", "roads.geojson", "-o", "{OUT}", "--init", "init.pt"], "init.pt"),
    (["adapt", "scene.tif", "roads.geojson", "-o", "m.pt", "--json", "{OUT}"], "roads.geojson"),
    (["adapt", "scene.tif", "roads.geojson", "-o", "m.pt", "--json", "{OUT}"], "scene.tif"),
    (["adapt", "list.txt", "roads.geojson", "-o", "m.pt", "--json", "{OUT}"], "scene.tif"),
    (["score", "pred.gpkg", "gt.geojson", "--json", "{OUT}"], "gt.geojson"),
    (["score", "pred.gpkg", "gt.geojson", "--csv", "{OUT}"], "pred.gpkg"),
    (["train", "--dataset", "folder", "--root", "data", "--out", "run", "--init", "{OUT}"], "run/best.pt"),
    (["train", "--dataset", "folder", "--root", "data", "--out", "run", "--config", "{OUT}"], "run/summary.yaml"),
]
# a folder the run removes holds an input: the scene given inside it
REMOVED = [
    (["extract", "out.gpkg.roadmap-work/kept.tif", "-o", "out.gpkg"], "out.gpkg.roadmap-work/kept.tif"),
    (["adapt", "work.adapt/held.tif", "roads.geojson", "-o", "work.pt"], "work.adapt/held.tif"),
]


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _point_at(root: Path, target: str, how: str) -> str:
    """A path to ``target`` (relative to ``root``): itself, through ``..``, a new symbolic link or hard link."""
    if how == "same":
        return target
    if how == "dotted":
        return str(Path("scenes") / ".." / target)
    link = Path(target).with_name("link_" + Path(target).name)
    if how == "symlink":
        os.symlink(os.path.abspath(root / target), root / link)
    else:
        os.link(root / target, root / link)
    return str(link)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # capsys read each time
@given(st.sampled_from(SCENARIOS), st.sampled_from(["same", "dotted", "symlink", "hardlink"]), st.booleans())
def test_no_output_ever_meets_an_input(capsys, scenario, how, overwrite):
    """(train: {OUT} is an input, --init/--config, that reaches a file the run writes into --out.)"""
    argv, target = scenario
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _world(root)
        out = _point_at(root, target, how)
        before = _digest(root)
        args = [a.replace("{OUT}", out) for a in argv] + (["--overwrite"] if overwrite and argv[0] != "train" else [])
        code = run_cli_in(root, *args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert "never writes over an input" in err, (args, err)
        assert _digest(root) == before


@pytest.mark.parametrize("argv,target", REMOVED)
@pytest.mark.parametrize("overwrite", [False, True])
def test_no_run_removes_a_folder_that_holds_an_input(tmp_path, monkeypatch, cli, argv, target, overwrite):
    _world(tmp_path)
    before = _digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*argv, *(["--overwrite"] if overwrite else []))
    assert code == 2 and "never removes an input" in err and target.split("/")[0] in err
    assert _digest(tmp_path) == before


def test_a_folder_scan_passes_over_roadmaps_own_outputs_only(tmp_path):
    """Re-running into a scanned folder: a probability raster roadmap wrote there before is not a scene; a raster of
    the same name that roadmap did not write is one, so writing over it is refused."""
    from roadmap_cli.io.mosaic import OWN_OUTPUT_TAG, expand_inputs

    (tmp_path / "s").mkdir()
    for n in ("a.tif", "prob.tif"):
        _raster(tmp_path / "s" / n)
    found = expand_inputs([tmp_path / "s"], exclude=[tmp_path / "s" / "prob.tif"])
    assert sorted(Path(f).name for f in found) == ["a.tif", "prob.tif"]  # not roadmap's: a scene
    with rasterio.open(tmp_path / "s" / "prob.tif", "r+") as ds:
        ds.update_tags(**{OWN_OUTPUT_TAG: "prob.tif"})
    found = expand_inputs([tmp_path / "s"], exclude=[tmp_path / "s" / "prob.tif"])
    assert [Path(f).name for f in found] == ["a.tif"]


def test_guard_unit(tmp_path):
    a = tmp_path / "a.tif"
    a.write_bytes(b"x")
    os.link(a, tmp_path / "hard.tif")
    os.symlink(a, tmp_path / "soft.tif")
    ins = Inputs({"the scene {}": [a]})
    for p in (a, tmp_path / "hard.tif", tmp_path / "soft.tif", tmp_path / "sub" / ".." / "a.tif"):
        with pytest.raises(InputError, match="is the scene"):
            guard_outputs({"-o": p}, ins)
    guard_outputs({"-o": tmp_path / "b.tif", "--json": None}, ins)  # a new file: fine
    with pytest.raises(InputError, match="are the same file"):
        guard_outputs({"-o": tmp_path / "b.tif", "--csv": tmp_path / "b.tif"}, ins)
    with pytest.raises(InputError, match="never removes an input"):
        guard_outputs({}, ins, removes={"the work folder": tmp_path})
    guard_outputs({"-o": "/vsis3/bucket/a.tif"}, Inputs({"x {}": ["/vsicurl/http://h/a.tif"]}))  # remote: not local


def test_adapts_default_report_name_never_meets_the_vectors(tmp_path, monkeypatch, cli):
    """``-o roads.pt`` names its JSON report ``roads.json``: when that is the road vectors, the run is refused."""
    _world(tmp_path)
    before = _digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("adapt", "scene.tif", "roads.json", "-o", "roads.pt", "--overwrite")
    assert code == 2 and "--json roads.json is the road vectors roads.json" in err
    assert _digest(tmp_path) == before


def test_pairs_from_vectors_never_meet_their_scene(tmp_path, monkeypatch, cli):
    """``datasets from-vectors`` writes ``OUT/images/STEM.png``: a georeferenced PNG scene at that path is refused."""
    _world(tmp_path)
    with rasterio.open(tmp_path / "data" / "images" / "s.png", "w", driver="PNG", width=96, height=96, count=3,
                       dtype="uint8", crs="EPSG:32611", transform=from_origin(E0, N0, 1.0, 1.0)) as ds:
        ds.write(np.full((3, 96, 96), 90, np.uint8))
    before = _digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("datasets", "from-vectors", "data/images/s.png", "roads.geojson", "--out", "data",
                       "--overwrite")
    assert code == 2 and "is the scene data/images/s.png" in err, err
    assert _digest(tmp_path) == before
