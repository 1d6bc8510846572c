"""Issue 33: instant answers to the first-hour mistakes (no torch or GIS import before a refusal), one way to say
verbose, help in words, a bare ``roadmap`` as help, a score footer about the printed columns, and progress that
estimates from its first unit."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from roadmap_cli.cli.render import LineReporter, pace

HEAVY = ("torch", "rasterio", "geopandas", "osgeo", "pyogrio", "shapely", "pyproj", "numba")


def _fresh(tmp_path: Path, *argv: str):
    """Run the CLI in a fresh interpreter; (exit code, stdout, stderr, heavy modules imported)."""
    code = ("import sys\nfrom roadmap_cli.cli.main import main\nrc = main(sys.argv[1:])\n"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
            "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\nsys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = r.stderr.splitlines()
    heavy = [ln for ln in lines if ln.startswith("HEAVY=")][-1][6:]
    return r.returncode, r.stdout, "\n".join(ln for ln in lines if not ln.startswith("HEAVY=")), heavy


@pytest.fixture
def files(tmp_path):
    (tmp_path / "scene.tif").write_bytes(b"II*\x00" + bytes(64))
    (tmp_path / "notes.tif").write_text("<html>not a raster</html>")
    (tmp_path / "out.gpkg").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize("argv,words", [
    (["extract", "nosuch.tif", "-o", "x.gpkg"], "not found"),
    (["extract", "scene.tif", "-o", "out.gpkg"], "exists; pass --overwrite"),
    (["extract", "scene.tif", "-o", "x.shp"], "unknown format"),
    (["extract", "scene.tif", "-o", "nope/x.gpkg"], "does not exist"),
    (["extract", "notes.tif", "-o", "x.gpkg"], "is not a GeoTIFF"),
    (["extract", "empty", "-o", "x.gpkg"], "holds no raster files"),
    (["extract", "scene.tif", "-o", "x.gpkg", "--prob-out", "scene.tif"], "never writes over an input"),
    (["adapt", "scene.tif", "nope.gpkg", "-o", "m.pt"], "not found"),
    (["adapt", "scene.tif", "scene.tif", "-o", "m.txt"], "name it .pt"),
    (["train", "--dataset", "folder", "--root", "nope", "--out", "r"], "not found"),
])
def test_refusals_come_before_any_heavy_import(files, argv, words):
    code, out, err, heavy = _fresh(files, *argv)
    assert code == 2 and words in err and out == "" and heavy == "", (argv, err, heavy)


def test_models_list_and_help_are_light(files):
    code, out, err, heavy = _fresh(files, "models", "list")
    assert code == 0 and "roadmap-compact" in out and heavy == "", heavy
    code, out, err, heavy = _fresh(files, "extract", "--help")
    assert code == 0 and heavy == ""


def test_bare_roadmap_is_help_on_stdout(cli):
    code, out, err = cli()
    assert code == 0 and "Usage: roadmap" in out and "Commands:" in out and err == ""


def test_help_in_words_not_python_types(cli):
    for cmd in ("extract", "adapt", "score", "train"):
        code, out, _ = cli(cmd, "--help")
        assert code == 0
        assert "<" not in out.replace("<=", "") and "list[" not in out and " range" not in out, out
        assert "PATH" in out and ("TEXT" in out or "INTEGER" in out)


def test_verbose_quiet_debug_after_the_command(cli, tmp_path):
    from roadmap_cli.cli.main import global_flags_first

    assert global_flags_first(["extract", "a.tif", "-o", "x.gpkg", "-v", "--debug"]) == \
        ["-v", "--debug", "extract", "a.tif", "-o", "x.gpkg"]
    assert global_flags_first(["extract", "--", "-v"]) == ["extract", "--", "-v"]
    for flag in ("-v", "-vv", "-q", "--debug", "--verbose", "--quiet"):
        code, _, err = cli("extract", tmp_path / "nosuch.tif", "-o", tmp_path / "x.gpkg", flag)
        assert code == 2 and "not found" in err and "No such option" not in err, flag


def test_score_footer_speaks_of_the_printed_columns(cli, tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString

    gpd.GeoDataFrame(geometry=[LineString([(0, 0), (0.001, 0.001)])], crs=4326).to_file(tmp_path / "g.geojson")
    code, out, _ = cli("score", tmp_path / "g.geojson", tmp_path / "g.geojson")
    text = " ".join(out.split())
    assert code == 0 and "APLS the mean over the files" in text
    assert "pixel" not in text and "TOPO" not in text and "MEAN" not in text and "relaxed" not in text


def test_pace_from_the_first_unit():
    assert pace(0, 10, 5.0) == ("", "-:--:--")
    assert pace(1, 10, 120.0) == ("120.0 s each", "0:18:00")  # one unit of two minutes: an estimate already
    assert pace(30, 40, 10.0) == ("3.00/s", "0:00:03")


def test_line_reporter_without_a_terminal():
    """A line when a stage starts, at most one per period, one at its end; each with count, elapsed, rate, left."""
    import io

    now = [0.0]
    out = io.StringIO()
    rep = LineReporter(every=60.0, stream=out, clock=lambda: now[0])
    rep.start("infer", 4)
    for t in (100.0, 110.0, 170.0, 200.0):
        now[0] = t
        rep.advance("infer", 1, "tiles")
    lines = out.getvalue().splitlines()
    assert lines[0] == "roadmap: infer started (0/4)"
    assert lines[1].startswith("roadmap: infer 1/4, 0:01:40 elapsed, 100.0 s each, 0:05:00 left")
    assert len(lines) == 4 and lines[-1].startswith("roadmap: infer 4/4, 0:03:20 elapsed")  # 110 s: no line


FORWARD = ("import hashlib, torch\nfrom roadmap_cli.weights import load_model\ntorch.manual_seed(0)\n"
           "m = load_model('roadmap-compact')\nx = torch.rand(1, 3, 256, 256)\n"
           "with torch.inference_mode(), torch.autocast('cpu', torch.bfloat16):\n    y = m(x)\n"
           "print(hashlib.sha256(y.float().numpy().tobytes()).hexdigest())\n")


def test_openmp_wait_setting_changes_no_bit(tmp_path):
    """The CLI's GOMP_SPINCOUNT (and any wait policy) only changes how idle threads wait: same bits."""
    import os

    digests = set()
    for env in ({"GOMP_SPINCOUNT": "10000"}, {"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}):
        base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
        r = subprocess.run([sys.executable, "-c", FORWARD], env={**base, **env, "OMP_NUM_THREADS": "2"},
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        digests.add(r.stdout.strip())
    assert len(digests) == 1


def test_cli_sets_a_short_spin_unless_the_user_chose():
    import os

    code = "import os, roadmap_cli.cli.main\nprint(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True).stdout.split()
    assert out == ["10000", "None"]
    out = subprocess.run([sys.executable, "-c", code], env={**base, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True).stdout.split()
    assert out == ["None", "ACTIVE"]


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_run_that_finds_no_road_says_so_in_every_output(cli, tmp_path):
    """The bundled model finds no road on the example chip: the terminal, the preview (a caption band across the
    imagery's top, and its PNG comment) and the report (a banner) all say so and point to roadmap adapt; the time row
    names the model load and the start-up."""
    from PIL import Image

    code, out, err = cli("extract", ROOT / "examples" / "vegas_img0.tif", "-o", tmp_path / "r.gpkg", "--preview",
                         tmp_path / "p.png", "--report", tmp_path / "r.html")
    assert code == 0, err
    assert "roadmap adapt" in out and "model load" in out and "start-up" in out
    with Image.open(tmp_path / "p.png") as im:
        assert "roadmap adapt" in im.text.get("Comment", "")
        assert im.size == (1300, 1300)  # the caption is drawn inside: the preview keeps the scene's grid
        band = np.asarray(im.convert("RGB"))[:30].reshape(-1, 3)
        assert (band == (40, 40, 40)).all(axis=1).mean() > 0.5  # the band's background, with text on it
    page = (tmp_path / "r.html").read_text()
    assert 'id="roadmap-banner"' in page and "roadmap adapt SCENE.tif" in page


def test_report_names_the_weights(cli, tmp_path, tiny_ckpt):
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(tmp_path / "s.tif", "w", driver="GTiff", width=128, height=128, count=3, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(660000, 4010000, 1, 1)) as ds:
        ds.write(np.full((3, 128, 128), 100, np.uint8))
    code, _, err = cli("-q", "extract", tmp_path / "s.tif", "-o", tmp_path / "r.gpkg", "--report", tmp_path / "r.html",
                       "--weights", tiny_ckpt)
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert Path(tiny_ckpt).name in page  # the model row says whose weights, as the terminal does


def test_readme_commands_share_one_venv_and_their_outputs_are_ignored():
    import re
    import shutil

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    setup = [b.strip() for b in blocks if b.strip().startswith("python3 -m venv .venv")]
    assert len(setup) == 2 and all(c.startswith("python3 -m venv .venv && . .venv/bin/activate &&") for c in setup)
    assert "reuses that `.venv`" in text
    outs = set()
    for line in "\n".join(blocks).splitlines():
        if line.strip().startswith("roadmap ") or " roadmap " in line:
            outs |= set(re.findall(r"(?:-o|--preview|--report|--prob-out|--mask-out|--json|--csv) ([\w.\-/]+)", line))
    assert {"roads.gpkg", "preview.png", "vegas-west.pt"} <= outs
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    extra = {"roads.gpkg.roadmap-work/tiles/0.npy", "vegas-west.adapt/run.json", ".hypothesis/x", "vegas-west.json"}
    names = sorted(o for o in outs | extra if not o.startswith(("runs/", "/")))
    r = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=ROOT, capture_output=True, text=True)
    assert sorted(r.stdout.split()) == names, set(names) - set(r.stdout.split())
