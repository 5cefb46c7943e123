"""The identity of a data set as a checkpoint records it, and the warnings when data differ from it.

:func:`lab4f.data.load_dataset` hashes every image's pixels (BLAKE2b of the stored values, so a re-encoded file
with the same pixels is the same image) and records in :attr:`DatasetSplits.identity`:

- ``data``: a hash of all images loaded with their labels, in no particular order (the files' content);
- ``split``: a hash of which images (and labels) are in train, val and test — it changes with the split seed,
  the fractions, added or removed files, or a test split given instead of carved;
- ``images``, ``sizes`` (per split, before ``limit``), ``split_seed``, ``carved`` (the fractions of the splits
  carved from the training files), ``duplicates`` (exact copies found, and left out);
- for a student, ``teacher``: the identity of the data its teacher was trained on (what it was distilled on).

Checkpoints keep it in their ``dataset`` metadata. ``lab4f run``/``evaluate`` and student training compare it
with the data they load and warn — a :mod:`logging` warning on the ``lab4f.data`` logger, which the CLI also
puts in its ``--json`` output as ``data_warnings`` — when the images differ, or are the same images split
another way (then images the network learnt from may be in the split it is scored on).

This module imports nothing heavy (the CLI imports it at start).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

LOGGER = "lab4f.data"  # every data warning goes to this logger (or a child of it)
VERSION = 1
log = logging.getLogger(LOGGER + ".identity")


def _digest(entries: Iterable[tuple[bytes, int]]) -> str:
    h = hashlib.sha256()
    for pixels, label in sorted(entries):
        h.update(pixels)
        h.update(int(label).to_bytes(8, "little", signed=True))
    return h.hexdigest()[:16]


def make_identity(
    content: list[tuple[bytes, int]],
    splits: dict[str, list[tuple[bytes, int]]],
    *,
    split_seed: int,
    carved: dict[str, float],
    duplicates: dict[str, int],
) -> dict[str, Any]:
    """The identity of loaded data: ``content`` every (pixel hash, label) loaded, ``splits`` those of train, val
    and test (see the module docstring)."""
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        h.update(name.encode() + _digest(splits.get(name, [])).encode())
    return {
        "version": VERSION,
        "data": _digest(content),
        "split": h.hexdigest()[:16],
        "images": len(content),
        "sizes": {name: len(splits.get(name, [])) for name in ("train", "val", "test")},
        "split_seed": split_seed,
        "carved": dict(carved),
        "duplicates": dict(duplicates),
    }


def compare(recorded: dict[str, Any] | None, current: dict[str, Any] | None) -> str | None:
    """ "data" when the images differ, "split" when the same images are split another way, else None (also when
    either side has no identity: a checkpoint written before lab4f recorded one cannot be checked)."""
    if not recorded or not current or "data" not in recorded or "data" not in current:
        return None
    if recorded["data"] != current["data"]:
        return "data"
    return "split" if recorded.get("split") != current.get("split") else None


def same(recorded: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
    """Whether both identities are known and name the same images split the same way (wherever they are now)."""
    return bool(recorded and current and "data" in recorded) and compare(recorded, current) is None


def describe(identity: dict[str, Any]) -> str:
    """'1,234 images, data 0123abcd89ef4567, split 4567ef0123abcd89 (seed 0)'."""
    n = identity.get("images")
    count = f"{n:,} images" if isinstance(n, int) else "images"
    return f"{count}, data {identity.get('data')}, split {identity.get('split')} (seed {identity.get('split_seed')})"


def _names(meta: dict[str, Any]) -> list[str] | None:
    names = (meta.get("dataset") or {}).get("class_names")
    return [str(n) for n in names] if names else None


def _warn(messages: list[str]) -> list[str]:
    for m in messages:
        log.warning("%s", m)
    return messages


def warn_if_data_differ(
    meta: dict[str, Any], splits: Any, checkpoint: object, split: str = "test"
) -> list[str]:
    """Run/evaluate: warn (and return the warnings) when ``splits`` (a :class:`lab4f.data.DatasetSplits`) differ
    from the data the checkpoint with metadata ``meta`` was trained on, or its teacher was (for a student)."""
    recorded = (meta.get("dataset") or {}).get("identity") or None
    current = getattr(splits, "identity", None) or {}
    out = []
    kind = compare(recorded, current)
    if kind == "data":
        out.append(
            f"{checkpoint} was trained on other data than {splits.name}: then {describe(recorded)}; now "
            f"{describe(current)}. Its scores here are not scores on the data it was trained for"
        )
    elif kind == "split":
        out.append(
            f"{checkpoint} was trained on these images split another way (then split {recorded.get('split')}"
            f" (seed {recorded.get('split_seed')}); now {current.get('split')} (seed "
            f"{current.get('split_seed')})): images it was trained on may be in this {split} split"
        )
    teacher = recorded.get("teacher") if recorded else None
    # a teacher trained on exactly the student's data says nothing the student's own check has not
    tkind = compare(teacher, current) if compare(teacher, recorded) else None
    if tkind == "data":
        out.append(
            f"{checkpoint} was distilled from a teacher trained on other data: {describe(teacher)}; these "
            f"are {describe(current)}"
        )
    elif tkind == "split":
        out.append(
            f"{checkpoint} was distilled from a teacher trained on these images split another way (then split "
            f"{teacher.get('split')}; now {current.get('split')}): the teacher's knowledge may include this "
            f"{split} split"
        )
    names, now = _names(meta), [str(n) for n in getattr(splits, "class_names", ())]
    if names and now and names != now:
        out.append(
            f"{checkpoint} names its classes {names}, these data {now}: labels are compared by index"
        )
    return _warn(out)


def check_teacher_data(teacher_meta: dict[str, Any], splits: Any, teacher: object) -> Any:
    """Student training: warn when the teacher was trained on other data than ``splits`` (or on another split of
    them), and return ``splits`` with the teacher's data identity recorded as ``identity["teacher"]`` (the
    student's checkpoint then says what it was distilled on)."""
    recorded = (teacher_meta.get("dataset") or {}).get("identity") or None
    current = dict(getattr(splits, "identity", None) or {})
    out = []
    kind = compare(recorded, current)
    if kind == "data":
        out.append(
            f"teacher {teacher} was trained on other data than this student: {describe(recorded)}; the "
            f"student's are {describe(current)}"
        )
    elif kind == "split":
        out.append(
            f"teacher {teacher} was trained on these images split another way (split {recorded.get('split')}"
            f" (seed {recorded.get('split_seed')}); the student's {current.get('split')} (seed "
            f"{current.get('split_seed')})): its knowledge may include the student's test split, whose score "
            "is then optimistic"
        )
    names, now = _names(teacher_meta), [str(n) for n in getattr(splits, "class_names", ())]
    if names and now and names != now:
        out.append(f"teacher {teacher} names its classes {names}, this student's data {now}")
    _warn(out)
    if recorded:
        current["teacher"] = {k: v for k, v in recorded.items() if k != "teacher"}
    if not dataclasses.is_dataclass(splits):
        return splits
    return dataclasses.replace(
        splits, identity=current, warnings=(*getattr(splits, "warnings", ()), *out)
    )


@contextlib.contextmanager
def collect_data_warnings() -> Iterator[list[str]]:
    """The warnings logged on the ``lab4f.data`` logger (and its children) while the block runs, each once, in
    order (the CLI adds them to a command's ``--json`` output as ``data_warnings``)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if text not in messages:
                messages.append(text)

    handler = _Collect(logging.WARNING)
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def slug(name: str) -> str:
    """A file-name-safe short form of a dataset name: 'folder:/data/my set' → 'folder-my_set'."""
    kind, sep, path = name.partition(":")
    if not sep:
        return re.sub(r"[^\w.-]+", "_", name)
    tail = path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or kind
    return f"{kind}-" + re.sub(r"[^\w.-]+", "_", tail)
