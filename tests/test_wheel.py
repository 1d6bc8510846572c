"""The package carries its own model: a wheel built from the tree, installed into a fresh venv away from the source
tree, runs ``roadmap extract`` on the example with the bundled model."""
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_models_and_extracts(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist)], check=True, cwd=tmp_path)
    wheel = next(dist.glob("roadmap-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("roadmap-compact.pt", "roadmap-compact.yaml", "registry.yaml", "anchor-sam-t.yaml"):
        assert f"roadmap_cli/models/{f}" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies come from the test environment, added as a path only: its .pth files (among them the
    # editable install of this tree) are not run, so roadmap_cli can only come from the wheel
    (site / "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROADMAP_MODELS_DIR")}
    where = subprocess.run([str(py), "-c", "import roadmap_cli; print(roadmap_cli.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))
    out = tmp_path / "roads.gpkg"
    r = subprocess.run([str(venv / "bin" / "roadmap"), "-q", "extract", str(ROOT / "examples" / "vegas_img0.tif"),
                        "-o", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    import geopandas as gpd
    edges = gpd.read_file(out, layer="edges")  # the bundled model finds no road on this chip (model card)
    assert edges.crs.to_epsg() == 4326 and (edges["length_m"] > 0).all()
    assert "road probabilities never approach the threshold" in " ".join(r.stderr.split() + r.stdout.split())
