"""Image sources. Every source yields *encoded* images (JPEG/PNG bytes): decoding is measured work.

- `synthetic`: deterministic ADE20K-like photos generated from (seed, index), streamed, never stored.
- `folder:PATH` (or a bare path): every file below PATH, recursively, in sorted order. Images are
  recognised by content, not by name: the raster formats of `predictor.IMAGE_FORMATS` are processed (a
  `.gif`, a `.TIF`, a JPEG without an extension); anything else is recorded as a bad input with its reason
  when it is decoded. Deliberately not read, and listed as skipped with the reason: hidden files and
  folders (a name starting with '.'; a hidden folder is one entry), symlinks that leave the folder or lead
  nowhere, symlinked folders (not followed), and what is not a regular file (a FIFO would block the reader).
  The folder is listed once; a listed file is read only if it still passes (`read_listed`), else it is a
  bad input with the reason (gone, now a FIFO or a symlink, too large).
- `hf:NAME[:SPLIT[:DATA_DIR]]`: a Hugging Face `datasets` dataset (cached scene_parse_150, or
  `hf:imagefolder:train:PATH`).

Sources are small picklable descriptions, so a Ray worker can rebuild one and read its own share:
every source names its images by keys (`keys()`) and reads one by key (`load(key)`) in any process.
With `--input cluster` the driver sends `KeyBatch`es, never bytes (see `strategies` for who reads).
"""

from __future__ import annotations

import errno
import functools
import io
import itertools
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import SourceUnavailable

# Sizes of ADE20K validation images, weighted roughly as they occur (w, h).
ADE_SIZES = ((683, 512), (512, 683), (500, 375), (400, 300), (800, 600), (1024, 768), (256, 256))
ADE_SIZE_WEIGHTS = (0.38, 0.2, 0.14, 0.1, 0.1, 0.04, 0.04)


@dataclass(frozen=True, slots=True)
class EncodedImage:
    image_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file a source did not feed, with the reason (e.g. a hidden file, a symlink leaving the folder)."""

    path: str
    reason: str


@dataclass(frozen=True)
class SyntheticSource:
    count: int
    seed: int = 0
    scale: float = 1.0  # < 1 shrinks every size (tests use small images)
    quality: int = 88

    kind = "synthetic"

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[EncodedImage]:
        return (self.image(i) for i in range(self.count))

    def keys(self) -> Iterator[int]:
        return iter(range(self.count))

    def load(self, key: int) -> EncodedImage:
        return self.image(key)

    def image(self, index: int) -> EncodedImage:
        return EncodedImage(f"synthetic-{self.seed}-{index:06d}", synthetic_jpeg(index, self.seed, self.scale,
                                                                                  self.quality))

    def describe(self) -> dict:
        return {"kind": self.kind, "count": self.count, "seed": self.seed, "scale": self.scale}


@dataclass(frozen=True)
class FolderSource:
    root: Path
    count: int | None = None  # None: every image file
    # The one listing, taken when the source is made: (files to read, relative and sorted; what is not read).
    # Every count, key and read comes from it, so what is fed and what is expected are the same files.
    listing: tuple[tuple[str, ...], tuple[SkippedFile, ...]] | None = field(default=None, compare=False, repr=False)

    kind = "folder"

    def __post_init__(self) -> None:
        if self.listing is None:
            files, skipped = _listing(self.root)
            object.__setattr__(self, "listing", (tuple(files), tuple(skipped)))

    @classmethod
    def open(cls, root: Path, count: int | None = None) -> FolderSource:
        if not root.is_dir():
            raise SourceUnavailable(f"image folder {root} does not exist or is not a folder")
        return cls(root, count)

    @property
    def files(self) -> tuple[str, ...]:
        return self.listing[0][: self.count]

    @property
    def skipped(self) -> tuple[SkippedFile, ...]:
        return self.listing[1]

    def paths(self) -> list[Path]:
        return [self.root / name for name in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[EncodedImage]:
        return (self.load(name) for name in self.files)

    def keys(self) -> Iterator[str]:
        return iter(self.files)

    def load(self, key: str) -> EncodedImage:
        """A listed file's bytes; one that changed since the listing is a bad input, never a failed cell."""
        try:
            return EncodedImage(key, read_listed(self.root, key))
        except OSError as err:
            return EncodedImage(key, unreadable(f"cannot be read: {_why(err)}"))

    def portable(self, keys: Iterable[str] | None = None) -> FolderSource:
        """This source as workers on any node need it: an absolute root, the listing (only `keys` of it, for
        a batch that reads those), without the skipped list."""
        files = self.files if keys is None else tuple(keys)
        # not resolved: symlinks keep names
        return FolderSource(Path(os.path.abspath(self.root)), None, (files, ()))

    def describe(self) -> dict:
        return {"kind": self.kind, "root": str(self.root), "count": len(self),
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped]}


