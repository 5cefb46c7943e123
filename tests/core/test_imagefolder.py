"""`lab4f run --images`: images are read at their full bit depth, normalised by it, and the depth is reported;
what cannot be read faithfully is refused with the reason; an unreadable image is skipped, counted and named
(--strict-images: an error)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab4f.cli import main
from lab4f.imagefolder import LUMA_BT601, ImageReadError, read_image, read_image_folder

RAMP16 = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472


def png16(path: Path, arr: np.ndarray, colour: int = 0, sbit: int | None = None) -> Path:
    """A 16-bit PNG written by hand (gray: colour 0, RGB: colour 2), optionally with an sBIT chunk."""
    h, w = arr.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in arr)
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
    if sbit is not None:
        body += chunk(b"sBIT", bytes([sbit] * (3 if colour == 2 else 1)))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def test_16_bit_png_and_tiff_keep_their_depth(tmp_path: Path) -> None:
    Image.fromarray(RAMP16).save(tmp_path / "a.png")
    Image.fromarray(RAMP16).save(tmp_path / "a.tif")
    for name in ("a.png", "a.tif"):
        a, depth = read_image(tmp_path / name)
        assert depth == "16-bit"
        np.testing.assert_allclose(
            a, RAMP16 / 65535.0, atol=1e-7
        )  # not clipped at 255/65535 as convert("L") did
        assert len(np.unique(a)) == RAMP16.size  # every level kept


def test_8_bit_1_bit_and_gray_stored_as_rgb(tmp_path: Path) -> None:
    g8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(g8).save(tmp_path / "g.png")
    Image.fromarray(np.stack([g8] * 3, -1)).save(tmp_path / "rgb.png")
    Image.fromarray(g8).convert("1").save(tmp_path / "b.png")
    for name, depth in (("g.png", "8-bit"), ("rgb.png", "8-bit (gray stored as RGB)")):
        a, d = read_image(tmp_path / name)
        assert d == depth
        np.testing.assert_allclose(a, g8 / 255.0, atol=1e-7)
    a, d = read_image(tmp_path / "b.png")
    assert d == "1-bit" and set(np.unique(a)) <= {0.0, 1.0}


def test_12_bit_data_as_the_file_declares_it(tmp_path: Path) -> None:
    ramp12 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 65).astype(np.uint16)  # 0 .. 4095
    Image.fromarray(ramp12).save(
        tmp_path / "a.tif", tiffinfo={281: 4095}
    )  # MaxSampleValue 4095 in 16-bit samples
    a, depth = read_image(tmp_path / "a.tif")
    assert depth == "12-bit (TIFF MaxSampleValue 4095)"
    np.testing.assert_allclose(a, ramp12 / 4095.0, atol=1e-7)
    scaled = png16(
        tmp_path / "s.png", ramp12 << 4, sbit=12
    )  # PNG: 12 significant bits stored scaled to 16
    a, depth = read_image(scaled)
    assert depth.startswith("12-bit (PNG sBIT") and abs(float(a.max()) - (4095 << 4) / 65535) < 1e-6


def test_float_tiff_in_range_is_exact_and_out_of_range_is_refused(tmp_path: Path) -> None:
    f = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    Image.fromarray(f).save(tmp_path / "f.tif")
    a, depth = read_image(tmp_path / "f.tif")
    assert "float" in depth
    np.testing.assert_array_equal(a, f)
    Image.fromarray(f * 300).save(tmp_path / "big.tif")
    with pytest.raises(ImageReadError, match=r"must hold intensities in \[0, 1\]"):
        read_image(tmp_path / "big.tif")


def test_colour_is_converted_by_bt601_and_what_cannot_be_read_faithfully_is_refused(
    tmp_path: Path,
) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "c.png")
    a, depth = read_image(tmp_path / "c.png")
    assert depth == "8-bit colour → BT.601 luminance"
    np.testing.assert_allclose(a, (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255, atol=1e-6)
    assert LUMA_BT601 == (0.299, 0.587, 0.114)
    with pytest.raises(
        ImageReadError, match="16 bits per channel"
    ):  # Pillow would give 8 bits of it
        read_image(png16(tmp_path / "c16.png", np.stack([RAMP16] * 3, -1), colour=2))
    rgba = np.concatenate([rgb, np.full((4, 4, 1), 128, np.uint8)], -1)
    Image.fromarray(rgba).save(tmp_path / "t.png")
    with pytest.raises(ImageReadError, match="transparent"):
        read_image(tmp_path / "t.png")
    Image.fromarray(RAMP16.astype(np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(ImageReadError, match="no defined full scale"):
        read_image(tmp_path / "i32.tif")


def test_an_unreadable_image_is_skipped_counted_and_named_or_with_strict_refused(
    tmp_path: Path,
) -> None:
    for i in range(3):
        Image.fromarray(RAMP16).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    read = read_image_folder(tmp_path, 28)
    assert len(read.files) == 3 and read.images.shape == (3, 1, 28, 28)
    assert read.summary()["skipped"] == 1 and read.skipped[0]["file"] == "broken.png"
    assert read.depths == {"16-bit": 3}
    with pytest.raises(ImageReadError, match="--strict-images"):
        read_image_folder(tmp_path, 28, strict=True)


def test_16_bit_data_using_a_small_part_of_the_range_is_reported(tmp_path: Path) -> None:
    Image.fromarray((RAMP16 >> 4).astype(np.uint16)).save(
        tmp_path / "dim.png"
    )  # 12-bit values, undeclared
    read = read_image_folder(tmp_path, 28)
    assert read.warnings and "12-bit" in read.warnings[0] and "dim.png" in read.warnings[0]


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.models import ModelConfig, build_model

    cfg = ModelConfig(kind="student", widths=(4, 8), detection="incoherent")
    torch.manual_seed(0)
    return save_checkpoint(
        tmp_path_factory.mktemp("ck") / "student.pt",
        build_model(cfg),
        make_metadata(cfg, dataset={"name": "mnist5k", "split_seed": 0}),
    )


def test_run_images_reports_depths_and_skipped_files(student: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "imgs"
    (folder / "3").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(RAMP16).save(folder / "3" / f"{i}.png")
    Image.fromarray((RAMP16 >> 8).astype(np.uint8)).save(folder / "3" / "eight.png")
    (folder / "3" / "broken.png").write_bytes(b"not an image")
    run = ["run", "--checkpoint", str(student), "--images", str(folder), "--json"]
    assert main([*run, "--out", str(tmp_path / "r.h5")]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 4 and m["images"]["depths"] == {"16-bit": 3, "8-bit": 1}
    assert m["images"]["skipped"] == 1 and m["images"]["skipped_files"][0]["file"] == str(
        Path("3") / "broken.png"
    )
    assert main([*run, "--out", str(tmp_path / "s.h5"), "--strict-images"]) == 2
    err = json.loads(capsys.readouterr().out)
    assert err["error"] == "ImageReadError" and "broken.png" in err["message"]
    assert not (tmp_path / "s.h5").exists()
