"""Every artifact the platform writes — Parquet tables, Ray Data folders, JSON
results, reports, plots and checkpoints — on local disk or any URI pyarrow's
file systems understand (`s3://`, `gs://`, …).

Writes are atomic (a temporary name, then a rename) and each finished artifact
gets one manifest: `{"sha256", "rows", "producer"}`. A file's manifest lies
beside it (`X.manifest.json`); a folder's lies inside it (`X/_manifest.json`,
a name Parquet readers skip), so it travels with the folder (Ray Train copies
checkpoint folders). `verify` is the one check: an artifact whose manifest is
missing or does not match its content is torn, and is never read as finished.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import uuid
from typing import Any, Callable, Iterator

import filelock
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import UserError

FOLDER_MANIFEST = "_manifest.json"
_LEGACY_FOLDER_MANIFEST = "manifest.json"  # checkpoints before schema 1: {file name: sha256}


class TornArtifact(Exception):
    """An artifact whose manifest is missing or does not match its content."""


def is_uri(path: str) -> bool:
    """Whether `path` names remote storage (`s3://…`, `gs://…`) rather than a local path."""
    return "://" in path


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system and path for a local path or a URI."""
    if is_uri(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def _kind(uri: str) -> pafs.FileType:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type


def exists(uri: str) -> bool:
    return _kind(uri) != pafs.FileType.NotFound


def check_writable_folder(uri: str, what: str) -> None:
    """Raise a one-line UserError unless `uri` is (or can become) a folder we may write in. Nothing is left
    behind: a local path is probed with a temporary folder in its nearest existing ancestor, a URI with a
    probe object that is deleted again."""
    fs, path = filesystem(uri)
    kind = fs.get_file_info(path).type
    if kind not in (pafs.FileType.NotFound, pafs.FileType.Directory):
        raise UserError(f"{what} {uri}: is a file, not a folder")
    try:
        if is_uri(uri):  # file:// needs the folder, object stores do not: made for the probe, removed after it
            made = kind == pafs.FileType.NotFound
            fs.create_dir(path, recursive=True)
            probe = f"{path}/.deepmimic-probe-{uuid.uuid4().hex}"
            with fs.open_output_stream(probe) as f:
                f.write(b"")
            fs.delete_file(probe)
            if made:
                fs.delete_dir(path)
            return
        ancestor = path
        while not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            raise UserError(f"{what} {uri}: {ancestor} is a file, not a folder")
        os.rmdir(tempfile.mkdtemp(prefix=".deepmimic-probe-", dir=ancestor))
    except OSError as e:
        raise UserError(f"{what} {uri}: not writable ({e.strerror or e})") from None


@contextlib.contextmanager
def exclusive(lock: str, what: str, quiet: bool = False) -> Iterator[None]:
    """Hold `lock` (a file beside the artifact) while making `what`; processes on other machines sharing
    the folder over NFS wait too. filelock takes a kernel lock (flock, which Linux maps to POSIX locks
    on NFS), so a killed holder's lock is released with its process, never left held. Object stores
    have no such lock: there each process makes the artifact itself (it is written atomically)."""
    if is_uri(lock):
        yield
        return
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    held = filelock.FileLock(lock)
    try:
        held.acquire(timeout=0)
    except filelock.Timeout:
        if not quiet:
            print(f"waiting for {what}: another process is making it ({lock})", flush=True)
        held.acquire(poll_interval=0.05 if quiet else 0.5)
    try:
        yield
    finally:
        held.release()


def manifest_uri(uri: str) -> str:
    """Where the manifest of `uri` lives: inside a folder, beside a file."""
    return f"{uri}/{FOLDER_MANIFEST}" if _kind(uri) == pafs.FileType.Directory else f"{uri}.manifest.json"


def write_bytes(data: bytes, uri: str, producer: str = "") -> None:
    """An artifact written atomically, then its manifest."""
    write_sealed(lambda fs, tmp: _put(fs, tmp, data), uri, producer)


def write_sealed(write: Callable[[pafs.FileSystem, str], None], uri: str, producer: str = "",
                 rows: int | None = None) -> None:
    """`write(fs, path)` writes the artifact at a temporary path beside `uri`, which is then renamed
    into place (a reader sees the old artifact or the whole new one, never half of it); the
    manifest comes last."""
    _write_atomic(write, uri)
    seal(uri, rows, producer)


def write_json(obj: object, uri: str, producer: str = "") -> None:
    """A JSON artifact (dataclasses as their fields), written atomically with a manifest."""
    write_bytes(_dumps(obj), uri, producer)


def read_bytes(uri: str) -> bytes:
    """An artifact's bytes after checking them against its manifest; raises TornArtifact."""
    verify(uri)
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_json(uri: str) -> Any:
    """A JSON artifact after checking it against its manifest; raises TornArtifact."""
    verify(uri)
    return load_json(uri)


def seal(uri: str, rows: int | None = None, producer: str = "") -> None:
    """Record a finished artifact's content hash, rows (tables only) and producer: written last."""
    manifest = _dumps({"sha256": content_hash(uri), "rows": rows, "producer": producer})
    _write_atomic(lambda fs, tmp: _put(fs, tmp, manifest), manifest_uri(uri))


def read_manifest(uri: str) -> dict:
    """What the manifest of `uri` records, unchecked (`verify` checks it against the content)."""
    return load_json(manifest_uri(uri))


def content_hash(uri: str) -> str:
    """SHA-256 of a file, or of a folder's files (relative name and bytes, in name order; its manifest left out)."""
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        files = sorted(f.path for f in found if f.type == pafs.FileType.File
                       and f.base_name not in (FOLDER_MANIFEST, _LEGACY_FOLDER_MANIFEST))
    else:
        files = [path]
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.relpath(f, path).encode())
        with fs.open_input_stream(f) as stream:
            while chunk := stream.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def verify(uri: str, producer: str | None = None) -> dict:
    """The manifest of `uri` after checking it against the content (and a table's rows); raises TornArtifact."""
    kind = _kind(uri)
    if kind == pafs.FileType.NotFound:
        raise TornArtifact(f"{uri}: missing")
    if kind == pafs.FileType.Directory and not exists(f"{uri}/{FOLDER_MANIFEST}") \
            and exists(f"{uri}/{_LEGACY_FOLDER_MANIFEST}"):
        return _verify_legacy(uri)
    if not exists(manifest_uri(uri)):
        raise TornArtifact(f"{uri}: no manifest")
    try:
        manifest = read_manifest(uri)
        rows = _rows(uri) if manifest.get("rows") is not None else None
    except UserError as e:
        raise TornArtifact(str(e)) from None
    if manifest.get("sha256") != content_hash(uri) or manifest.get("rows") != rows:
        raise TornArtifact(f"{uri}: content does not match its manifest")
    if producer is not None and manifest.get("producer") != producer:
        raise TornArtifact(f"{uri}: made by {manifest.get('producer')}, expected {producer}")
    return manifest