MAX_FILE_BYTES = 256 * 2**20  # PIL's pixel limit (MAX_IMAGE_PIXELS) as raw 8-bit RGB: a larger file is not read


def read_listed(root: Path, relative: str) -> bytes:
    """The bytes of a listed file if it still is what the listing let through: a regular file of at most
    MAX_FILE_BYTES, reached without a symlink (a listed link to a file inside the folder: its target, checked
    again). OSError otherwise: gone, swapped for a FIFO or a link, grown."""
    inside = os.path.realpath(root)
    if os.path.islink(root / relative):
        target = os.path.realpath(root / relative)
        if os.path.commonpath([inside, target]) != inside:
            raise OSError(errno.EXDEV, "now a symlink leading outside the folder")
        relative = os.path.relpath(target, inside)
    return _read_regular(_open_below(inside, relative))


def _read_regular(fd: int) -> bytes:
    """What an open descriptor holds if it is a regular file of at most MAX_FILE_BYTES (closed after)."""
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file")
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_FILE_BYTES} bytes")
    return data


def _open_below(root: str, relative: str) -> int:
    """A descriptor of `relative` under `root`, opened a component at a time with O_NOFOLLOW (a folder or
    file swapped for a symlink fails: ELOOP) and O_NONBLOCK (a FIFO opens at once, and fstat refuses it)."""
    *folders, name = Path(relative).parts
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for folder in folders:
            below = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = below
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def _why(err: OSError) -> str:
    if err.errno in (errno.ELOOP, errno.ENOTDIR):
        return "now a symlink, not the file that was listed"
    if err.errno == errno.ENOENT:
        return "gone since the folder was listed"
    return err.strerror or str(err)


# A file a folder source could not read still travels as an input's bytes (through Arrow tables and other
# processes, where only an id and bytes go), so it is marked in band and decode reports it as the reason.
_UNREADABLE = b"\x00segbench: unreadable input\x00"
REASON_BYTES = 300  # a reason is a phrase: a file that only looks marked is not read as a long "reason"


def unreadable(reason: str) -> bytes:
    return _UNREADABLE + reason.encode()[:REASON_BYTES]


def unreadable_reason(data: bytes) -> str | None:
    """The reason `unreadable` put in, or None for the bytes of a file that was read (a file of its own that
    starts like the mark is longer than any reason, and is decoded as what it is: not an image)."""
    if not data.startswith(_UNREADABLE) or len(data) > len(_UNREADABLE) + REASON_BYTES:
        return None
    return data[len(_UNREADABLE):].decode(errors="replace")


@dataclass(frozen=True)
class HFDatasetSource:
    name: str
    split: str = "validation"
    count: int | None = None
    data_dir: str | None = None  # for builders that read local files, such as `imagefolder`
    image_column: str = "image"

    kind = "hf"

    def _dataset(self):
        return _hf_dataset(self.name, self.split, self.data_dir, self.image_column, self.count)

    def keys(self) -> Iterator[int]:
        return iter(range(len(self)))

    def load(self, key: int) -> EncodedImage:
        return self._encoded(key, self._dataset()[key])

    def _encoded(self, index: int, row: dict) -> EncodedImage:
        return EncodedImage(f"{self.name}-{self.split}-{index:06d}", hf_image_bytes(row[self.image_column]))

    def __len__(self) -> int:
        return len(self._dataset())

    def __iter__(self) -> Iterator[EncodedImage]:
        for i, row in enumerate(self._dataset()):
            yield self._encoded(i, row)

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name, "split": self.split, "count": self.count}

    def streaming(self):
        """The dataset as a `datasets.IterableDataset` read lazily where it is iterated (Ray Data's
        Hugging Face datasource in the cluster): image column encoded, plus the id each row is named by."""
        datasets = _datasets_module()
        try:
            ds = datasets.load_dataset(self.name, split=self.split, data_dir=self.data_dir, streaming=True)
        except Exception as err:
            raise _unavailable(self.name, self.split, err) from None
        ds = ds.cast_column(self.image_column, datasets.Image(decode=False))
        if self.count is not None:
            ds = ds.take(self.count)
        prefix = f"{self.name}-{self.split}"
        return ds.map(lambda _, i: {"segbench_id": f"{prefix}-{i:06d}"}, with_indices=True)


