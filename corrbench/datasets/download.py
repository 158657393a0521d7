"""Fetch one DatasetSource into the data root: resumable download, checksum, atomic extraction.

Everything lives under the data root so that one folder holds a complete, movable copy of the data:

- ``.downloads/<filename>.part`` while downloading. An interrupted download keeps it, and the next call
  resumes it with an HTTP Range request (a server that ignores Range makes us start over cleanly).
- ``.downloads/<filename>`` once complete, kept after extraction so a damaged dataset folder can be rebuilt
  without the network (delete it to save space). A file a person put there by hand (the fallback when this
  machine cannot reach the server) is used the same way: verified, then extracted.
- ``.downloads/<filename>.json``: ``{url, filename, size, sha256, downloaded_at, checked}`` of the first good
  copy, written only once that copy was extracted (an archive: every member read, so a truncated or damaged
  download is never recorded) or placed (a file). Sources without a published checksum are verified against
  this record later, so a file that changed on disk or on the server is noticed instead of silently producing
  different pairs. Records without ``checked`` come from older corrbench versions, which wrote them before
  extracting: they may describe a broken download, and a mismatch against one says so.

Archives are extracted into a temporary folder inside the data root (same file system, so the final moves
are ``os.replace`` renames) and only moved into place once complete: an error or Ctrl-C never leaves a
half-extracted dataset that would later look present. Members with absolute paths, ``..`` or links that
point outside the archive are refused.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DataError
from ..files import UnreadableJSON, file_sha256, read_json, replacing, write_json_atomic

#: (connect, read) seconds: an unreachable server fails fast, a slow but alive one gets a minute per chunk.
TIMEOUT = (10, 60)
CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetSource:
    """One thing to fetch for a dataset, relative to the data root.

    name: what it is, for messages ("SPair-71k images and annotations").
    url: direct download address, or None when only a manual step can get it.
    filename: saved as ``<data root>/.downloads/<filename>``.
    kind: ``archive`` (.zip, .tar, .tar.gz, .tgz: extracted) or ``file`` (placed as is).
    destination: for an archive, the folder under the data root it is extracted into ("" = the data root).
    provides: a path under the data root that exists once this source is in place (how presence is checked);
        a ``file`` source is placed exactly there.
    sha256, size: known checksum and size in bytes, or None: then the first download's are recorded in
        ``.downloads/<filename>.json`` and verified on later downloads.
    manual: step-by-step instructions for sources that need a person (Google Drive quotas, passwords).
    """

    name: str
    url: str | None
    filename: str
    provides: str
    kind: str = "archive"
    destination: str = ""
    sha256: str | None = None
    size: int | None = None
    manual: str = ""

    @property
    def automatic(self) -> bool:
        return self.url is not None and not self.manual

    def is_present(self, data_root: Path) -> bool:
        return (Path(data_root) / self.provides).exists()


def fetch_source(source: DatasetSource, data_root: Path, *, progress: bool = True) -> Path:
    """Make ``source`` present under ``data_root`` and return ``<data root>/<source.provides>``.

    Downloads only when ``.downloads/<filename>`` is not there yet; raises DataError with the manual steps
    for sources that need a person, and with a browser fallback when the network fails.
    """
    data_root = Path(data_root)
    target = data_root / source.provides
    if target.exists():
        return target
    if not source.automatic:
        steps = source.manual or "no download address is known"
        raise DataError(f"{source.name} cannot be downloaded automatically",
                        hint=f"{steps} -> {_expected_path(source, data_root)}")

    downloads = data_root / ".downloads"
    archive = downloads / source.filename
    record_path = downloads / f"{source.filename}.json"
    if source.kind not in ("archive", "file"):
        raise DataError(f"{source.name}: unknown source kind {source.kind!r}", hint="use 'archive' or 'file'")
    if not archive.exists():
        downloads.mkdir(parents=True, exist_ok=True)
        _download(source.url, archive, progress, _network_hint(source, data_root))
    record = _read_record(record_path)
    digest = _verify(source, archive, record_path, record)

    if source.kind == "archive":
        _extract(source, archive, data_root, record_path if record is not None else None)
    else:
        _place_file(archive, target)
    if record is None:  # only now: the copy is known to be readable (extracted) or in place
        checked = "extracted" if source.kind == "archive" else "placed"
        _write_record(source, archive, record_path, digest, checked)
    return target


def download_file(url: str, destination: Path, *, sha256: str | None = None, progress: bool = True,
                  hint: str | None = None) -> Path:
    """Download ``url`` to ``destination`` (resumable through ``<destination>.part``; the file appears only
    when complete) and check ``sha256`` when given. Used for single files outside the data root, such as
    model weights in the torch hub cache."""
    destination = Path(destination)
    if not destination.exists():
        destination.parent.mkdir(parents=True, exist_ok=True)
        fallback = (f"without network, download {url} with a browser to {destination}")
        _download(url, destination, progress, hint or fallback)
    if sha256 is not None:
        actual = file_sha256(destination)
        if actual != sha256:
            raise DataError(f"{destination}: sha256 is {actual}, expected {sha256}",
                            hint=f"delete {destination} and run again to download it anew")
    return destination


# --- download -------------------------------------------------------------------------------------------


def _expected_path(source: DatasetSource, data_root: Path) -> Path:
    return data_root / (source.destination if source.kind == "archive" else source.provides)


def _network_hint(source: DatasetSource, data_root: Path) -> str:
    return (f"the directory to fill is {_expected_path(source, data_root)} (so that {data_root / source.provides} "
            f"exists); without network, download {source.url} with a "
            f"browser to {data_root / '.downloads' / source.filename} and run the command again "
            "(it is then verified and extracted offline)")


def _download(url: str, archive: Path, progress: bool, hint: str) -> None:
    """Stream ``url`` into ``<archive>.part`` (resuming it when possible), then rename to ``archive``.

    ``hint`` is what a network failure tells the user to do (where the file is expected, the manual fallback).
    """
    import requests
    from tqdm import tqdm

    part = archive.with_name(archive.name + ".part")
    for _attempt in range(2):  # a second attempt only after throwing away a .part the server cannot resume
        offset = part.stat().st_size if part.exists() else 0
        total = None
        # identity: Content-Length must be the size of the bytes we store, not of a gzip-encoded transfer.
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
                if response.status_code == 416 and offset:  # the .part is complete, or longer than the file
                    if _range_total(response) == offset:
                        break
                    part.unlink()
                    continue
                if response.status_code >= 400:
                    raise DataError(f"could not download {url}: HTTP {response.status_code} {response.reason}",
                                    hint=hint)
                resumed = response.status_code == 206 and _range_start(response) == offset
                if not resumed:  # the server sent the whole file (it ignored Range, or there was none)
                    offset = 0
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length and length.isdigit() else None
                with open(part, "ab" if resumed else "wb") as out, tqdm(
                        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=archive.name, disable=not progress) as bar:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
        except requests.RequestException as exc:
            kept = f"; the partial file {part} is kept and resumed next time" if part.exists() else ""
            raise DataError(f"could not download {url}: {_reason(exc)}{kept}",
                            hint=hint) from None
        got = part.stat().st_size
        if total is not None and got != total:
            raise DataError(f"download of {url} stopped after {got} of {total} bytes",
                            hint=f"run the command again to resume {part}; " + hint)
        break
    os.replace(part, archive)


def _range_start(response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _range_total(response) -> int | None:
    match = re.search(r"/(\d+)$", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _reason(exc: Exception) -> str:
    """A one-line cause: requests' own messages nest whole reprs of urllib3 objects."""
    import requests

    text = str(exc)
    if isinstance(exc, requests.Timeout):
        return f"no answer in time (connect {TIMEOUT[0]} s, read {TIMEOUT[1]} s)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke during the download"
    if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text:
        return "the host name could not be resolved (offline?)"
    if "Connection refused" in text:
        return "connection refused"
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


