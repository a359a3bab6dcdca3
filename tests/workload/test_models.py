from __future__ import annotations

import pytest
import torch

from bench.workload import models


def test_zoo_matches_the_ade_checkpoints():
    expected_params_m = {"b0": 3.8, "b1": 13.7, "b2": 27.5, "b3": 47.3, "b4": 64.1, "b5": 84.7}
    for size, params in expected_params_m.items():
        assert round(models.parameter_count(size) / 1e6, 1) == params
    assert models.SIZES["b5"].native_size == 640 and models.SIZES["b0"].native_size == 512
    assert models.SIZES["b2"].depths == (3, 4, 6, 3)


def test_labels_are_the_150_ade20k_classes():
    labels = models.ade20k_labels()
    assert len(labels) == 150 and labels[0] == "wall" and labels[2] == "sky"
    config = models.make_config("tiny")
    assert config.num_labels == 150 and config.id2label[0] == "wall"


def test_random_weights_are_deterministic_per_seed():
    a, b = models.build_model("tiny", seed=0), models.build_model("tiny", seed=0)
    c = models.build_model("tiny", seed=1)
    first = next(iter(a.state_dict()))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.state_dict()[first], c.state_dict()[first])


def test_export_then_load_from_folder(tmp_path):
    original = models.build_model("tiny", seed=3)
    models.export_model("tiny", tmp_path / "ckpt", seed=3)
    loaded = models.build_model("tiny", str(tmp_path / "ckpt"))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(original(pixel_values=x).logits, loaded(pixel_values=x).logits)


def test_hub_weights_offline_fail_with_one_line(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: env alone is late
    with pytest.raises(models.WeightsUnavailable) as err:
        models.build_model("b0", "hub")
    assert "nvidia/segformer-b0-finetuned-ade-512-512" in str(err.value) and "\n" not in str(err.value)


def test_missing_folder_weights_fail_clearly(tmp_path):
    with pytest.raises(models.WeightsUnavailable, match=r"no config\.json"):
        models.build_model("tiny", str(tmp_path))


def test_gflops_grow_with_size():
    flops = [models.forward_gflops(s) for s in ("b0", "b1", "b2")]
    assert 0 < flops[0] < flops[1] < flops[2]
