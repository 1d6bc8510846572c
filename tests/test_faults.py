"""Nothing lost, nothing corrupted: concurrent runs, full disks, killed writers, absurd rasters and numbers, hostile
archives.  Each case of the faults issue is reproduced here first (see TESTING.md)."""
import contextlib
import errno
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import rasterio
import torch
from conftest import error_lines, interrupted_at_save
from rasterio.transform import from_origin

from roadmap_cli import extract as ex
from roadmap_cli.errors import CheckpointError, InputError, OutputError
from roadmap_cli.infer import stitch
from roadmap_cli.io.download import safe_extract


def _scene(path, size=300, dtype="uint8", fill=90.0, nan_box=None):
    data = np.full((3, size, size), fill, dtype)
    rr = np.arange(size)
    data[:, size // 2 - 3:size // 2 + 3, :] = 200
    data[:, :, rr[size // 3 - 3:size // 3 + 3]] = 200
    if nan_box is not None:
        r0, r1, c0, c1 = nan_box
        data[:, r0:r1, c0:c1] = np.nan
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype=dtype, crs="EPSG:32611",
                       transform=from_origin(500000, 4000000, 1, 1)) as ds:
        ds.write(data)
    return path


def _run(scene, out, ckpt, *extra, wait=True):
    args = [sys.executable, "-m", "roadmap_cli", "-q", "extract", str(scene), "-o", str(out), "--model", str(ckpt),
            "--tile", "128", "--overlap", "32", "--batch-size", "1", "--device", "cpu", *map(str, extra)]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=out.parent,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if wait:
        _, err = p.communicate(timeout=300)
        return p.returncode, err
    return p


# ------------------------------------------------------------------------------------------------ concurrency

def test_second_run_on_the_same_output_fails_at_once_naming_the_first(tmp_path, tiny_ckpt):
    """A real roadmap extract runs; a second one on the same output (a real second process) fails at once."""
    scene = _scene(tmp_path / "s.tif", size=1500)
    out = tmp_path / "r.gpkg"
    first = _run(scene, out, tiny_ckpt, "--prob-out", tmp_path / "p.tif", wait=False)
    tiles = tmp_path / "r.gpkg.roadmap-work" / "tiles"
    deadline = time.time() + 120
    while time.time() < deadline and not (tiles.exists() and any(tiles.glob("*.npy"))):
        time.sleep(0.02)
    code, err = _run(scene, out, tiny_ckpt, "--prob-out", tmp_path / "p.tif")
    assert first.poll() is None, "the first run ended before the second tried; make the scene larger"
    assert code == 2 and f"another roadmap run (pid {first.pid}) is writing" in err, err
    assert first.wait(timeout=600) == 0, first.stderr.read()
    with rasterio.open(tmp_path / "p.tif") as p:  # the first run's outputs are whole
        prob = p.read(1)
    assert (prob >= 0).all() and not (tmp_path / "r.gpkg.roadmap-lock").exists()


def test_lock_refuses_every_mode_while_held_and_frees_on_exit(tmp_path, tiny_ckpt):
    """While another process holds the output's lock, plain, --resume and --overwrite runs all fail at once naming
    it; once it is gone (the lock dies with its process) a run proceeds."""
    scene = _scene(tmp_path / "s.tif")
    out = tmp_path / "r.gpkg"
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom roadmap_cli.io.atomic import run_lock\n"
                               f"with run_lock({str(out)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    for extra in ([], ["--resume"], ["--overwrite"]):
        code, err = _run(scene, out, tiny_ckpt, *extra)
        assert code == 2 and f"another roadmap run (pid {holder.pid}) is writing" in err, (extra, err)
    holder.kill()  # even kill -9: the kernel drops the lock with the process
    holder.wait()
    code, err = _run(scene, out, tiny_ckpt)
    assert code == 0, err


# ------------------------------------------------------------------------------------------- resume and batching

def test_resume_with_another_batch_size_is_refused_clearly(tmp_path, tiny_ckpt, monkeypatch):
    scene = _scene(tmp_path / "s.tif")
    kw = dict(model=str(tiny_ckpt), tile=128, overlap=32, batch_size=2)
    with interrupted_at_save(monkeypatch, 3):
        ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "r.gpkg", **kw))
    with pytest.raises(InputError, match=r"the interrupted run used --batch-size 2 \(now 1\)"):
        ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "r.gpkg", resume=True,
                                         **{**kw, "batch_size": 1}))
    r = ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "r.gpkg", resume=True, **kw))
    assert r.tiles == 9