# --- verification ---------------------------------------------------------------------------------------


def _read_record(record_path: Path) -> dict | None:
    if not record_path.exists():
        return None
    try:
        record = read_json(record_path)
    except UnreadableJSON as exc:
        raise DataError(f"{record_path}: not a readable download record ({exc})",
                        hint=f"delete {record_path} and run again; it is rewritten once the download is checked"
                        ) from None
    if not isinstance(record, dict):
        raise DataError(f"{record_path}: not a download record (expected a JSON object)",
                        hint=f"delete {record_path} and run again; it is rewritten once the download is checked")
    return record


def _verify(source: DatasetSource, archive: Path, record_path: Path, record: dict | None) -> str | None:
    """Check ``archive`` against the source's published size/sha256 and the record of the first good copy.

    Returns the sha256 when it was computed (so that it is not computed twice), else None.
    """
    size, sha = archive.stat().st_size, None
    checks = [("size", source.size, None), ("sha256", source.sha256, None)]
    if record is not None:
        checks += [("size", record.get("size"), record), ("sha256", record.get("sha256"), record)]
    for field, expected, against in checks:
        if expected is None:
            continue
        if field == "sha256" and sha is None:
            sha = file_sha256(archive)
        actual = size if field == "size" else sha
        if actual != expected:
            raise _mismatch(archive, field, actual, expected, record_path, against)
    return sha


