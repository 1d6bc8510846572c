"""Sharp edges of the first hour: each bad input or fault of the first-hour issue, reproduced (see TESTING.md)."""
import hashlib
import os
import signal
import subprocess
import sys
import time

import click
import numpy as np
import pytest
import rasterio
import typer
from rasterio.transform import from_origin

from roadmap_cli.cli.main import app


def _scene(path, size=96, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32611",
                       transform=from_origin(500000, 4000000, 1, 1), nodata=nodata) as ds:
        ds.write(np.full((3, size, size), 90, np.uint8))
    return path


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_every_option_has_help_with_no_value_markers():
    def walk(cmd, name):
        if isinstance(cmd, click.Group):
            for n, sub in cmd.commands.items():
                yield from walk(sub, f"{name} {n}")
        else:
            for p in cmd.params:
                yield name, p

    for name, p in walk(typer.main.get_command(app), "roadmap"):
        if isinstance(p, click.Option) and p.name != "help":
            assert p.help, f"{name} {p.opts} has no help"
    from typer.testing import CliRunner
    out = CliRunner().invoke(app, ["extract", "--help"], prog_name="roadmap", terminal_width=120).output
    assert "<bool>" not in out and "{scene}" not in out and "Usage: roadmap extract [OPTIONS] SCENE" in out, out
    assert "64 at 512" in " ".join(out.split())  # --overlap describes the bundled model's tile, not 1024


@pytest.mark.parametrize("flag, value", [("--gsd", "nan"), ("--gsd", "inf"), ("--model-gsd", "-2"),
                                         ("--min-spur-m", "-1"), ("--min-component-m", "-5"), ("--bridge-m", "-1"),
                                         ("--simplify-m", "-0.5"), ("--bridge-m", "nan")])
def test_bad_numbers_are_refused_before_any_work(cli, tmp_path, tiny_ckpt, flag, value):
    scene = _scene(tmp_path / "s.tif")
    code, _, err = cli("extract", scene, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, flag, value)
    assert code == 2 and err.startswith("roadmap: error:") and len(err.strip().splitlines()) == 1
    assert flag.lstrip("-").split("-")[0] in err
    assert not list(tmp_path.glob("r.gpkg*"))  # no output, no work folder


def test_outputs_never_overwrite_inputs(cli, tmp_path, tiny_ckpt):
    scene = _scene(tmp_path / "s.tif")
    before = _sha(scene), _sha(tiny_ckpt)
    for flag, target in (("--prob-out", scene), ("--mask-out", scene)):
        code, _, err = cli("extract", scene, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, flag, target,
                           "--overwrite")
        assert code == 2 and "never writes over an input" in err
    code, _, err = cli("extract", scene, "-o", scene.with_suffix(".gpkg"), "--model", tiny_ckpt, "--prob-out",
                       tmp_path / "x.tif", "--mask-out", tmp_path / "x.tif")
    assert code == 2 and "same file" in err
    assert (_sha(scene), _sha(tiny_ckpt)) == before


def test_output_that_is_a_folder(cli, tmp_path, tiny_ckpt):
    scene = _scene(tmp_path / "s.tif")
    (tmp_path / "out.gpkg").mkdir()
    code, _, err = cli("extract", scene, "-o", tmp_path / "out.gpkg", "--model", tiny_ckpt, "--overwrite")
    assert code == 2 and "is a folder" in err and (tmp_path / "out.gpkg").is_dir()


def test_yaml_with_python_tags_is_a_clear_error(cli, tmp_path):
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("epochs: !!python/object/apply:os.system ['echo pwned']\n")
    code, _, err = cli("train", "--dataset", "folder", "--root", tmp_path, "--config", cfg, "--out", tmp_path / "o")
    assert code == 2 and "not plain YAML" in err and "internal error" not in err
    bad_variant = tmp_path / "v.yaml"
    bad_variant.write_text("name: !!python/name:os.system\n")
    code, _, err = cli("extract", _scene(tmp_path / "s.tif"), "-o", tmp_path / "r.gpkg", "--model", bad_variant)
    assert code == 2 and "not plain YAML" in err


