import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("GDAL_CACHEMAX", "64")
torch.set_num_threads(min(2, torch.get_num_threads()))
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def run_cli(*args):
    """Run the CLI in-process; returns (exit code, stdout, stderr) via capsys by the caller."""
    from roadmap_cli.cli import main
    return main([str(a) for a in args])


@pytest.fixture
def cli(capsys):
    def _run(*args):
        code = run_cli(*args)
        out = capsys.readouterr()
        return code, out.out, out.err
    return _run


@pytest.fixture(scope="session")
def tiny_cfg():
    """A very small Anchor-SAM for fast CPU tests (same modules, reduced widths and depths)."""
    from roadmap_cli.weights import load_variant
    return load_variant("roadmap-compact").replace(
        name="tiny-test", embed_dim=16, stages=(1, 1, 2, 1), global_att_blocks=(3,), d_model=32, grr_dim=32,
        decoder_channels=(32, 32, 16, 16), tile=128)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_cfg):
    from roadmap_cli.nn import build_model
    from roadmap_cli.weights import save_checkpoint
    torch.manual_seed(0)
    m = build_model(tiny_cfg)
    path = tmp_path_factory.mktemp("ck") / "tiny.pt"
    save_checkpoint(path, m)
    return path


@pytest.fixture(scope="session")
def shared():
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED


def pytest_configure(config):
    sys.path.insert(0, str(ROOT))
    np.seterr(all="ignore")
