"""Hostile image folders: formats PIL should never be offered, and files that change between the listing
and the read (vanished, swapped for a FIFO or a symlink, grown). Each is a bad input with its reason."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bench.workload import images
from bench.workload.predictor import DecodeError, decode, prepare

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
       b"newpath 0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n")


def test_an_eps_file_is_a_bad_input_and_never_reaches_ghostscript(monkeypatch):
    from PIL import EpsImagePlugin

    calls = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a) or None)
    (result,) = prepare([images.EncodedImage("figure.eps", EPS)], 64).results
    assert not result.ok and "not an image in a supported format" in result.error
    assert calls == []


def _folder(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(images.synthetic_jpeg(i, scale=0.05))
    return root


def _reasons(source: images.FolderSource) -> dict[str, str | None]:
    """id → why it is a bad input (None: it decodes)."""
    out = {}
    for item in source:
        try:
            decode(item.data)
            out[item.image_id] = None
        except DecodeError as err:
            out[item.image_id] = str(err)
    return out


def test_a_file_swapped_for_a_fifo_after_the_listing_is_a_bad_input_not_a_hang(tmp_path):
    root = _folder(tmp_path / "in", ["a.jpg", "b.jpg"])
    source = images.FolderSource.open(root)
    (root / "b.jpg").unlink()
    os.mkfifo(root / "b.jpg")
    found = {}
    reader = threading.Thread(target=lambda: found.update(_reasons(source)), daemon=True)
    reader.start()
    reader.join(timeout=30)  # milliseconds of work: only a reader blocked on the FIFO is still here
    if reader.is_alive():
        with open(root / "b.jpg", "wb"):  # a writer that closes at once: the blocked reader sees EOF
            pass
    assert not reader.is_alive(), "the reader blocked on a FIFO"
    assert found["a.jpg"] is None and "cannot be read: no longer a regular file" in found["b.jpg"]


def test_a_file_swapped_for_a_symlink_leaving_the_folder_is_not_read(tmp_path):
    root = _folder(tmp_path / "in", ["a.jpg", "sub/b.jpg", "link.jpg"])
    (root / "link.jpg").unlink()
    (root / "link.jpg").symlink_to("a.jpg")  # inside the folder: read under its own name
    outside = _folder(tmp_path / "outside", ["a.jpg", "b.jpg", "secret.jpg"])
    source = images.FolderSource.open(root)
    assert list(source.keys()) == ["a.jpg", "link.jpg", "sub/b.jpg"]
    (root / "a.jpg").unlink()
    (root / "a.jpg").symlink_to(outside / "secret.jpg")  # the file itself
    (root / "sub").rename(tmp_path / "old-sub")
    (root / "sub").symlink_to(outside)  # a folder above the file
    data = {item.image_id: item.data for item in source}
    secrets = {p.read_bytes() for p in outside.iterdir()}
    assert not secrets & set(data.values())
    reasons = _reasons(source)
    assert "now a symlink" in reasons["a.jpg"] and "now a symlink" in reasons["sub/b.jpg"]
    assert "leading outside the folder" in reasons["link.jpg"]  # its target is the outside link now


def test_a_vanished_file_is_a_bad_input_and_the_listing_is_taken_once(tmp_path):
    root = _folder(tmp_path / "in", ["a.jpg", "b.jpg", "c.jpg"])
    source = images.FolderSource.open(root)
    (root / "b.jpg").unlink()
    (root / "new.jpg").write_bytes(images.synthetic_jpeg(9, scale=0.05))
    assert len(source) == 3 and list(source.keys()) == ["a.jpg", "b.jpg", "c.jpg"]
    reasons = _reasons(source)
    assert list(reasons) == ["a.jpg", "b.jpg", "c.jpg"]
    assert reasons["b.jpg"] == "cannot be read: gone since the folder was listed"
    assert reasons["a.jpg"] is None and reasons["c.jpg"] is None


def test_a_file_over_the_size_cap_is_not_read(tmp_path, monkeypatch):
    root = _folder(tmp_path / "in", ["a.jpg"])
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    (item,) = images.FolderSource.open(root)
    assert images.unreadable_reason(item.data) == "cannot be read: larger than 100 bytes"


def test_a_batch_a_worker_reads_carries_only_its_keys(tmp_path):
    root = _folder(tmp_path / "in", ["a.jpg", "b.jpg", "c.jpg"])
    first, second = images.key_batches(images.FolderSource.open(root), 2)
    assert first.source.files == first.keys == ("a.jpg", "b.jpg") and second.source.files == ("c.jpg",)
    assert [i.data for i in second.load()] == [(root / "c.jpg").read_bytes()]


@pytest.mark.parametrize(("strategy", "options"), [("sequential", {}),
                                                   ("ray_data", {"input_mode": "cluster", "actors": 1})])
def test_a_cell_feeds_and_expects_the_one_listing(tmp_path, monkeypatch, request, strategy, options):
    """A file removed and one added after the listing (while the strategy starts): the cell ends ok, the
    removed one is a bad input with its reason, the added one is neither fed nor expected. Ray Data reading
    the folder in the cluster reads the runner's listing too, through the same checked reads."""
    import strategies
    from bench.config import RunSpec
    from bench.measure.runner import run_cell

    if strategy == "ray_data":
        request.getfixturevalue("ray_local")
    root = _folder(tmp_path / "in", [f"{i}.jpg" for i in range(4)])
    sequential = strategies.get(strategy)
    start = sequential.start

    def start_and_change_the_folder(self):
        (root / "2.jpg").unlink()
        (root / "9.jpg").write_bytes(images.synthetic_jpeg(9, scale=0.05))
        return start(self)

    monkeypatch.setattr(sequential, "start", start_and_change_the_folder)
    spec = RunSpec(strategy=strategy, model="tiny", batch_size=1, images=None, source=f"folder:{root}",
                   prefetch_mb=0.0, **options)
    record, _ = run_cell(spec, tmp_path, write=False)
    assert record.status == "ok", record.error
    assert record.counts.inputs_expected == 4 and record.counts.exactly_once
    assert record.counts.ok == 3 and record.bad_images == [
        {"id": "2.jpg", "reason": "cannot be read: gone since the folder was listed"}]


def test_a_file_that_starts_like_the_unreadable_mark_is_decoded_as_what_it_is(tmp_path):
    """Only segbench's own short mark carries a reason: a file forged to start like it is not an image."""
    forged = images.unreadable("x")[: -1] + b"y" * 100_000
    assert images.unreadable_reason(forged) is None
    assert images.unreadable_reason(images.unreadable("gone" * 1000)) == ("gone" * 1000)[: images.REASON_BYTES]
    with pytest.raises(DecodeError):
        decode(forged)


def test_a_dataset_row_pointing_at_a_fifo_or_a_huge_file_is_a_bad_input(tmp_path, monkeypatch):
    """An imagefolder dataset's rows name local paths: those are read as checked as a folder's files."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert "no longer a regular file" in images.unreadable_reason(images.hf_image_bytes({"path": str(fifo)}))
    big = tmp_path / "big.jpg"
    big.write_bytes(b"x" * 64)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 32)
    assert "larger than 32 bytes" in images.unreadable_reason(images.hf_image_bytes({"path": str(big)}))
    assert images.hf_image_bytes({"bytes": b"abc", "path": None}) == b"abc"
