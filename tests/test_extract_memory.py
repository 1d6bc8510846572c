"""``--dry-run``'s memory estimate against the peak RSS of the same run (issue 33), on three scene sizes other than
the two its constants were fitted on (300 and 6000 px): within 25 %."""
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

RUN = ("import resource, sys\nfrom roadmap_cli.cli.main import main\nrc = main(sys.argv[1:])\n"
       "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)\n")


def _scene(path, size):
    prof = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True, blockxsize=256,
                blockysize=256, compress="deflate", crs="EPSG:32611", transform=from_origin(660000, 4020000, 1, 1))
    rng = np.random.default_rng(size)
    with rasterio.open(path, "w", **prof) as ds:
        for _, win in ds.block_windows(1):
            a = np.full((3, win.height, win.width), 90, np.uint8)
            a[:, ::64, :] = 200  # a street grid, so the graph stages have work
            a[:, :, ::64] = 200
            ds.write(a + rng.integers(0, 20, a.shape, dtype=np.uint8), window=win)


def _run(tmp_path, *argv):
    r = subprocess.run([sys.executable, "-c", RUN, *map(str, argv)], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, int(re.search(r"PEAK_KB (\d+)", r.stderr).group(1)) * 1024 / 1e9


@pytest.mark.slow
@pytest.mark.parametrize("size", [800, 2000, 3500])
def test_dry_run_memory_estimate_within_25_percent(tmp_path, size):
    _scene(tmp_path / "s.tif", size)
    out, _ = _run(tmp_path, "extract", "s.tif", "-o", "o.gpkg", "--dry-run")
    estimate = float(re.search(r"memory estimate: ~([\d.]+) GB", out).group(1))
    _, peak = _run(tmp_path, "-q", "extract", "s.tif", "-o", "o.gpkg")
    print(f"size {size}: estimate {estimate:.2f} GB, peak {peak:.3f} GB")
    assert abs(estimate - peak) / peak <= 0.25, (size, estimate, peak)