def test_failed_download_creates_no_folder(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ROADMAP_MIRROR", "http://127.0.0.1:9")  # nothing listens on the discard port
    dest = tmp_path / "new" / "ckpts"
    code, _, err = cli("models", "download", "sam2.1_hiera_tiny.pt", "--dest", dest)
    assert code == 3 and "cannot reach" in err
    assert not (tmp_path / "new").exists()


def test_huge_header_dry_run_answers_at_once(tmp_path):
    """A few-KB sparse GeoTIFF claiming 10^6 x 10^6 px: the plan comes without reading the raster."""
    big = tmp_path / "big.tif"
    with rasterio.open(big, "w", driver="GTiff", width=1_000_000, height=1_000_000, count=3, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(500000, 4000000, 1, 1), tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate", SPARSE_OK=True, BIGTIFF="YES"):
        pass
    assert big.stat().st_size < 50_000_000
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "roadmap_cli", "extract", str(big), "-o", str(tmp_path / "r.gpkg"),
                        "--dry-run"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1000000 x 1000000 px" in r.stdout and "tiles:" in r.stdout
    assert time.time() - t0 < 120


def test_ctrl_c_says_how_to_continue(tmp_path, tiny_ckpt):
    scene = _scene(tmp_path / "s.tif", size=900)
    args = [sys.executable, "-m", "roadmap_cli", "-q", "extract", str(scene), "-o", str(tmp_path / "r.gpkg"),
            "--model", str(tiny_ckpt), "--tile", "128", "--overlap", "32", "--batch-size", "1"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    tiles = tmp_path / "r.gpkg.roadmap-work" / "tiles"
    deadline = time.time() + 120
    while time.time() < deadline and (not tiles.exists() or not any(tiles.glob("*.npy"))):
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert "interrupted; run the same command with --resume to continue" in err and "Traceback" not in err
    assert tiles.exists()  # the work is kept for --resume


def test_verbose_logs_each_stage(tmp_path, tiny_ckpt):
    scene = _scene(tmp_path / "s.tif")
    r = subprocess.run([sys.executable, "-m", "roadmap_cli", "-v", "extract", str(scene), "-o",
                        str(tmp_path / "r.gpkg"), "--model", str(tiny_ckpt)], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for stage in ("infer:", "stitch:", "graph:", "write:", "working grid"):
        assert stage in r.stderr
    assert "DEBUG" not in r.stderr and "hydra" not in r.stderr.lower()


def test_geojson_layer_is_named_after_the_output(tmp_path, tiny_ckpt, cli):
    import pyogrio
    code, _, err = cli("extract", _scene(tmp_path / "s.tif"), "-o", tmp_path / "roads.geojson", "--model", tiny_ckpt)
    assert code == 0, err
    assert [str(n) for n, _ in pyogrio.list_layers(tmp_path / "roads.geojson")] == ["roads"]


def test_score_reads_roadmaps_gpkg_quietly_and_names_the_prediction(cli, tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString, Point
    lines = gpd.GeoDataFrame({"id": [0]}, geometry=[LineString([(500000, 4000000), (500300, 4000000)])],
                             crs="EPSG:32611")
    lines.to_file(tmp_path / "mine.gpkg", layer="edges")
    gpd.GeoDataFrame({"id": [0, 1]}, geometry=[Point(500000, 4000000), Point(500300, 4000000)],
                     crs="EPSG:32611").to_file(tmp_path / "mine.gpkg", layer="nodes")
    lines.to_file(tmp_path / "truth.geojson")
    code, out, err = cli("score", tmp_path / "mine.gpkg", tmp_path / "truth.geojson")
    assert code == 0, err
    assert "More than one layer" not in out + err and "mine" in out and "truth" not in out
