"""Downloads (resume, checksum, offline) and safe archive extraction, against local files only."""
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
import zipfile

import pytest

from roadmap_cli.errors import OfflineError, UserError
from roadmap_cli.io.download import download, safe_extract


def _blob(tmp_path, n=3_000_000):
    data = bytes(range(256)) * (n // 256)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    return src, data, hashlib.sha256(data).hexdigest()


def test_download_and_checksum(tmp_path):
    src, data, sha = _blob(tmp_path)
    out = download(src.as_uri(), tmp_path / "d" / "w.pt", sha256=sha, progress=False)
    assert out.read_bytes() == data
    assert download(src.as_uri(), out, sha256=sha, progress=False) == out  # already there: no work


def test_download_resumes_partial_file(tmp_path):
    src, data, sha = _blob(tmp_path)
    dest = tmp_path / "w.pt"
    (tmp_path / "w.pt.part").write_bytes(data[:1_000_000])
    download(src.as_uri(), dest, sha256=sha, progress=False)
    assert dest.read_bytes() == data and not (tmp_path / "w.pt.part").exists()


def test_checksum_mismatch_leaves_nothing(tmp_path):
    src, _, _ = _blob(tmp_path)
    with pytest.raises(UserError, match="checksum mismatch"):
        download(src.as_uri(), tmp_path / "w.pt", sha256="0" * 64, progress=False)
    assert not (tmp_path / "w.pt").exists() and not (tmp_path / "w.pt.part").exists()


def test_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(OfflineError, match="put it at"):
        download("https://example.invalid/w.pt", tmp_path / "w.pt", manual_hint="put it at /x", progress=False)


def test_models_download_uses_registry_and_records_sha(cli, tmp_path, monkeypatch):
    src, data, sha = _blob(tmp_path, 10_000)
    monkeypatch.setenv("ROADMAP_MIRROR", tmp_path.as_uri())
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(data)
    code, out, err = cli("models", "download", "sam2.1_hiera_tiny.pt", "--dest", tmp_path / "ck")
    assert code == 0, err
    assert (tmp_path / "ck" / "sam2.1_hiera_tiny.pt").read_bytes() == data
    assert f"{sha}  sam2.1_hiera_tiny.pt" in (tmp_path / "ck" / "SHA256SUMS").read_text()
    code, _, err = cli("models", "download", "nope.pt")
    assert code == 2 and "unknown checkpoint" in err


def test_models_download_offline(cli, tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no route")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, _, err = cli("models", "download", "sam2.1_hiera_small.pt", "--dest", tmp_path)
    assert code == 3 and "dl.fbaipublicfiles.com" in err and str(tmp_path) in err


def test_models_list(cli):
    code, out, _ = cli("models", "list")
    assert code == 0 and "anchor-sam-t" in out and "sam2.1_hiera_large.pt" in out and "roadmap-compact" in out


def test_safe_extract_refuses_path_traversal(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../evil.txt", "x")
    with pytest.raises(UserError, match="outside"):
        safe_extract(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    tbad = tmp_path / "bad.tar"
    with tarfile.open(tbad, "w") as t:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        t.addfile(info)
    with pytest.raises(UserError, match="is a link"):
        safe_extract(tbad, tmp_path / "out2")


def test_safe_extract_good_archive(tmp_path):
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as t:
        payload = b"hello"
        info = tarfile.TarInfo("train/a_sat.jpg")
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    safe_extract(good, tmp_path / "out")
    assert (tmp_path / "out" / "train" / "a_sat.jpg").read_bytes() == b"hello"