def _mismatch(archive: Path, field: str, actual, expected, record_path: Path, record: dict | None) -> DataError:
    """The error for a checksum mismatch: which reference disagrees, and what to delete for which case."""
    if record is None:
        return DataError(f"{archive}: {field} is {actual}, expected {expected} (the published value)",
                         hint=f"the file is incomplete or not the expected one: delete {archive} and run again "
                              "to download it anew (or save a complete copy there by hand)")
    when = record.get("downloaded_at", "an earlier run")
    if record.get("checked"):
        return DataError(
            f"{archive}: {field} is {actual}, but the copy first {record['checked']} here ({when}) had {expected} "
            f"(recorded in {record_path})",
            hint=f"the file changed since that copy was used: if {archive} is the copy you want (you replaced it "
                 f"on purpose), delete {record_path} and run again, and a new record is written once it is checked; "
                 f"otherwise delete {archive} and run again to download it anew")
    return DataError(
        f"{archive}: {field} is {actual}, expected {expected} from {record_path}, which an older corrbench wrote "
        f"({when}) before checking that the archive could be read",
        hint=f"that record may describe an incomplete download: if {archive} is a complete copy, delete "
             f"{record_path} and run again (a new record is written once it is extracted); otherwise delete "
             f"{archive} and run again to download it anew")


