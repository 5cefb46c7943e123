"""Schema-versioned HDF5 files: a file of another kind, or of a newer (or no) schema version, is refused with a
typed error naming the file and what was found; the loaders built on it say what to do; the refused file is
closed again (no handle left open on it)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lab4f.calibration import CalibrationRecord
from lab4f.errors import CalibrationError, Lab4fError
from lab4f.optics import compile_bank
from lab4f.optics.program import PROGRAM_SCHEMA, OpticalProgram
from lab4f.spectral import KernelBank
from lab4f.storage import StorageError, atomic_h5, open_h5


def write(path: Path, kind: str, version: int) -> Path:
    with atomic_h5(path, kind, version) as f:
        f.create_dataset("data", data=np.arange(3))
    return path


def assert_closed(path: Path) -> None:
    """The refused file is not held open: HDF5 cannot truncate a file another handle in this process has open."""
    with h5py.File(path, "w"):
        pass


def test_right_kind_and_schema_open_and_every_supported_version_is_accepted(tmp_path: Path) -> None:
    for version in (1, 2, 3):
        path = write(tmp_path / f"v{version}.h5", "optical_program", version)
        with open_h5(path, "optical_program", 3) as f:
            assert (
                f.attrs["kind"] == "optical_program" and int(f.attrs["schema_version"]) == version
            )
            assert list(f["data"][()]) == [0, 1, 2]


def test_wrong_kind_is_refused_with_a_typed_error_naming_both_kinds(tmp_path: Path) -> None:
    path = write(tmp_path / "a_run.h5", "run", 1)
    with pytest.raises(StorageError) as err:
        open_h5(path, "optical_program", PROGRAM_SCHEMA)
    assert isinstance(err.value, Lab4fError)  # the CLI reports Lab4fErrors as typed errors
    msg = str(err.value)
    assert str(path) in msg and "'run'" in msg and "'optical_program'" in msg
    assert_closed(path)


def test_future_and_missing_schema_versions_are_refused_with_the_supported_range(
    tmp_path: Path,
) -> None:
    future = write(tmp_path / "future.h5", "optical_program", PROGRAM_SCHEMA + 1)
    with pytest.raises(StorageError) as err:
        open_h5(future, "optical_program", PROGRAM_SCHEMA)
    msg = str(err.value)
    assert str(future) in msg and f"schema version {PROGRAM_SCHEMA + 1}" in msg
    assert f"versions 1..{PROGRAM_SCHEMA}" in msg  # what this lab4f reads
    assert_closed(future)
    zero = write(tmp_path / "zero.h5", "optical_program", 0)
    with pytest.raises(StorageError, match="schema version 0"):
        open_h5(zero, "optical_program", PROGRAM_SCHEMA)
    bare = tmp_path / "bare.h5"  # an HDF5 file written by something else: no kind, no version
    with h5py.File(bare, "w") as f:
        f.create_dataset("x", data=np.zeros(2))
    with pytest.raises(StorageError, match=r"holds a None file, not a 'optical_program' file"):
        open_h5(bare, "optical_program", PROGRAM_SCHEMA)
    assert_closed(bare)


def test_missing_and_non_hdf5_files_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_h5(tmp_path / "nope.h5", "run", 1)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(StorageError, match="not a readable HDF5 file"):
        open_h5(text, "run", 1)


@pytest.fixture(scope="module")
def program_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bank = KernelBank(torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0)))
    return compile_bank(bank, 8, modulation="complex").save(
        tmp_path_factory.mktemp("prog") / "p.program.h5"
    )


def test_optical_program_loader_refuses_a_newer_program_and_a_record(
    program_file: Path, tmp_path: Path
) -> None:
    program = OpticalProgram.load(program_file)  # the genuine file loads
    assert program.bank.shape == (2, 1, 3, 3)
    newer = tmp_path / "newer.program.h5"
    newer.write_bytes(program_file.read_bytes())
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = PROGRAM_SCHEMA + 1
    newer_says = (
        rf"schema version {PROGRAM_SCHEMA + 1}.*optical_program versions 1\.\.1.*upgrade lab4f"
    )
    with pytest.raises(StorageError, match=newer_says):
        OpticalProgram.load(newer)
    record = CalibrationRecord().save(tmp_path / "cal.h5")
    with pytest.raises(
        StorageError,
        match="holds a 'calibration_record' file, not a 'optical_program' file; pass a ",
    ):
        OpticalProgram.load(record)


def test_calibration_record_loader_says_what_to_do(program_file: Path, tmp_path: Path) -> None:
    good = CalibrationRecord().save(tmp_path / "cal-good.h5")
    assert CalibrationRecord.load(good).steps == {}
    newer = tmp_path / "cal-newer.h5"
    newer.write_bytes(good.read_bytes())
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = int(f.attrs["schema_version"]) + 1
    for path, found in (
        (newer, "schema version 2"),
        (program_file, "holds a 'optical_program' file"),
    ):
        with pytest.raises(CalibrationError) as err:
            CalibrationRecord.load(path)
        msg = str(err.value)
        assert str(path) in msg and found in msg
        assert "Use an earlier record" in msg and "`lab4f calibrate all`" in msg  # what to do next
        assert isinstance(err.value.__cause__, StorageError)  # the storage refusal, wrapped


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path) -> None:
    import os
    import stat

    from lab4f.storage import atomic_h5

    old = os.umask(0o022)
    try:
        with atomic_h5(tmp_path / "a.h5", "run", 1) as f:
            f["x"] = 1
        assert stat.S_IMODE((tmp_path / "a.h5").stat().st_mode) == 0o644
        os.umask(0o077)
        with atomic_h5(tmp_path / "b.h5", "run", 1) as f:
            f["x"] = 1
        assert stat.S_IMODE((tmp_path / "b.h5").stat().st_mode) == 0o600
    finally:
        os.umask(old)