def _rows(uri: str) -> int:
    fs, path = filesystem(uri)
    try:
        return pq.read_table(path, filesystem=fs, columns=["id"]).num_rows
    except (OSError, pa.ArrowInvalid) as e:
        raise UserError(f"{uri}: unreadable Parquet table ({e})") from None


def _verify_legacy(folder: str) -> dict:
    """A checkpoint folder written before one manifest format: a hash per file."""
    listed = load_json(f"{folder}/{_LEGACY_FOLDER_MANIFEST}")
    for name, digest in listed.items():
        if not exists(f"{folder}/{name}") or content_hash(f"{folder}/{name}") != digest:
            raise TornArtifact(f"{folder}: {name} does not match its manifest")
    return {"sha256": None, "rows": None, "producer": ""}


def intact(uri: str, producer: str | None = None) -> bool:
    """Whether `uri` is a finished artifact whose content matches its manifest."""
    try:
        verify(uri, producer)
        return True
    except TornArtifact:
        return False


def load_json(uri: str) -> Any:
    """A JSON file, unchecked; a UserError naming it if it cannot be read."""
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise UserError(f"{uri}: unreadable JSON ({e})") from None


class DiskFull(UserError):
    """A write that met a full disk (or a quota): the path, in one line."""


def is_full(error: BaseException) -> bool:
    """Whether `error` is a full disk's or an exhausted quota's (pyarrow's carry the errno too)."""
    return isinstance(error, OSError) and (error.errno in (errno.ENOSPC, errno.EDQUOT)
                                           or "No space left on device" in str(error))


@contextlib.contextmanager
def writing(uri: str) -> Iterator[None]:
    """Where `uri` is written: a full disk met there becomes one line naming it (a DiskFull)."""
    try:
        yield
    except OSError as e:
        if is_full(e):
            raise DiskFull(f"{uri}: no space left on its device while writing it; free some and run the same "
                           "command again (what was finished is kept)") from None
        raise


def _write_atomic(write: Callable[[pafs.FileSystem, str], None], uri: str) -> None:
    fs, path = filesystem(uri)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with writing(uri):
        fs.create_dir(os.path.dirname(path), recursive=True)
        try:
            write(fs, tmp)
            fs.move(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # the space a half-written file took, freed
                fs.delete_file(tmp)
            raise


def _put(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    with fs.open_output_stream(path) as f:
        f.write(data)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, indent=1, default=_plain).encode()


def _plain(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "to_json"):
        return obj.to_json()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
