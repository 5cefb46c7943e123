"""HDF5 storage: schema-versioned files written atomically (temporary file in the same folder, then rename),
so a crash never leaves a half-written file in place of a good one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
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


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike[str], kind: str, schema_version: int) -> Iterator[h5py.File]:
    """Open a temporary HDF5 file for writing; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # created 0666 less the umask (mkstemp's 0600 would keep records from colleagues on a shared machine)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["kind"] = kind
            f.attrs["schema_version"] = schema_version
            f.attrs["created"] = now_iso()
            f.attrs["lab4f_version"] = __version__
            yield f
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def open_h5(path: str | os.PathLike[str], kind: str, max_schema: int) -> h5py.File:
    """Open a lab4f HDF5 file for reading, checking it exists, is readable and has a known schema."""
    path = Path(path)
    if not path.exists():
        raise StorageError(f"{path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StorageError(f"{path} is not a readable HDF5 file (corrupt or truncated?): {exc}") from exc
    found_kind = f.attrs.get("kind")
    version = int(f.attrs.get("schema_version", -1))
    if found_kind != kind:
        f.close()
        raise StorageError(f"{path} holds a {found_kind!r} file, not a {kind!r} file; pass a {kind} file "
                           f"written by lab4f here")
    if not 1 <= version <= max_schema:
        f.close()
        advice = ("it was written by a newer lab4f: upgrade lab4f to read it" if version > max_schema else
                  "it was not written by lab4f, or is damaged: make it again")
        raise StorageError(f"{path} has schema version {version}; this lab4f reads {kind} versions 1..{max_schema}; "
                           f"{advice}")
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