def hf_image_bytes(cell: dict) -> bytes:
    """An undecoded `datasets.Image` cell's bytes, or the file a local builder (imagefolder) points at: read
    only if it is a regular file within MAX_FILE_BYTES (a FIFO would block the reader), else the reason."""
    if cell.get("bytes"):
        return cell["bytes"]
    try:  # links are followed: the Hub's cache and local datasets are made of them
        return _read_regular(os.open(cell["path"], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError as err:
        return unreadable(f"cannot be read: {_why(err)}")


@functools.lru_cache(maxsize=4)  # a worker reading its keys one by one opens the dataset once
def _hf_dataset(name: str, split: str, data_dir: str | None, image_column: str, count: int | None):
    """The dataset with its image column left encoded (bytes or a path), cut to `count` rows."""
    datasets = _datasets_module()
    try:
        ds = datasets.load_dataset(name, split=split, data_dir=data_dir)
    except Exception as err:
        raise _unavailable(name, split, err) from None
    # Keep the encoded bytes: decoding belongs to the measured work, not to the loader.
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    return ds if count is None else ds.select(range(min(count, len(ds))))


def _datasets_module():
    try:
        import datasets
    except ImportError:
        raise SourceUnavailable("the `datasets` package is missing: pip install 'segbench[datasets]'") from None
    return datasets


def _unavailable(name: str, split: str, err: Exception) -> SourceUnavailable:
    """Offline hub, unknown name, missing cache: all end the same way, in one line."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return SourceUnavailable(f"cannot load dataset {name!r} split {split!r}: {first}")


ImageSource = SyntheticSource | FolderSource | HFDatasetSource


def open_source(text: str, count: int | None, seed: int = 0, scale: float = 1.0) -> ImageSource:
    """Parse `synthetic`, `folder:PATH`, a bare existing path, or `hf:NAME[:SPLIT[:DATA_DIR]]`."""
    if text == "synthetic":
        if count is None:
            raise SourceUnavailable("the synthetic source needs an image count (--images N)")
        return SyntheticSource(count, seed, scale)
    if text.startswith("hf:"):
        name, _, rest = text[3:].partition(":")
        split, _, data_dir = rest.partition(":")
        return HFDatasetSource(name, split or "validation", count, data_dir or None)
    return FolderSource.open(Path(text.removeprefix("folder:")), count)


@dataclass(frozen=True)
class KeyBatch:
    """A batch named by its keys, read by the worker that runs it (`--input cluster`)."""

    source: ImageSource
    keys: tuple
    pass_number: int | None = None  # a cycled source's pass: ids are named by pass_id

    def __len__(self) -> int:
        return len(self.keys)

    def load(self) -> list[EncodedImage]:
        images = [self.source.load(key) for key in self.keys]
        if self.pass_number is None:
            return images
        return [EncodedImage(pass_id(i.image_id, self.pass_number), i.data) for i in images]


def key_batches(source: ImageSource, batch_size: int, pass_number: int | None = None) -> Iterator[KeyBatch]:
    """The source in batches of keys: what the driver sends when workers read. A folder batch carries only
    its own part of the listing, not the whole of it."""
    if isinstance(source, FolderSource):
        return (KeyBatch(source.portable(keys), tuple(keys), pass_number)
                for keys in batched(source.keys(), batch_size))
    return (KeyBatch(source, tuple(keys), pass_number) for keys in batched(source.keys(), batch_size))


PASS_MARK = "#"


def pass_id(image_id: str, number: int) -> str:
    """A cycled input's id: the source's id and its pass (every pass, the first included, so a file whose
    own name ends in `#1` never collides with another image's second pass)."""
    return f"{image_id}{PASS_MARK}{number}"


def split_pass(image_id: str) -> tuple[str, int | None]:
    """(the source's id, the pass) of a cycled input's id; (id, None) for an id that is not cycled."""
    base, mark, number = image_id.rpartition(PASS_MARK)
    return (base, int(number)) if mark and number.isdigit() else (image_id, None)


def batched(images: Iterator, batch_size: int) -> Iterator[list]:
    iterator = iter(images)
    while batch := list(itertools.islice(iterator, batch_size)):
        yield batch


def _listing(root: Path) -> tuple[list[str], list[SkippedFile]]:
    """(files to read, relative and sorted; what is deliberately not read, with why). See the module doc."""
    inside = os.path.realpath(root)
    files, skipped = [], []
    for folder, subfolders, names in os.walk(root, followlinks=False):
        here = Path(folder)
        for name in list(subfolders):
            path = here / name
            if name.startswith(".") or path.is_symlink():
                subfolders.remove(name)  # not descended into
                why = "hidden folder (name starts with '.'): not read" if name.startswith(".") else \
                    "symlinked folder: not followed"
                skipped.append(SkippedFile(str(path.relative_to(root)), why))
        for name in names:
            path = here / name
            why = None
            if name.startswith("."):
                why = "hidden file (name starts with '.')"
            elif path.is_symlink():
                target = os.path.realpath(path)
                if not os.path.exists(target):
                    why = "broken symlink"
                elif os.path.commonpath([inside, target]) != inside:
                    why = "symlink to a file outside the folder: not followed"
            if why is None:
                try:
                    if not stat.S_ISREG(os.stat(path).st_mode):
                        why = "not a regular file"
                    elif not os.access(path, os.R_OK):
                        why = "not readable (permissions)"
                except OSError as err:  # gone or unreadable between the listing and the look
                    why = f"cannot be read: {err.strerror}"
            relative = str(path.relative_to(root))
            if why:
                skipped.append(SkippedFile(relative, why))
            else:
                files.append(relative)
    # Sorted by path components, as Path sorts: 'a/b' before 'a-c', the order earlier versions read in.
    return sorted(files, key=lambda f: Path(f).parts), sorted(skipped, key=lambda s: Path(s.path).parts)


def synthetic_size(index: int, seed: int, scale: float = 1.0) -> tuple[int, int]:
    rng = np.random.default_rng([seed, index, 1])
    w, h = ADE_SIZES[rng.choice(len(ADE_SIZES), p=ADE_SIZE_WEIGHTS)]
    return max(1, round(w * scale)), max(1, round(h * scale))


def synthetic_jpeg(index: int, seed: int = 0, scale: float = 1.0, quality: int = 88) -> bytes:
    """A deterministic outdoor-scene-like photo: sky, horizon, buildings, foliage, textured ground.

    Smooth regions with edges and mild sensor noise, so JPEG sizes land in the 30–120 KB range of real
    ADE20K photos (a flat or white-noise image would be far smaller or larger and skew decode costs).
    """
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng([seed, index, 2])
    w, h = synthetic_size(index, seed, scale)
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(0.35, 0.6)
    sky_top, sky_low = rng.uniform(60, 200, 3), rng.uniform(150, 250, 3)
    ground_a, ground_b = rng.uniform(40, 140, 3), rng.uniform(60, 180, 3)
    t_sky = np.clip(yy / horizon, 0, 1)
    t_ground = np.clip((yy - horizon) / (1 - horizon), 0, 1)
    canvas = np.where(yy < horizon, sky_top + (sky_low - sky_top) * t_sky, ground_a + (ground_b - ground_a) * t_ground)
    canvas = np.broadcast_to(canvas, (h, w, 3)).copy()
    # Low-frequency texture: a small random field upsampled smoothly.
    small = rng.uniform(-40, 40, (max(2, h // 24), max(2, w // 24), 3)).astype(np.float32)
    texture = np.asarray(Image.fromarray(((small + 40) * 3.1875).astype(np.uint8)).resize((w, h), Image.BICUBIC),
                         dtype=np.float32) / 3.1875 - 40
    canvas += texture
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    base = int(horizon * h)
    for _ in range(rng.integers(2, 7)):  # buildings with windows
        bw, bh = int(rng.uniform(0.08, 0.25) * w), int(rng.uniform(0.15, 0.5) * h)
        x0 = int(rng.uniform(0, w - 1))
        color = tuple(int(c) for c in rng.uniform(50, 220, 3))
        draw.rectangle([x0, base - bh, x0 + bw, base], fill=color)
        step = max(3, bw // 6)
        for wx in range(x0 + step // 2, x0 + bw - step // 2, step):
            for wy in range(base - bh + step // 2, base - step // 2, step):
                draw.rectangle([wx, wy, wx + step // 3, wy + step // 3], fill=(30, 40, 60))
    for _ in range(rng.integers(2, 8)):  # trees and bushes
        cx, cy = rng.uniform(0, w), rng.uniform(horizon * h * 0.8, h)
        r = rng.uniform(0.03, 0.12) * max(w, h)
        green = (int(rng.uniform(20, 80)), int(rng.uniform(80, 160)), int(rng.uniform(20, 70)))
        draw.ellipse([cx - r, cy - r * 1.3, cx + r, cy + r * 0.7], fill=green)
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 3, (h, w, 3)).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=quality)
    return out.getvalue()
