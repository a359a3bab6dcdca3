"""The ONNX export cache trusts only what it wrote whole: an export is on the disk before its rename, and
a cached file is a hit only when its sha256 matches the one stored beside it (a file cut short by a
crash, or changed since, is exported again)."""

from __future__ import annotations

import os

import pytest

from bench.workload.runtimes import onnx_export


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """A fresh cache, with a stand-in exporter that counts its exports (the real one takes ~12 s)."""
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path))
    exports = []

    def fake_export(model, side, path):  # as the real one: written beside, then renamed into place
        exports.append(path)
        written = path.with_suffix(".tmp")
        written.write_bytes(b"onnx graph " * 100)
        os.replace(written, path)

    monkeypatch.setattr(onnx_export, "_export", fake_export)
    from bench.workload.models import build_model

    return build_model("tiny", seed=0), exports


def test_a_cached_export_cut_short_is_exported_again(cache):
    model, exports = cache
    path, cold = onnx_export.exported_onnx(model, 64)
    assert not cold["cache_hit"] and len(exports) == 1
    assert onnx_export.exported_onnx(model, 64)[1]["cache_hit"]  # whole: a hit
    path.write_bytes(path.read_bytes()[:100])  # as a crash before the data reached the disk leaves it
    again, cold = onnx_export.exported_onnx(model, 64)
    assert again == path and not cold["cache_hit"] and len(exports) == 2
    assert onnx_export.exported_onnx(model, 64)[1]["cache_hit"]


def test_a_cached_export_without_its_digest_is_not_trusted(cache):
    model, exports = cache
    path, _ = onnx_export.exported_onnx(model, 64)
    onnx_export._digest_path(path).unlink()  # an export from before digests, or one whose digest never landed
    assert not onnx_export.exported_onnx(model, 64)[1]["cache_hit"] and len(exports) == 2


@pytest.mark.timeout(30)
def test_a_fifo_in_place_of_the_export_is_not_opened(cache):
    model, exports = cache
    path, _ = onnx_export.exported_onnx(model, 64)
    path.unlink()
    os.mkfifo(path)  # opening it would block forever
    again, cold = onnx_export.exported_onnx(model, 64)
    assert not cold["cache_hit"] and again.is_file() and len(exports) == 2


def test_the_export_is_fsynced_before_its_rename(monkeypatch, tmp_path):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(onnx_export.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(onnx_export.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])

    class Exported:  # torch.onnx.export's part: write the file
        @staticmethod
        def export(module, args, path, **_):
            with open(path, "wb") as file:
                file.write(b"graph")

    import torch

    monkeypatch.setattr(torch, "onnx", Exported)
    monkeypatch.setattr(torch.export, "Dim", lambda *a, **k: None)
    target = tmp_path / "model.onnx"
    onnx_export._build_durably(target, lambda tmp: onnx_export._export(torch.nn.Identity(), 8, tmp))
    assert target.read_bytes() == b"graph" and events == ["fsync", "replace"]
