"""CLI frame, the error convention and atomic writes."""
import os

import pytest

from roadmap_cli import __version__
from roadmap_cli.errors import UserError
from roadmap_cli.io.atomic import atomic_open, atomic_path, check_output_path


def test_version_and_help(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"roadmap {__version__}"
    code, out, _ = cli("--help")
    assert code == 0
    for sub in ("extract", "train", "score", "info", "models"):
        assert sub in out


def test_info_reports_torch_and_device(cli):
    code, out, _ = cli("info")
    assert code == 0
    assert "torch" in out and "cuda available" in out and "torch threads" in out


def test_user_error_is_one_line_exit_2_without_traceback(cli, tmp_path):
    code, out, err = cli("extract", tmp_path / "missing.tif", "-o", tmp_path / "r.gpkg")
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("roadmap: error:") and "not found" in lines[0]
    assert "Traceback" not in err


def test_debug_flag_shows_traceback(cli, tmp_path, capsys):
    code, _, err = cli("--debug", "extract", tmp_path / "missing.tif", "-o", tmp_path / "r.gpkg")
    assert code == 2 and "Traceback" in err


def test_usage_error_exit_code(cli):
    code, _, err = cli("extract")
    assert code == 2 and "Missing argument" in err


def test_user_error_message_is_folded_to_one_line():
    assert str(UserError("a\nb   c")) == "a b c"


def test_atomic_open_writes_whole_file(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_open(target) as f:
        f.write("hello")
        assert not target.exists()  # nothing visible before the rename
    assert target.read_text() == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.gpkg"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_open(target, overwrite=True) as f:
            f.write("new")
            raise ValueError
    assert target.read_text() == "old"


def test_check_output_path(tmp_path, monkeypatch):
    (tmp_path / "x").write_text("")
    with pytest.raises(UserError, match="exists"):
        check_output_path(tmp_path / "x")
    check_output_path(tmp_path / "x", overwrite=True)
    with pytest.raises(UserError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "x")
    # root ignores permission bits, so simulate the unwritable folder through os.access
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)
    with pytest.raises(UserError, match="not writable"):
        check_output_path(tmp_path / "y")
