"""HDF5 storage: schema-versioned files written atomically (temporary file in the same folder, then rename),
so a crash never leaves a half-written file in place of a good one."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lab4f import __version__
from lab4f.errors import Lab4fError


class StorageError(Lab4fError):
    """A file is missing, corrupt, truncated or of an unknown schema."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (which program a record was measured with, which files a run used)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ExistsError(StorageError):
    """A file lab4f was asked to create already exists, and it is not overwritten."""


#: ``.{final name}.{pid}.{hex}.tmp``: the temporary file a write goes to before it is published
TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]+)\.tmp")


def temp_name(path: Path) -> Path:
    """A hidden temporary name beside ``path``, unique per process and call (see :data:`TEMP_RE`)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def numbered(path: Path) -> Iterator[Path]:
    """``path``, then ``stem-1.ext``, ``stem-2.ext``, …: the names a write that must not overwrite tries in turn."""
    yield path
    for n in itertools.count(1):
        yield path.with_name(f"{path.stem}-{n}{path.suffix}")


@dataclass
class Target:
    """A write in progress: ``tmp`` is the file to write; ``path`` is the name it was published under (None
    until the ``with`` block of :func:`atomic_write` has ended without an error)."""

    tmp: Path
    path: Path | None = None


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform / file system can open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _link_exclusive(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if no file has it (FileExistsError otherwise), in one step: a hard link
    fails when the name exists, where a rename would replace it. On a file system without hard links the name is
    reserved by an exclusive create, then the temporary file is renamed over that placeholder."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.ENOSYS,
            errno.EMLINK,
        ):
            raise
        os.close(
            os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        )  # FileExistsError if taken
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def publish(tmp: Path, path: Path, overwrite: bool = True, unique: bool = False) -> Path:
    """Give the finished temporary file ``tmp`` its final name and return it: ``overwrite`` replaces ``path``;
    otherwise the name is created exclusively — :class:`ExistsError` if ``path`` exists, or with ``unique`` the
    first free name of :func:`numbered` (never a check-then-rename: two writers can never get the same name)."""
    if overwrite:
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return path
    for candidate in numbered(path) if unique else (path,):
        try:
            _link_exclusive(tmp, candidate)
        except FileExistsError:
            continue
        _fsync_dir(path.parent)
        return candidate
    raise ExistsError(f"{path} already exists and is not overwritten")


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], overwrite: bool = True, unique: bool = False
) -> Iterator[Target]:
    """Write to ``target.tmp`` (a hidden temporary file beside ``path``); when the block ends without an error the
    file is synced and published by :func:`publish` (``target.path`` says under which name); on an error it is
    removed. A process killed inside the block leaves the temporary file (:data:`TEMP_RE`), never a partial
    file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    # created 0666 less the umask (mkstemp's 0600 would keep records from colleagues on a shared machine)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    target = Target(tmp)
    try:
        yield target
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        target.path = publish(tmp, path, overwrite=overwrite, unique=unique)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def h5_file(path: str | os.PathLike[str], kind: str, schema_version: int) -> Iterator[h5py.File]:
    """Create the HDF5 file ``path`` (usually an :func:`atomic_write` target's ``tmp``) with lab4f's header."""
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = kind
        f.attrs["schema_version"] = schema_version
        f.attrs["created"] = now_iso()
        f.attrs["lab4f_version"] = __version__
        yield f


@contextlib.contextmanager
def atomic_h5(
    path: str | os.PathLike[str], kind: str, schema_version: int, overwrite: bool = True
) -> Iterator[h5py.File]:
    """Open a temporary HDF5 file for writing; on success it becomes ``path`` in one step (replacing it, or with
    ``overwrite=False`` only if ``path`` does not exist: :class:`ExistsError`). Use :func:`atomic_write` with
    :func:`h5_file` to take the next free name instead."""
    with (
        atomic_write(path, overwrite=overwrite) as target,
        h5_file(target.tmp, kind, schema_version) as f,
    ):
        yield f


def leftover_temps(folder: str | os.PathLike[str], pattern: str = "*") -> list[dict[str, Any]]:
    """Temporary files (:data:`TEMP_RE`) in ``folder`` whose final name matches ``pattern``: left by a process
    killed while writing, or being written now. Each: path, size_bytes, final_name (the name it was to get),
    pid and writer_alive (that process still runs on this machine: the write may be in progress)."""
    out: list[dict[str, Any]] = []
    folder = Path(folder)
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob(f".{pattern}.*.tmp")):
        m = TEMP_RE.fullmatch(p.name)
        if m is None or not p.is_file():
            continue
        pid = int(m.group("pid"))
        with contextlib.suppress(FileNotFoundError):
            out.append(
                {
                    "path": str(p),
                    "size_bytes": p.stat().st_size,
                    "final_name": m.group("name"),
                    "pid": pid,
                    "writer_alive": pid_alive(pid),
                }
            )
    return out


def pid_alive(pid: int) -> bool:
    """True if a process with this id runs on this machine (or might: when we may not ask, assume it does)."""
    if (
        pid == os.getpid() or os.name == "nt"
    ):  # Windows' os.kill(pid, 0) would signal the process, not ask
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def open_h5(path: str | os.PathLike[str], kind: str, max_schema: int) -> h5py.File:
    """Open a lab4f HDF5 file for reading, checking it exists, is readable and has a known schema."""
    path = Path(path)
    if not path.exists():
        raise StorageError(f"{path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StorageError(
            f"{path} is not a readable HDF5 file (corrupt or truncated?): {exc}"
        ) from exc
    found_kind = f.attrs.get("kind")
    version = int(f.attrs.get("schema_version", -1))
    if found_kind != kind:
        f.close()
        raise StorageError(
            f"{path} holds a {found_kind!r} file, not a {kind!r} file; pass a {kind} file "
            f"written by lab4f here"
        )
    if not 1 <= version <= max_schema:
        f.close()
        advice = (
            "it was written by a newer lab4f: upgrade lab4f to read it"
            if version > max_schema
            else "it was not written by lab4f, or is damaged: make it again"
        )
        raise StorageError(
            f"{path} has schema version {version}; this lab4f reads {kind} versions 1..{max_schema}; "
            f"{advice}"
        )
    return f


def write_json_attr(group: h5py.Group, name: str, value: Any) -> None:
    """Store a plain (JSON-able) structure as a string attribute; read back with json, never eval."""
    group.attrs[name] = json.dumps(value, default=_plain)


def read_json_attr(group: h5py.Group, name: str, default: Any = None) -> Any:
    raw = group.attrs.get(name)
    return default if raw is None else json.loads(raw)


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not storable as JSON: {type(obj).__name__}")
