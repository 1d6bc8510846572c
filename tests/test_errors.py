"""Typed errors: Python callers can tell the cases apart; the CLI keeps one line and its exit codes."""
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from roadmap_cli import errors
from roadmap_cli.extract import ExtractOptions, run_extract
from roadmap_cli.weights import read_checkpoint


def _scene(path):
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32611",
                       transform=from_origin(500000, 4000000, 1, 1)) as ds:
        ds.write(np.full((3, 64, 64), 90, np.uint8))
    return path


def test_every_error_is_a_user_error_with_the_cli_exit_code():
    for cls in (errors.InputError, errors.OutputExistsError, errors.OutputError, errors.CheckpointError,
                errors.DownloadError):
        assert issubclass(cls, errors.UserError) and cls("x").exit_code == 2
    assert issubclass(errors.OfflineError, errors.DownloadError) and errors.OfflineError("x").exit_code == 3
    assert str(errors.InputError("two\n  lines")) == "two lines"


def test_callers_can_tell_the_cases_apart(tmp_path, tiny_ckpt):
    scene = _scene(tmp_path / "s.tif")
    (tmp_path / "r.gpkg").write_text("")
    with pytest.raises(errors.OutputExistsError, match="exists; pass --overwrite"):
        run_extract(ExtractOptions(scene=scene, output=tmp_path / "r.gpkg", model=str(tiny_ckpt)))
    with pytest.raises(errors.InputError, match="not found"):
        run_extract(ExtractOptions(scene=tmp_path / "nope.tif", output=tmp_path / "n.gpkg", model=str(tiny_ckpt)))
    with pytest.raises(errors.OutputError, match="does not exist"):
        run_extract(ExtractOptions(scene=scene, output=tmp_path / "no" / "r.gpkg", model=str(tiny_ckpt)))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(errors.CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(bad)
    with pytest.raises(errors.CheckpointError):
        run_extract(ExtractOptions(scene=scene, output=tmp_path / "c.gpkg", model=str(bad)))


def test_cli_messages_and_codes_unchanged(cli, tmp_path, tiny_ckpt):
    scene = _scene(tmp_path / "s.tif")
    (tmp_path / "r.gpkg").write_text("")
    code, _, err = cli("extract", scene, "-o", tmp_path / "r.gpkg", "--model", tiny_ckpt)
    assert code == 2 and err.strip() == f"roadmap: error: output {tmp_path / 'r.gpkg'} exists; pass --overwrite to " \
                                         "replace it"
    code, _, err = cli("extract", scene, "-o", tmp_path / "x.gpkg", "--model", tmp_path / "missing.pt")
    assert code == 2 and err.count("\n") == 1 and "not found" in err
