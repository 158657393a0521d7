"""Downloads against a loopback HTTP server: resume, checksums, atomic and safe extraction, clear failures."""

import hashlib
import io
import json
import os
import shutil
import tarfile
import time
import zipfile

import pytest

from corrbench.datasets.base import DatasetAdapter, PairSet
from corrbench.datasets.download import DatasetSource, fetch_source
from corrbench.errors import DataError
from fake_server import FakeServer, closed_port_url

MEMBERS = {"Toy/readme.txt": b"toy dataset\n", "Toy/sub/data.bin": os.urandom(5000)}


def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_tar_gz(path, members, links=()):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(data_root):
    """Staging folders and temporary files that a finished or failed call must not leave behind."""
    return [p.name for p in data_root.rglob("*") if p.name.startswith(".extract-") or p.name.endswith(".tmp")]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    with FakeServer(folder) as server:
        yield server


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    return root


def source_for(server, filename, provides, **kwargs):
    return DatasetSource(name="toy data", url=server.url(filename), filename=filename, provides=provides, **kwargs)


@pytest.mark.parametrize("filename, writer", [("toy.zip", write_zip), ("toy.tar.gz", write_tar_gz),
                                              ("toy.tgz", write_tar_gz)])
def test_archive_is_downloaded_extracted_and_recorded(served, data_root, filename, writer):
    archive = writer(served.folder / filename, MEMBERS)
    source = source_for(served, filename, "Toy/sub/data.bin")

    assert fetch_source(source, data_root, progress=False) == data_root / "Toy/sub/data.bin"
    assert (data_root / "Toy/sub/data.bin").read_bytes() == MEMBERS["Toy/sub/data.bin"]
    assert (data_root / "Toy/readme.txt").read_bytes() == MEMBERS["Toy/readme.txt"]
    record = json.loads((data_root / ".downloads" / f"{filename}.json").read_text())
    assert record["url"] == source.url and record["filename"] == filename
    assert record["size"] == archive.stat().st_size and record["sha256"] == sha256(archive)
    assert record["downloaded_at"]
    assert not (data_root / ".downloads" / f"{filename}.part").exists()
    assert leftovers(data_root) == []
    assert len(served.requests) == 1

    fetch_source(source, data_root, progress=False)  # present: nothing to do
    shutil.rmtree(data_root / "Toy")
    fetch_source(source, data_root, progress=False)  # archive kept: verified and extracted again, offline
    assert len(served.requests) == 1
    assert (data_root / "Toy/sub/data.bin").read_bytes() == MEMBERS["Toy/sub/data.bin"]


def test_archive_goes_into_its_destination_folder(served, data_root):
    write_tar_gz(served.folder / "toy.tar.gz", MEMBERS)
    source = source_for(served, "toy.tar.gz", "nested/Toy/readme.txt", destination="nested")
    fetch_source(source, data_root, progress=False)
    assert (data_root / "nested/Toy/sub/data.bin").read_bytes() == MEMBERS["Toy/sub/data.bin"]
    assert not (data_root / "Toy").exists()


def test_file_source_is_placed_at_provides(served, data_root):
    (served.folder / "pairs.csv").write_text("source_image,target_image,class\na.jpg,b.jpg,1\n")
    source = source_for(served, "pairs.csv", "Toy/lists/test_pairs.csv", kind="file")
    assert fetch_source(source, data_root, progress=False) == data_root / "Toy/lists/test_pairs.csv"
    assert (data_root / "Toy/lists/test_pairs.csv").read_bytes() == (served.folder / "pairs.csv").read_bytes()
    assert json.loads((data_root / ".downloads" / "pairs.csv.json").read_text())["checked"] == "placed"
    assert leftovers(data_root) == []