# ------------------------------------------------------------------------------------------------- full disks

def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_predicting_keeps_the_work_and_resume_finishes(tmp_path, tiny_ckpt, monkeypatch):
    scene = _scene(tmp_path / "s.tif")
    kw = dict(model=str(tiny_ckpt), tile=128, overlap=32, batch_size=1)
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "a.gpkg", prob_out=tmp_path / "a.tif", **kw))
    real = stitch.TileCache.put
    calls = {"n": 0}

    def filling(self, i, j, p):
        calls["n"] += 1
        if calls["n"] == 4:
            _enospc()
        return real(self, i, j, p)

    monkeypatch.setattr(stitch.TileCache, "put", filling)
    with pytest.raises(OutputError, match="the disk is full.*--resume") as e:
        ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "b.gpkg", prob_out=tmp_path / "b.tif", **kw))
    assert e.value.exit_code == 2
    work = tmp_path / "b.gpkg.roadmap-work"
    assert len(list((work / "tiles").glob("*.npy"))) == 3 and not (tmp_path / "b.gpkg").exists()
    monkeypatch.setattr(stitch.TileCache, "put", real)
    ex.run_extract(ex.ExtractOptions(scene=scene, output=tmp_path / "b.gpkg", prob_out=tmp_path / "b.tif",
                                     resume=True, **kw))
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a.read(), b.read())
    assert not work.exists()


def test_disk_full_while_writing_outputs_then_plain_resume(cli, tmp_path, tiny_ckpt, monkeypatch):
    """The GeoPackage was written, the COG was not: --resume alone finishes (no --overwrite needed)."""
    scene = _scene(tmp_path / "s.tif")
    monkeypatch.setattr(ex, "_to_cog", _enospc)
    args = ["extract", scene, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt, "--tile", "128",
            "--prob-out", tmp_path / "p.tif"]
    code, _, err = cli(*args)
    errors = error_lines(err)  # without a terminal the progress lines come first
    assert code == 2 and "the disk is full" in err and len(errors) == 1 and err.strip().endswith(errors[0])
    assert (tmp_path / "r.gpkg").exists() and (tmp_path / "r.gpkg.roadmap-work").is_dir()
    monkeypatch.undo()
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    assert (tmp_path / "p.tif").exists() and not (tmp_path / "r.gpkg.roadmap-work").exists()