def _write_record(source: DatasetSource, archive: Path, record_path: Path, digest: str | None, checked: str) -> None:
    record = {"url": source.url, "filename": source.filename, "size": archive.stat().st_size,
              "sha256": digest or file_sha256(archive),
              "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "checked": checked}
    write_json_atomic(record_path, record)


# --- placement ------------------------------------------------------------------------------------------


def _place_file(downloaded: Path, target: Path) -> None:
    """Copy under a temporary name next to the target, then rename: the target is whole or absent."""
    with replacing(target) as tmp:
        shutil.copyfile(downloaded, tmp)


def _extract(source: DatasetSource, archive: Path, data_root: Path, record_path: Path | None) -> None:
    """Unpack into a staging folder, check it holds ``provides``, then move its entries into place.

    ``record_path``: the download record that ``archive`` matched, if any (named when the archive is unreadable).
    """
    destination = data_root / source.destination
    provides = (data_root / source.provides).absolute()
    staging = Path(tempfile.mkdtemp(dir=data_root, prefix=f".extract-{source.filename}-"))
    try:
        _unpack(archive, staging, record_path)
        within = provides.is_relative_to(destination.absolute())
        if not within or not (staging / provides.relative_to(destination.absolute())).exists():
            top_level = sorted(p.name for p in staging.iterdir())
            raise DataError(f"{archive} did not contain the expected path {source.provides}",
                            hint=f"its top-level entries are: {', '.join(top_level) or '(none)'} (extracted into "
                                 f"{destination}); the archive's layout may have changed: please report it")
        moves = _plan_moves(staging, destination, archive)
        # The move that creates `provides` goes last, so the source only looks present once all is in place.
        moves.sort(key=lambda move: provides.is_relative_to(move[1].absolute()))
        destination.mkdir(parents=True, exist_ok=True)
        for src, dst in moves:
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _plan_moves(staging: Path, destination: Path, archive: Path) -> list[tuple[Path, Path]]:
    """Renames that put every extracted entry in place, merging into existing folders (SPair-U adds folders
    next to SPair-71k's). Any path that already exists as a file, or as a folder where the archive has a
    file, is in the way: nothing is moved then."""
    moves, in_the_way = [], []

    def plan(src: Path, dst: Path) -> None:
        if not dst.exists() and not dst.is_symlink():
            moves.append((src, dst))
        elif src.is_dir() and not src.is_symlink() and dst.is_dir():
            for child in sorted(src.iterdir()):
                plan(child, dst / child.name)
        else:
            in_the_way.append(dst)

    for entry in sorted(staging.iterdir()):
        plan(entry, destination / entry.name)
    if in_the_way:
        more = f" (+{len(in_the_way) - 5} more)" if len(in_the_way) > 5 else ""
        shown = ", ".join(str(p) for p in in_the_way[:5]) + more
        raise DataError(f"cannot extract {archive}: already present: {shown}",
                        hint="move or delete what is in the way (an older or partial copy?) and run again; "
                             "the downloaded archive is kept")
    return moves


def _unpack(archive: Path, into: Path, record_path: Path | None = None) -> None:
    try:
        _unpack_members(archive, into)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        # A record can only match an unreadable archive if an older corrbench wrote it before extracting.
        record = f" and {record_path} (a record of this same broken copy)" if record_path is not None else ""
        raise DataError(f"{archive} is not a readable archive ({exc})",
                        hint=f"it is incomplete (an interrupted or truncated download?) or not the expected file: "
                             f"delete {archive}{record} and run again, or save a complete copy there by hand") from None


def _unpack_members(archive: Path, into: Path) -> None:
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                _check_member(archive, member.filename)
                if (member.external_attr >> 16) & 0o170000 == 0o120000:  # a symlink stored by Info-ZIP
                    _check_link(archive, member.filename, zf.read(member).decode("utf-8", "replace"))
                zf.extract(member, into)
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with tarfile.open(archive) as tf:
            for member in tf:
                _check_member(archive, member.name)
                if member.issym():
                    _check_link(archive, member.name, member.linkname)
                elif member.islnk():  # hard links name a path from the archive's root
                    _check_member(archive, member.linkname)
                elif not (member.isfile() or member.isdir()):
                    raise DataError(f"{archive}: member {member.name} is a device or pipe",
                                    hint="the archive is not a dataset archive; delete it and run again")
                tf.extract(member, into, **_tar_filter())
    else:
        raise DataError(f"{archive}: unknown archive type", hint="expected .zip, .tar, .tar.gz or .tgz")


def _tar_filter() -> dict:
    # Python >= 3.11.4 / 3.12 checks members itself too; without a filter argument it warns on 3.12+.
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _check_member(archive: Path, name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DataError(f"{archive}: refusing member {name!r}: it would be written outside the extraction folder",
                        hint="the archive is damaged or not the official one; delete it and run again")


def _check_link(archive: Path, name: str, link: str) -> None:
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
    if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise DataError(f"{archive}: refusing link {name!r} -> {link!r}: it points outside the archive",
                        hint="the archive is damaged or not the official one; delete it and run again")