def test_interrupted_download_resumes_with_range(served, data_root):
    body = os.urandom(3 << 20)  # several read chunks, so the cut falls after some were written
    (served.folder / "big.bin").write_bytes(body)
    source = source_for(served, "big.bin", "big.bin", kind="file")
    part = data_root / ".downloads" / "big.bin.part"

    served.cut_after = 2 << 20
    with pytest.raises(DataError, match="big.bin") as failure:
        fetch_source(source, data_root, progress=False)
    assert str(data_root / ".downloads" / "big.bin") in failure.value.hint
    kept = part.stat().st_size
    assert 0 < kept < len(body) and part.read_bytes() == body[:kept]

    served.cut_after = None
    fetch_source(source, data_root, progress=False)
    assert served.requests[-1] == ("/big.bin", f"bytes={kept}-")
    assert (data_root / "big.bin").read_bytes() == body
    assert not part.exists()


def test_server_ignoring_range_restarts_cleanly(served, data_root):
    body = os.urandom(10_000)
    (served.folder / "big.bin").write_bytes(body)
    (data_root / ".downloads").mkdir()
    (data_root / ".downloads" / "big.bin.part").write_bytes(b"stale bytes that must not survive")
    served.ignore_range = True
    fetch_source(source_for(served, "big.bin", "big.bin", kind="file"), data_root, progress=False)
    assert served.requests[-1][1] == "bytes=33-"
    assert (data_root / "big.bin").read_bytes() == body


def test_complete_part_answered_with_416_is_used(served, data_root):
    body = os.urandom(1000)
    (served.folder / "big.bin").write_bytes(body)
    (data_root / ".downloads").mkdir()
    (data_root / ".downloads" / "big.bin.part").write_bytes(body)
    fetch_source(source_for(served, "big.bin", "big.bin", kind="file"), data_root, progress=False)
    assert (data_root / "big.bin").read_bytes() == body


def test_known_checksum_mismatch_names_file_and_both_hashes(served, data_root):
    archive = write_zip(served.folder / "toy.zip", MEMBERS)
    wrong = "0" * 64
    with pytest.raises(DataError) as failure:
        fetch_source(source_for(served, "toy.zip", "Toy", sha256=wrong), data_root, progress=False)
    message = str(failure.value)
    assert "toy.zip" in message and wrong in message and sha256(archive) in message
    assert "delete" in failure.value.hint
    assert not (data_root / "Toy").exists()


def test_known_size_mismatch(served, data_root):
    archive = write_zip(served.folder / "toy.zip", MEMBERS)
    with pytest.raises(DataError, match=f"size is {archive.stat().st_size}, expected 12"):
        fetch_source(source_for(served, "toy.zip", "Toy", size=12), data_root, progress=False)