def test_free_space_is_checked_before_the_run(cli, tmp_path, tiny_ckpt, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9, 1000))
    code, _, err = cli("extract", _scene(tmp_path / "s.tif"), "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt)
    assert code == 2 and "GB of scratch space" in err and "free" in err
    assert not (tmp_path / "r.gpkg.roadmap-work").exists() and not (tmp_path / "r.gpkg").exists()


# ------------------------------------------------------------------------------------------ killed writers

def test_temp_files_of_a_killed_writer_are_removed(cli, tmp_path, tiny_ckpt):
    stale = [tmp_path / ".r.99999999.k3j.part.gpkg", tmp_path / ".r.99999999.k3j.part.gpkg-journal"]
    for f in stale:
        f.write_bytes(b"half")
    mine = tmp_path / f".r.{os.getpid()}.abc.part.gpkg"  # a live writer's file stays
    mine.write_bytes(b"live")
    code, _, err = cli("extract", _scene(tmp_path / "s.tif"), "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt)
    assert code == 0, err
    assert not any(f.exists() for f in stale) and mine.exists()


# ------------------------------------------------------------------------------------------ absurd inputs

def test_nan_pixels_are_nodata_even_without_a_tag(cli, tmp_path, tiny_ckpt):
    allnan = _scene(tmp_path / "n.tif", size=96, dtype="float32", fill=np.nan)
    with rasterio.open(allnan, "r+") as ds:
        ds.write(np.full((3, 96, 96), np.nan, np.float32))
    code, _, err = cli("extract", allnan, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt)
    assert code == 2 and "no valid pixels" in err
    part = _scene(tmp_path / "p.tif", size=128, dtype="float32", nan_box=(0, 128, 64, 128))
    code, _, err = cli("extract", part, "-o", tmp_path / "q.gpkg", "--model", tiny_ckpt, "--prob-out",
                       tmp_path / "q.tif")
    assert code == 0, err
    with rasterio.open(tmp_path / "q.tif") as q:
        m = q.read(1, masked=True)
    assert m.mask[:, 66:].all() and not m.mask[:, :62].any()


def test_checkpoint_asking_for_a_huge_model_is_refused(tmp_path, tiny_cfg):
    from roadmap_cli.weights import load_model
    ck = {"format": "roadmap-checkpoint", "version": 1, "model": {},
          "model_config": tiny_cfg.replace(embed_dim=8192, d_model=8192).to_dict()}
    torch.save(ck, tmp_path / "huge.pt")
    t0 = time.time()
    with pytest.raises(CheckpointError, match="asks for a model of .* G parameters"):
        load_model(tmp_path / "huge.pt")
    assert time.time() - t0 < 60  # refused from the meta-device count, not after allocating
    bad = tmp_path / "bad.yaml"
    bad.write_text("embed_dim: [1, 2\n")
    with pytest.raises(CheckpointError, match="not plain YAML"):
        load_model(bad)


@pytest.mark.parametrize("args, message", [
    (["score", "P", "G", "--node-spacing-m", "0"], "--node-spacing-m must be a positive number"),
    (["score", "P", "G", "--slack", "-3"], "--slack must be >= 0"),
    (["score", "P", "G", "--gsd", "0"], "--gsd must be a positive number"),
    (["score", "P", "G", "--gsd", "nan"], "--gsd must be a positive number"),
    (["train", "--dataset", "folder", "--root", "D", "--crop", "-64"], "--crop must be a positive number"),
    (["train", "--dataset", "folder", "--root", "D", "--crop", "0"], "--crop must be a positive number"),
    (["train", "--dataset", "folder", "--root", "D", "--batch-size", "0"], "--batch-size must be a positive"),
    (["train", "--dataset", "folder", "--root", "D", "--lr", "-1"], "--lr must be a positive number"),
    (["train", "--dataset", "folder", "--root", "D", "--epochs", "0"], "--epochs must be a positive number"),
    (["train", "--dataset", "folder", "--root", "D", "--select", "bogus"], "--select bogus: not a validation"),
    (["datasets", "from-vectors", "S", "G", "--out", "D", "--gsd", "nan"], "--gsd and --road-width-m must be"),
    (["extract", "S", "-o", "O", "--tile", "128", "--overlap", "128"], "more than half of --tile"),
    (["extract", "S", "-o", "O", "--to-crs", "EPSG:999999"], "--to-crs EPSG:999999: not a CRS"),
])
def test_numbers_and_names_are_checked_before_any_work(cli, tmp_path, args, message):
    scene = _scene(tmp_path / "s.tif", size=64)
    subs = {"P": tmp_path, "G": tmp_path, "D": tmp_path / "data", "S": scene, "O": tmp_path / "o.gpkg"}
    (tmp_path / "data").mkdir()
    code, _, err = cli(*[subs.get(a, a) for a in args])
    assert code == 2 and message in err and "internal error" not in err, err
    assert not (tmp_path / "o.gpkg").exists() and not list((tmp_path / "data").iterdir())


def test_score_refuses_ground_truth_without_lines(cli, tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString, Point
    gpd.GeoDataFrame(geometry=[Point(500000, 4000000)], crs="EPSG:32611").to_file(tmp_path / "pts.geojson")
    gpd.GeoDataFrame(geometry=[LineString([(500000, 4000000), (500100, 4000000)])],
                     crs="EPSG:32611").to_file(tmp_path / "pred.geojson")
    code, _, err = cli("score", tmp_path / "pred.geojson", tmp_path / "pts.geojson")
    assert code == 2 and "holds no LineString features" in err


# ------------------------------------------------------------------------------------------------- archives

def _zip(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return path


def test_archives_are_checked_whole_before_the_first_byte(tmp_path):
    root = tmp_path / "out"
    slip = _zip(tmp_path / "slip.zip", [("a/ok.txt", b"fine"), ("../evil.txt", b"x")])
    with pytest.raises(InputError, match="outside"):
        safe_extract(slip, root)
    assert not root.exists() and not (tmp_path / "evil.txt").exists()  # the good member was not written either
    twice = _zip(tmp_path / "twice.zip", [("a.txt", b"1"), ("b.txt", b"2")])
    with zipfile.ZipFile(twice, "a") as z:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr("a.txt", b"3")
    with pytest.raises(InputError, match="twice"):
        safe_extract(twice, root)
    clash = _zip(tmp_path / "clash.zip", [("d", b"file"), ("d/x.txt", b"under a file")])
    with pytest.raises(InputError, match="a file and a folder"):
        safe_extract(clash, root)
    big = _zip(tmp_path / "big.zip", [("zeros.bin", b"\0" * 5_000_000)])
    with pytest.raises(InputError, match="would unpack to"):
        safe_extract(big, root, max_bytes=1_000_000)
    assert not root.exists()
    good = _zip(tmp_path / "good.zip", [("train/1_sat.jpg", b"img"), ("train/1_mask.png", b"lab")])
    safe_extract(good, root)
    assert (root / "train" / "1_mask.png").read_bytes() == b"lab"


def test_zip_bomb_ratio_is_refused(tmp_path):
    import struct
    bomb = _zip(tmp_path / "bomb.zip", [("a.bin", b"\0" * 1000)])
    data = bytearray(bomb.read_bytes())
    # claim 2 GiB uncompressed in both headers (the local header at 0, the central directory entry later)
    data[22:26] = struct.pack("<I", 2 ** 31)
    cd = data.index(b"PK\x01\x02")
    data[cd + 24:cd + 28] = struct.pack("<I", 2 ** 31)
    bomb.write_bytes(bytes(data))
    with pytest.raises(InputError, match="zip bomb|would unpack to"):
        safe_extract(bomb, tmp_path / "out", max_bytes=1 << 40)
    assert not (tmp_path / "out").exists()


def test_train_and_adapt_hold_a_run_lock(cli, tmp_path):
    """Issue 37: a second train into one --out, or adapt onto one checkpoint, is refused at once with the live pid
    (the first run is stood in for by holding its lock here); once it is released, the run goes on as usual."""
    import geopandas as gpd
    from shapely.geometry import LineString

    from roadmap_cli.io.atomic import run_lock

    (tmp_path / "data").mkdir()
    with run_lock(tmp_path / "run"):
        code, _, err = cli("train", "--dataset", "folder", "--root", tmp_path / "data", "--out", tmp_path / "run",
                           "--model", "roadmap-compact")
    assert code == 2 and f"another roadmap run (pid {os.getpid()})" in err
    code, _, err = cli("train", "--dataset", "folder", "--root", tmp_path / "data", "--out", tmp_path / "run",
                       "--model", "roadmap-compact")
    assert code == 2 and "another roadmap run" not in err  # unlocked: it gets as far as the (empty) data
    assert not (tmp_path / "run.roadmap-lock").exists()
    with rasterio.open(tmp_path / "s.tif", "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(660000, 4010000, 1, 1)) as ds:
        ds.write(np.full((3, 64, 64), 90, np.uint8))
    gpd.GeoDataFrame(geometry=[LineString([(660005, 4009968), (660060, 4009968)])], crs=32611).to_file(
        tmp_path / "r.geojson")
    with run_lock(tmp_path / "m.pt"):
        code, _, err = cli("adapt", tmp_path / "s.tif", tmp_path / "r.geojson", "-o", tmp_path / "m.pt")
    assert code == 2 and f"another roadmap run (pid {os.getpid()})" in err
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.adapt").exists()


SERVE = ("import functools, http.server, sys\n"
         "class Quiet(http.server.SimpleHTTPRequestHandler):\n"
         "    def log_message(self, *a):\n        pass\n"
         "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=sys.argv[1]))\n"
         "print(s.server_address[1], flush=True)\ns.serve_forever()\n")


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server (127.0.0.1 only, in its own process: GDAL holds the GIL while it waits for the answer)
    over ``tmp_path / "www"``; yields (folder, host:port)."""
    www = tmp_path / "www"
    (www / "bucket").mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(www)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield www, f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_stac_hrefs_over_http_and_s3_are_read(cli, tmp_path, http_folder, monkeypatch):
    """Issue 37: STAC items whose assets are http(s) or s3 hrefs are read through GDAL (/vsicurl/, /vsis3/), here
    from a server on 127.0.0.1; an href the server does not have is one line and exit 2."""
    import json

    www, host = http_folder
    for name in ("bucket/a.tif",):
        with rasterio.open(www / name, "w", driver="GTiff", width=96, height=96, count=3, dtype="uint8",
                           crs="EPSG:32611", transform=from_origin(660000, 4010000, 1, 1)) as ds:
            ds.write(np.random.default_rng(0).integers(0, 255, (3, 96, 96), dtype=np.uint8))
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")  # /vsis3/ against the local server, path-style, plain http
    monkeypatch.setenv("AWS_S3_ENDPOINT", host)
    monkeypatch.setenv("AWS_HTTPS", "NO")
    monkeypatch.setenv("AWS_VIRTUAL_HOSTING", "FALSE")
    for kind, href in (("http", f"http://{host}/bucket/a.tif"), ("s3", "s3://bucket/a.tif")):
        (tmp_path / f"{kind}.json").write_text(json.dumps({"type": "Feature", "id": kind, "assets": {
            "visual": {"href": href, "type": "image/tiff"}}}))
        code, _, err = cli("-q", "extract", tmp_path / f"{kind}.json", "-o", tmp_path / f"{kind}.gpkg")
        assert code == 0, (kind, err)
        assert (tmp_path / f"{kind}.gpkg").is_file()
    (tmp_path / "gone.json").write_text(json.dumps({"type": "Feature", "id": "g", "assets": {
        "visual": {"href": f"http://{host}/bucket/gone.tif"}}}))
    code, _, err = cli("-q", "extract", tmp_path / "gone.json", "-o", tmp_path / "gone.gpkg")
    assert code == 2 and "cannot be read over the network" in error_lines(err)[0]
    assert not (tmp_path / "gone.gpkg").exists()


def _mount(args) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KB tmpfs, filled: every write there fails with ENOSPC (needs root's mount; skipped elsewhere)."""
    d = tmp_path / "full"
    d.mkdir()
    if not _mount(["-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)]):
        pytest.skip("cannot mount a tmpfs here")
    try:
        with open(d / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


@pytest.fixture
def read_only(tmp_path):
    """A read-only bind mount (root is refused too; skipped where it cannot be mounted)."""
    d = tmp_path / "ro"
    d.mkdir()
    if not _mount(["--bind", "-o", "ro", str(d), str(d)]):
        pytest.skip("cannot bind-mount read-only here")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


def _small_world(tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString

    with rasterio.open(tmp_path / "s.tif", "w", driver="GTiff", width=160, height=160, count=3, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(660000, 4010000, 1, 1)) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 160, 160), dtype=np.uint8))
    lines = [LineString([(660005, 4009920), (660155, 4009920)]), LineString([(660080, 4009995), (660080, 4009845)])]
    gpd.GeoDataFrame(geometry=lines, crs=32611).to_file(tmp_path / "r.geojson")


def test_a_full_disk_under_any_output_is_one_line_and_exit_2(cli, tmp_path, full_disk, tiny_ckpt):
    """Issue 37: ENOSPC under a second output (the probability raster on another disk, score's JSON, a dataset's
    pairs, adapt's checkpoint and work folder, a training run's folder): one line naming the disk's trouble, exit 2,
    no half-written file."""
    _small_world(tmp_path)
    runs = {
        "extract --prob-out": ["extract", tmp_path / "s.tif", "-o", tmp_path / "o.gpkg", "--model", tiny_ckpt,
                               "--prob-out", full_disk / "p.tif"],
        "score --json": ["score", tmp_path / "r.geojson", tmp_path / "r.geojson", "--json", full_disk / "s.json"],
        "datasets from-vectors": ["datasets", "from-vectors", tmp_path / "s.tif", tmp_path / "r.geojson", "--out",
                                  full_disk / "ds"],
        "adapt": ["adapt", tmp_path / "s.tif", tmp_path / "r.geojson", "-o", full_disk / "m.pt", "--init", tiny_ckpt,
                  "--steps", "1", "--holdout", "none", "--crop", "64", "--batch-size", "1"],
    }
    code, _, err = cli("-q", "datasets", "from-vectors", tmp_path / "s.tif", tmp_path / "r.geojson", "--out",
                       tmp_path / "ds", "--tile", "64")
    assert code == 0, err
    runs["train"] = ["train", "--dataset", "folder", "--root", tmp_path / "ds", "--out", full_disk / "run", "--model",
                     "roadmap-compact", "--crop", "64", "--max-steps", "1", "--epochs", "1", "--val", "s_r1_c1"]
    for name, argv in runs.items():
        code, _, err = cli("-q", *argv)
        lines = error_lines(err)
        assert code == 2 and len(lines) == 1 and "disk is full" in lines[0], (name, err)
        assert f"writing {full_disk}" in lines[0], (name, err)  # the output (or its lock, folder) is named
        assert "internal error" not in err
        left = {p.name for p in full_disk.rglob("*") if p.is_file()} - {"filler"}
        assert not left, (name, left)


def test_a_read_only_folder_under_any_output_is_one_line_and_exit_2(cli, tmp_path, read_only, tiny_ckpt):
    _small_world(tmp_path)
    for argv in (["extract", tmp_path / "s.tif", "-o", read_only / "o.gpkg", "--model", tiny_ckpt],
                 ["extract", tmp_path / "s.tif", "-o", tmp_path / "o.gpkg", "--model", tiny_ckpt, "--prob-out",
                  read_only / "p.tif", "--overwrite"],
                 ["score", tmp_path / "r.geojson", tmp_path / "r.geojson", "--json", read_only / "s.json"],
                 ["datasets", "from-vectors", tmp_path / "s.tif", tmp_path / "r.geojson", "--out", read_only / "ds"],
                 ["adapt", tmp_path / "s.tif", tmp_path / "r.geojson", "-o", read_only / "m.pt"]):
        code, _, err = cli("-q", *argv)
        lines = error_lines(err)
        assert code == 2 and len(lines) == 1 and "internal error" not in err, (argv, err)
        assert str(read_only) in lines[0] or "read-only" in lines[0], (argv, err)
        assert not any(read_only.iterdir())
