import contextlib
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


def error_lines(err: str) -> list[str]:
    """stderr less the progress lines the CLI prints without a terminal (``roadmap: STAGE started (..)`` /
    ``roadmap: STAGE n/m, ...``): what a refusal says."""
    import re

    return [ln for ln in err.splitlines() if ln.strip() and not re.match(r"roadmap: \w+ (started \(|\d+/\d+, )", ln)]


def run_cli(*args):
    """Run the CLI in-process; returns (exit code, stdout, stderr) via capsys by the caller."""
    from roadmap_cli.cli import main
    return main([str(a) for a in args])


def run_cli_in(folder, *args):
    """:func:`run_cli` with ``folder`` as the working directory (relative paths in ``args`` are relative to it)."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return run_cli(*args)
    finally:
        os.chdir(cwd)


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


class BrightModel(torch.nn.Module):
    """A stand-in model: road wherever the image is bright (> 150), so the extracted graph is the drawn roads."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.w = torch.nn.Parameter(torch.zeros(1))

    def normalize(self, x):
        return x

    def forward(self, x):
        return (x[:, :1] > 150).float() * 20 - 10 + 0 * self.w


@pytest.fixture(scope="session")
def bright(tiny_cfg):
    """A :class:`BrightModel` with the tiny test config."""
    return BrightModel(tiny_cfg)


@pytest.fixture(scope="session")
def shared():
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED


def pytest_configure(config):
    sys.path.insert(0, str(ROOT))
    np.seterr(all="ignore")


@contextlib.contextmanager
def interrupted_when(monkeypatch, owner, name: str, when):
    """Inside the block, ``owner.name(*args)`` raises KeyboardInterrupt (as if the run were killed there) on the first
    call for which ``when(*args, **kwargs)`` is true; the block must end with it.  The function is restored
    afterwards."""
    real = getattr(owner, name)

    def dying(*a, **k):
        if when(*a, **k):
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(owner, name, dying)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(owner, name, real)


def nth_call(n: int):
    """A ``when`` for :func:`interrupted_when`: true on the ``n``-th call."""
    calls = {"n": 0}

    def when(*a, **k):
        calls["n"] += 1
        return calls["n"] == n
    return when


def interrupted_at_save(monkeypatch, n: int):
    """Killed at the ``n``-th ``np.save`` (a tile written to the cache)."""
    return interrupted_when(monkeypatch, np, "save", nth_call(n))
