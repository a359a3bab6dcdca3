from __future__ import annotations

import pytest

from bench.workload import images
from tests.conftest import SKIPPED_FILES


def test_synthetic_is_deterministic_and_ade_like():
    a, b = list(images.SyntheticSource(6, seed=4)), list(images.SyntheticSource(6, seed=4))
    assert [x.data for x in a] == [y.data for y in b]
    assert a[0].data != images.SyntheticSource(1, seed=5).image(0).data
    sizes = {images.synthetic_size(i, 4) for i in range(200)}
    assert sizes <= set(images.ADE_SIZES) and len(sizes) >= 5
    for item in a:
        assert item.data[:2] == b"\xff\xd8"  # JPEG
    typical = [i for i in range(40) if images.synthetic_size(i, 0)[0] * images.synthetic_size(i, 0)[1] >= 400 * 300]
    kb = [len(images.synthetic_jpeg(i)) / 1000 for i in typical]
    assert min(kb) > 15 and max(kb) < 130 and 30 < sorted(kb)[len(kb) // 2] < 120  # ADE photos: ~30–120 KB


def test_synthetic_scale_shrinks():
    w, h = images.synthetic_size(0, 0, scale=0.1)
    assert w <= 103 and h <= 77


def test_folder_source_is_recursive_sorted_and_lists_skipped(mixed_folder):
    source = images.FolderSource.open(mixed_folder)
    ids = [item.image_id for item in source]
    assert ids == sorted(ids) and "sub/grey.png" in ids and "image.webp" in ids
    assert {"sub/no_extension", "UPPER.PNG", "README.txt", "link.jpg"} <= set(ids)  # by content, not by name
    assert {s.path: s.reason for s in source.skipped}.keys() == SKIPPED_FILES.keys()
    assert not any(i.startswith(".cache") for i in ids)  # a hidden folder is one skipped entry, not descended
    linked = next(item for item in source if item.image_id == "link.jpg")
    assert linked.data == (mixed_folder / "sub" / "no_extension").read_bytes()
    assert len(images.FolderSource.open(mixed_folder, count=3)) == 3


def test_a_fifo_in_a_folder_is_skipped_not_read(tmp_path):
    """Reading a FIFO blocks until a writer comes: the listing must never hand one to a reader."""
    import os

    (tmp_path / "a.jpg").write_bytes(images.synthetic_jpeg(0, scale=0.1))
    os.mkfifo(tmp_path / "pipe.jpg")
    source = images.FolderSource.open(tmp_path)
    assert [i.image_id for i in source] == ["a.jpg"]
    assert [(s.path, s.reason) for s in source.skipped] == [("pipe.jpg", "not a regular file")]


def test_a_decompression_bomb_is_refused_with_its_reason():
    from bench.workload.predictor import DecodeError, decode
    from tests.conftest import bomb_png

    with pytest.raises(DecodeError, match="decompression bomb"):
        decode(bomb_png())
    with pytest.raises(DecodeError, match="corrupt"):  # the same file at a plausible size: refused for its data
        decode(bomb_png(64, 64))


def test_missing_folder_is_one_clear_line(tmp_path):
    with pytest.raises(images.SourceUnavailable, match="does not exist"):
        images.open_source(str(tmp_path / "nope"), None)


def test_hf_dataset_unavailable_is_one_clear_line(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    # The libraries read the offline switches at import: set the constants too, or this test waits
    # for network timeouts (23 s here) before it gets the same one line.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    source = images.open_source("hf:scene_parse_150:validation", 4)
    with pytest.raises(images.SourceUnavailable) as err:
        list(source)
    assert "scene_parse_150" in str(err.value) and "\n" not in str(err.value)


def test_hf_imagefolder_source_reads_encoded_bytes(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(images.synthetic_jpeg(i, scale=0.1))
    got = list(images.HFDatasetSource("imagefolder", "train", data_dir=str(tmp_path)))
    assert [g.data for g in got] == [(tmp_path / f"{i}.jpg").read_bytes() for i in range(3)]