def test_tampered_archive_fails_against_the_record(served, data_root):
    write_zip(served.folder / "toy.zip", MEMBERS)
    source = source_for(served, "toy.zip", "Toy")
    fetch_source(source, data_root, progress=False)
    downloaded = data_root / ".downloads" / "toy.zip"
    recorded = json.loads((data_root / ".downloads" / "toy.zip.json").read_text())["sha256"]
    data = bytearray(downloaded.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    downloaded.write_bytes(bytes(data))
    shutil.rmtree(data_root / "Toy")
    with pytest.raises(DataError) as failure:
        fetch_source(source, data_root, progress=False)
    assert recorded in str(failure.value) and "toy.zip.json" in str(failure.value)
    assert "first extracted here" in str(failure.value)
    # both ways out, each with its condition: keep the new copy (drop the record) or download again
    record = data_root / ".downloads" / "toy.zip.json"
    assert f"if {downloaded} is the copy you want" in failure.value.hint and f"delete {record}" in failure.value.hint
    assert f"otherwise delete {downloaded}" in failure.value.hint
    assert len(served.requests) == 1


def test_truncated_download_is_never_recorded_so_a_complete_copy_is_then_accepted(served, data_root):
    """A server that sends no Content-Length and drops the connection: the cut copy looks complete. It must
    not become the reference that the complete archive, saved by hand afterwards, is checked against."""
    archive = write_tar_gz(served.folder / "toy.tar.gz", {"Toy/readme.txt": b"toy\n",
                                                          "Toy/sub/data.bin": os.urandom(200_000)})
    source = source_for(served, "toy.tar.gz", "Toy/sub/data.bin")
    downloaded, record = data_root / ".downloads" / "toy.tar.gz", data_root / ".downloads" / "toy.tar.gz.json"
    served.send_length, served.cut_after = False, archive.stat().st_size // 2

    with pytest.raises(DataError, match="is not a readable archive") as failure:
        fetch_source(source, data_root, progress=False)
    assert downloaded.stat().st_size == archive.stat().st_size // 2  # nothing told the client it was cut
    assert not record.exists()
    assert f"delete {downloaded} and run again" in failure.value.hint and str(record) not in failure.value.hint
    assert not (data_root / "Toy").exists() and leftovers(data_root) == []

    shutil.copyfile(archive, downloaded)  # what the hint says: a complete copy, saved by hand
    fetch_source(source, data_root, progress=False)
    assert (data_root / "Toy/sub/data.bin").stat().st_size == 200_000
    written = json.loads(record.read_text())
    assert (written["size"], written["sha256"]) == (archive.stat().st_size, sha256(archive))
    assert written["checked"] == "extracted" and len(served.requests) == 1


def test_record_of_an_older_version_is_not_trusted_blindly(served, data_root):
    """Older versions recorded a download before extracting it; a mismatch against such a record must not tell
    the user to delete the complete copy only."""
    archive = write_tar_gz(served.folder / "toy.tar.gz", MEMBERS)
    (data_root / ".downloads").mkdir()
    downloaded, record = data_root / ".downloads" / "toy.tar.gz", data_root / ".downloads" / "toy.tar.gz.json"
    shutil.copyfile(archive, downloaded)
    record.write_text(json.dumps({"url": served.url("toy.tar.gz"), "filename": "toy.tar.gz", "size": 12,
                                  "sha256": "0" * 64, "downloaded_at": "2026-01-01T00:00:00+00:00"}))
    source = source_for(served, "toy.tar.gz", "Toy/sub/data.bin")
    with pytest.raises(DataError, match=f"size is {archive.stat().st_size}, expected 12 .*older corrbench") as failure:
        fetch_source(source, data_root, progress=False)
    assert f"if {downloaded} is a complete copy, delete {record}" in failure.value.hint
    record.unlink()
    fetch_source(source, data_root, progress=False)
    assert json.loads(record.read_text())["size"] == archive.stat().st_size


def test_unreadable_archive_matching_an_old_record_names_both_files(served, data_root):
    (data_root / ".downloads").mkdir()
    broken = data_root / ".downloads" / "toy.zip"
    broken.write_bytes(b"PK\x03\x04 cut short")
    record = data_root / ".downloads" / "toy.zip.json"
    record.write_text(json.dumps({"size": broken.stat().st_size, "sha256": sha256(broken)}))
    with pytest.raises(DataError, match="not a readable archive") as failure:
        fetch_source(source_for(served, "toy.zip", "Toy"), data_root, progress=False)
    assert f"delete {broken} and {record}" in failure.value.hint


def test_path_traversal_member_is_refused(served, data_root):
    write_zip(served.folder / "evil.zip", {"Toy/ok.txt": b"ok", "../escaped.txt": b"gotcha"})
    with pytest.raises(DataError, match="refusing member '../escaped.txt'"):
        fetch_source(source_for(served, "evil.zip", "Toy"), data_root, progress=False)
    assert not (data_root.parent / "escaped.txt").exists()
    assert not (data_root / "Toy").exists() and leftovers(data_root) == []


def test_absolute_member_is_refused(served, data_root):
    write_tar_gz(served.folder / "evil.tar.gz", {"/tmp/corrbench-absolute.txt": b"gotcha"})
    with pytest.raises(DataError, match="refusing member"):
        fetch_source(source_for(served, "evil.tar.gz", "Toy"), data_root, progress=False)


def test_link_pointing_outside_is_refused(served, data_root):
    write_tar_gz(served.folder / "evil.tar.gz", {"Toy/ok.txt": b"ok"}, links=[("Toy/link", "../../outside")])
    with pytest.raises(DataError, match="points outside"):
        fetch_source(source_for(served, "evil.tar.gz", "Toy"), data_root, progress=False)
    assert not (data_root / "Toy").exists() and leftovers(data_root) == []


@pytest.mark.parametrize("interruption", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_extraction_leaves_nothing_half_done(served, data_root, monkeypatch, interruption):
    write_zip(served.folder / "toy.zip", MEMBERS)
    real_extract, calls = zipfile.ZipFile.extract, []

    def failing_extract(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) == 2:
            raise interruption
        return real_extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", failing_extract)
    with pytest.raises(type(interruption)):
        fetch_source(source_for(served, "toy.zip", "Toy/sub/data.bin"), data_root, progress=False)
    assert len(calls) == 2
    assert not (data_root / "Toy").exists() and leftovers(data_root) == []
    assert (data_root / ".downloads" / "toy.zip").exists()  # the download itself is kept for the next try


def test_archive_merges_new_folders_into_an_existing_one(served, data_root):
    (data_root / "Toy/JPEGImages").mkdir(parents=True)
    (data_root / "Toy/JPEGImages/a.jpg").write_bytes(b"jpeg")
    write_zip(served.folder / "extra.zip", {"Toy/ExtraPairAnnotation/test/p.json": b"{}"})
    fetch_source(source_for(served, "extra.zip", "Toy/ExtraPairAnnotation"), data_root, progress=False)
    assert (data_root / "Toy/ExtraPairAnnotation/test/p.json").read_bytes() == b"{}"
    assert (data_root / "Toy/JPEGImages/a.jpg").read_bytes() == b"jpeg"


def test_archive_refuses_to_overwrite_existing_paths(served, data_root):
    (data_root / "Toy/sub").mkdir(parents=True)
    (data_root / "Toy/sub/data.bin").write_bytes(b"mine")
    write_zip(served.folder / "toy.zip", {**MEMBERS, "Toy/new.txt": b"new"})
    with pytest.raises(DataError, match="already present") as failure:
        fetch_source(source_for(served, "toy.zip", "Toy/new.txt"), data_root, progress=False)
    assert str(data_root / "Toy/sub/data.bin") in str(failure.value)
    assert (data_root / "Toy/sub/data.bin").read_bytes() == b"mine"
    assert not (data_root / "Toy/new.txt").exists() and leftovers(data_root) == []


def test_archive_without_the_expected_path_lists_its_entries(served, data_root):
    write_zip(served.folder / "toy.zip", MEMBERS)
    with pytest.raises(DataError, match="did not contain the expected path Other/x") as failure:
        fetch_source(source_for(served, "toy.zip", "Other/x"), data_root, progress=False)
    assert "top-level entries are: Toy " in failure.value.hint
    assert not (data_root / "Toy").exists() and leftovers(data_root) == []


def test_unreadable_archive_says_to_delete_it(served, data_root):
    (served.folder / "toy.tar.gz").write_bytes(b"<html>not a tarball</html>")
    with pytest.raises(DataError, match="not a readable archive") as failure:
        fetch_source(source_for(served, "toy.tar.gz", "Toy"), data_root, progress=False)
    assert f"delete {data_root / '.downloads' / 'toy.tar.gz'}" in failure.value.hint


@pytest.mark.parametrize("kind", ["archive", "file"])
def test_offline_fails_fast_naming_url_and_expected_path(data_root, kind):
    url = closed_port_url("toy.zip")
    source = DatasetSource(name="toy", url=url, filename="toy.zip", provides="Toy/x", kind=kind, destination="")
    started = time.monotonic()
    with pytest.raises(DataError) as failure:
        fetch_source(source, data_root, progress=False)
    assert time.monotonic() - started < 5
    assert url in failure.value.message and "connection refused" in failure.value.message
    expected = data_root if kind == "archive" else data_root / "Toy/x"
    assert f"the directory to fill is {expected} " in failure.value.hint
    assert str(data_root / ".downloads" / "toy.zip") in failure.value.hint and "browser" in failure.value.hint


def test_silent_server_times_out(served, data_root, monkeypatch):
    from corrbench.datasets import download

    monkeypatch.setattr(download, "TIMEOUT", (0.2, 0.2))
    (served.folder / "toy.zip").write_bytes(b"x")
    served.delay = 1.0
    with pytest.raises(DataError, match="no answer in time") as failure:
        fetch_source(source_for(served, "toy.zip", "Toy"), data_root, progress=False)
    assert served.url("toy.zip") in failure.value.message


def test_http_error_names_url_and_status(served, data_root):
    source = source_for(served, "missing.zip", "Toy", destination="sets")
    with pytest.raises(DataError, match="HTTP 404") as failure:
        fetch_source(source, data_root, progress=False)
    assert source.url in failure.value.message and str(data_root / "sets") in failure.value.hint
    assert not (data_root / ".downloads" / "missing.zip").exists()


def test_manually_placed_archive_is_used_offline(data_root):
    (data_root / ".downloads").mkdir()
    write_zip(data_root / ".downloads" / "toy.zip", MEMBERS)
    source = DatasetSource(name="toy", url=closed_port_url(), filename="toy.zip", provides="Toy/readme.txt")
    fetch_source(source, data_root, progress=False)
    assert (data_root / "Toy/readme.txt").exists() and (data_root / ".downloads" / "toy.zip.json").exists()


@pytest.mark.parametrize("url, manual", [("URL", "1. open the page\n2. save the file"), (None, "")])
def test_manual_sources_are_never_fetched(served, data_root, url, manual):
    write_zip(served.folder / "toy.zip", MEMBERS)
    source = DatasetSource(name="toy", url=served.url("toy.zip") if url else None, filename="toy.zip",
                           provides="Toy", manual=manual)
    with pytest.raises(DataError, match="cannot be downloaded automatically") as failure:
        fetch_source(source, data_root, progress=False)
    assert (manual or "no download address") in failure.value.hint
    assert served.requests == [] and not (data_root / ".downloads").exists()


def toy_adapter(source):
    class ToyAdapter(DatasetAdapter):
        name = "toy"
        instructions = "Toy: a test dataset"
        sources = (source,)

        def is_available(self):
            return (self.root / "sub/data.bin").exists()

        def read_pairs(self, split, subset=None):
            return PairSet([])

    return ToyAdapter


def test_adapter_prepare_downloads_then_is_available(served, tmp_path):
    write_tar_gz(served.folder / "toy.tar.gz", MEMBERS)
    adapter_class = toy_adapter(source_for(served, "toy.tar.gz", "Toy/sub/data.bin"))

    adapter = adapter_class(tmp_path / "first" / "Toy")
    assert not adapter.is_available()
    adapter.prepare(progress=False, download=True)
    assert adapter.is_available() and len(served.requests) == 1

    fresh = adapter_class(tmp_path / "fresh" / "Toy")
    with pytest.raises(DataError, match="toy data not found") as failure:
        fresh.prepare(progress=False, download=False)
    assert served.url("toy.tar.gz") in failure.value.hint and str(tmp_path / "fresh") in failure.value.hint
    assert len(served.requests) == 1


def test_cli_without_download_names_spair_url_and_directory(tmp_path):
    pytest.importorskip("corrbench.benchmarks.spair")
    from click.testing import CliRunner

    from corrbench.cli import cli

    empty = tmp_path / "empty"
    empty.mkdir()
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["run", "--method", "oracle", "--benchmark", "spair71k", "--no-download",
                                      "--data-root", str(empty), "--out", str(tmp_path / "results"), "-q"])
    assert time.monotonic() - started < 10
    assert result.exit_code == 2, result.output
    assert "https://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz" in result.output
    assert str(empty) in result.output


def test_download_file_for_single_files_outside_the_data_root(served, tmp_path):
    import hashlib

    from corrbench.datasets.download import download_file

    payload = bytes(range(256)) * 40
    (served.folder / "weights.pth").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    target = tmp_path / "hub" / "checkpoints" / "weights.pth"
    served.cut_after = 1000
    with pytest.raises(DataError, match="partial file .* is kept"):
        download_file(served.url("weights.pth"), target, sha256=digest, progress=False)
    assert not target.exists() and target.with_name("weights.pth.part").exists()
    served.cut_after = None
    assert download_file(served.url("weights.pth"), target, sha256=digest, progress=False).read_bytes() == payload
    with pytest.raises(DataError, match="expected " + "0" * 64):
        download_file(served.url("weights.pth"), target, sha256="0" * 64, progress=False)
