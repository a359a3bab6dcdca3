"""Shared fixtures: the real ADE20K samples (skipped cleanly when absent), bad-input folders, and one
local Ray instance for the whole test session (the runner reuses an initialised instance)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# One runtime export cache for the test session, set before Ray starts so its workers inherit it: the
# tiny model is exported to ONNX once (~12 s), then every runtime test hits the cache.
os.environ.setdefault("SEGBENCH_CACHE", tempfile.mkdtemp(prefix="segbench-test-cache-"))
# The machine-speed probe (~2 s a cell) is off for the suite's hundreds of tiny cells; its own tests
# turn it on where they need it.
os.environ.setdefault("SEGBENCH_SPEED_PROBE", "0")

ADE_SAMPLES = Path(os.environ.get("SEGBENCH_ADE_SAMPLES",
                                  Path(__file__).resolve().parents[2] / "shared" / "data" / "ade20k-samples"))


@pytest.fixture(scope="session")
def ade_samples() -> Path:
    if not (ADE_SAMPLES / "ADE_val_00000001.jpg").is_file():
        pytest.skip(f"ADE20K samples not found at {ADE_SAMPLES}")
    return ADE_SAMPLES


def start_local_ray():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


@pytest.fixture
def ray_local():
    """The one local Ray instance of the test session (started on first use, reused by the runner)."""
    return start_local_ray()


@pytest.fixture(autouse=True)
def _cli_stays_on_the_host_network(monkeypatch):
    """A CLI command run in-process must not move the pytest process into a private network namespace
    (everything after would run there); tests of the namespace run the CLI in a subprocess without this."""
    monkeypatch.setenv("SEGBENCH_NETWORK", "host")


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_end():
    yield
    import ray

    ray.shutdown()


def _encode(image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


# What each bad file is, and the words its recorded reason must contain.
BAD_FILES = {
    "corrupt.jpg": "corrupt",
    "empty.png": "empty",
    "notes.jpg": "not an image",
    "README.txt": "not an image",
    "bomb.png": "decompression bomb",
}
# What a folder source deliberately does not read, and the words of its reason.
SKIPPED_FILES = {
    ".hidden.jpg": "hidden file",
    ".cache": "hidden folder",
    "outside.jpg": "outside the folder",
    "broken.jpg": "broken symlink",
}


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 1×1 PNG whose header claims width×height: a few bytes that would decode to gigabytes."""
    import struct
    import zlib

    from PIL import Image

    png = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = bytes(png[12:16]) + struct.pack(">II", width, height) + bytes(png[24:29])
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(png)


@pytest.fixture(scope="session")
def mixed_folder(tmp_path_factory) -> Path:
    """Good images in many modes and formats (recognised by content: GIF, TIFF, upper case, no extension,
    a symlink inside the folder), bad inputs (corrupt, zero-byte, text, a decompression bomb), and what
    is deliberately not read (hidden file and folder, symlinks leaving the folder or leading nowhere)."""
    from PIL import Image

    from bench.workload.images import synthetic_jpeg

    root = tmp_path_factory.mktemp("mixed")
    (root / "sub").mkdir()
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (root / "rgb.jpg").write_bytes(synthetic_jpeg(1, scale=0.1))
    (root / "sub" / "grey.png").write_bytes(_encode(rgb.convert("L"), "PNG"))
    (root / "sub" / "rgba.png").write_bytes(_encode(rgb.convert("RGBA"), "PNG"))
    (root / "palette.png").write_bytes(_encode(rgb.convert("P"), "PNG"))
    (root / "cmyk.jpg").write_bytes(_encode(rgb.convert("CMYK"), "JPEG"))
    sixteen = Image.fromarray(rng.integers(0, 65535, (40, 30), dtype=np.uint16))
    (root / "deep16.png").write_bytes(_encode(sixteen, "PNG"))
    (root / "one_pixel.png").write_bytes(_encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"))
    (root / "image.webp").write_bytes(_encode(rgb, "WEBP"))
    (root / "image.bmp").write_bytes(_encode(rgb, "BMP"))
    good = synthetic_jpeg(2, scale=0.2)
    (root / "corrupt.jpg").write_bytes(good[: len(good) // 3])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("this is not an image\n")
    (root / "README.txt").write_text("not an image extension\n")
    (root / "bomb.png").write_bytes(bomb_png())
    (root / "anim.gif").write_bytes(_encode(rgb.convert("P"), "GIF"))
    (root / "scan.tif").write_bytes(_encode(rgb, "TIFF"))
    (root / "UPPER.PNG").write_bytes(_encode(rgb, "PNG"))
    (root / "sub" / "no_extension").write_bytes(synthetic_jpeg(3, scale=0.1))
    (root / "link.jpg").symlink_to("sub/no_extension")  # inside the folder: read under its own name
    (root / ".hidden.jpg").write_bytes(synthetic_jpeg(4, scale=0.1))
    (root / ".cache").mkdir()
    (root / ".cache" / "thumb.jpg").write_bytes(synthetic_jpeg(5, scale=0.1))
    outside = tmp_path_factory.mktemp("outside") / "secret.jpg"
    outside.write_bytes(synthetic_jpeg(6, scale=0.1))
    (root / "outside.jpg").symlink_to(outside)
    (root / "broken.jpg").symlink_to(root / "gone.jpg")
    return root


GOOD_IN_MIXED = 14


@pytest.fixture(scope="session")
def huge_image(tmp_path_factory) -> Path:
    """A 6000×4000 JPEG (24 Mpixel), in a folder of its own."""
    from PIL import Image

    root = tmp_path_factory.mktemp("huge")
    gradient = np.linspace(0, 255, 6000, dtype=np.uint8)[None, :, None].repeat(4000, 0).repeat(3, 2)
    Image.fromarray(gradient).save(root / "huge.jpg", quality=80)
    return root
