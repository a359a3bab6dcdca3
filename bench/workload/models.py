"""The SegFormer model zoo: exact ADE20K configurations, weights (random, hub, local folder), export.

`random` weights have the exact architecture of the nvidia checkpoints, so they cost the same compute;
they are the offline default because the Hugging Face Hub is unreachable on the build machines.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import WeightsUnavailable
from bench.workload import calibrated

if TYPE_CHECKING:  # torch/transformers are heavy; import them only where a model is built
    import torch

# Shared by every size of the ADE20K checkpoints (the config.json of nvidia/segformer-b0…b5-finetuned-ade-*).
_COMMON = {
    "num_attention_heads": [1, 2, 5, 8],
    "sr_ratios": [8, 4, 2, 1],
    "patch_sizes": [7, 3, 3, 3],
    "strides": [4, 2, 2, 2],
    "mlp_ratios": [4, 4, 4, 4],
    "layer_norm_eps": 1e-6,
}


@dataclass(frozen=True)
class ModelSize:
    """One SegFormer size: its architecture, its native input side and its hub checkpoint."""

    name: str
    hidden_sizes: tuple[int, ...]
    depths: tuple[int, ...]
    decoder_hidden_size: int
    native_size: int
    hub_id: str | None
    num_attention_heads: tuple[int, ...] = tuple(_COMMON["num_attention_heads"])

    def config_kwargs(self) -> dict:
        return {
            **_COMMON,
            "num_attention_heads": list(self.num_attention_heads),
            "hidden_sizes": list(self.hidden_sizes),
            "depths": list(self.depths),
            "decoder_hidden_size": self.decoder_hidden_size,
        }


SIZES: dict[str, ModelSize] = {
    s.name: s
    for s in (
        ModelSize("b0", (32, 64, 160, 256), (2, 2, 2, 2), 256, 512, "nvidia/segformer-b0-finetuned-ade-512-512"),
        ModelSize("b1", (64, 128, 320, 512), (2, 2, 2, 2), 256, 512, "nvidia/segformer-b1-finetuned-ade-512-512"),
        ModelSize("b2", (64, 128, 320, 512), (3, 4, 6, 3), 768, 512, "nvidia/segformer-b2-finetuned-ade-512-512"),
        ModelSize("b3", (64, 128, 320, 512), (3, 4, 18, 3), 768, 512, "nvidia/segformer-b3-finetuned-ade-512-512"),
        ModelSize("b4", (64, 128, 320, 512), (3, 8, 27, 3), 768, 512, "nvidia/segformer-b4-finetuned-ade-512-512"),
        ModelSize("b5", (64, 128, 320, 512), (3, 6, 40, 3), 768, 640, "nvidia/segformer-b5-finetuned-ade-640-640"),
        # For tests: the same code paths and 150 labels at a fraction of the cost.
        ModelSize("tiny", (8, 16, 32, 64), (1, 1, 1, 1), 32, 64, None, (1, 1, 2, 2)),
    )
}

def model_size(name: str) -> ModelSize:
    """A SegFormer size, or the calibrated stand-in (bench.workload.calibrated); ValueError otherwise."""
    if name in SIZES:
        return SIZES[name]
    if calibrated.parse(name):
        return ModelSize(name, (), (), 0, calibrated.NATIVE_SIZE, None)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(SIZES)} or calibrated:<N>ms[:spin]")


NUM_LABELS = 150
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_WEIGHTS = "random"
HUB_WEIGHTS = "hub"


@functools.cache
def ade20k_labels() -> tuple[str, ...]:
    """The 150 ADE20K (SceneParse150) class names; model label i is the CSV's index i+1."""
    text = resources.files("bench.workload").joinpath("ade20k_classes.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return tuple(row["Name"].split(";")[0] for row in sorted(rows, key=lambda r: int(r["Idx"])))


def id2label() -> dict[int, str]:
    return dict(enumerate(ade20k_labels()))


def weights_kind(weights: str) -> str:
    """`random`, `hub`, or `folder` (anything else is a local save_pretrained folder)."""
    return weights if weights in (RANDOM_WEIGHTS, HUB_WEIGHTS) else "folder"


def make_config(size: str):
    from transformers import SegformerConfig

    labels = id2label()
    return SegformerConfig(
        **SIZES[size].config_kwargs(),
        num_labels=NUM_LABELS,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )


def build_model(size: str, weights: str = RANDOM_WEIGHTS, seed: int = 0) -> torch.nn.Module:
    """Build a SegFormer in eval mode. Raises WeightsUnavailable with a one-line reason."""
    if calibrated.is_calibrated(size):
        return calibrated.build(size)
    import torch
    from transformers import SegformerForSemanticSegmentation

    model_size(size)
    kind = weights_kind(weights)
    if kind == RANDOM_WEIGHTS:
        # Seeded so every process (driver, task, actor) builds bit-identical weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SegformerForSemanticSegmentation(make_config(size))
    else:
        check_weights(size, weights)
        name = SIZES[size].hub_id if kind == HUB_WEIGHTS else weights
        model = _from_pretrained(name, f"{kind} checkpoint {name}")
    return model.eval()


def check_weights(size: str, weights: str) -> None:
    """Cheap check, in the driver, that the weights can be had — before any worker is started."""
    kind = weights_kind(weights)
    if calibrated.is_calibrated(size) and kind != RANDOM_WEIGHTS:
        raise WeightsUnavailable(f"{size} has no weights to load; use --weights random")
    if kind == HUB_WEIGHTS:
        hub_id = model_size(size).hub_id
        if hub_id is None:
            raise WeightsUnavailable(f"model {size!r} has no hub checkpoint; use --weights random")
        from transformers import SegformerConfig

        try:
            SegformerConfig.from_pretrained(hub_id)
        except OSError as err:
            raise WeightsUnavailable(f"cannot load hub checkpoint {hub_id} (offline?): {_first_line(err)}") from None
    elif kind == "folder" and not (Path(weights) / "config.json").is_file():
        raise WeightsUnavailable(f"{weights} is not a save_pretrained folder (no config.json)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _from_pretrained(name: str, what: str):
    from transformers import SegformerForSemanticSegmentation

    try:
        return SegformerForSemanticSegmentation.from_pretrained(name)
    except OSError as err:  # offline hub and unreadable folders both surface as OSError
        raise WeightsUnavailable(f"cannot load {what} (offline or missing?): {_first_line(err)}") from None


def export_model(size: str, folder: Path, weights: str = RANDOM_WEIGHTS, seed: int = 0) -> Path:
    """Write a model in save_pretrained layout, loadable later with `--weights FOLDER`."""
    model = build_model(size, weights, seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    return folder


def to_arrays(model) -> dict:
    """Weights as numpy arrays: what goes into Ray's object store, where numpy is read zero-copy.
    (A pickled transformers model does not survive the trip intact; plain arrays do.)"""
    if isinstance(getattr(model, "name", None), str) and calibrated.is_calibrated(model.name):
        return {"calibrated": model.name}
    return {"config": model.config.to_dict(), "state": {k: v.detach().cpu().numpy() for k, v in
                                                        model.state_dict().items()}}


def from_arrays(arrays: dict):
    """Rebuild a model from `to_arrays`: the skeleton on the meta device, then the weights assigned."""
    import warnings

    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    if "calibrated" in arrays:
        return calibrated.build(arrays["calibrated"])
    with torch.device("meta"):
        model = SegformerForSemanticSegmentation(SegformerConfig.from_dict(arrays["config"]))
    with warnings.catch_warnings():  # arrays from the object store are read-only; inference never writes
        warnings.simplefilter("ignore", UserWarning)
        state = {k: torch.from_numpy(v) for k, v in arrays["state"].items()}
    model.load_state_dict(state, assign=True)
    return model.eval()


def parameter_count(size: str) -> int:
    model = _meta_model(size)
    return sum(p.numel() for p in model.parameters())


def forward_gflops(size: str, side: int | None = None) -> float:
    """GFLOPs (2 × multiply-adds) of one forward pass at the native size, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    side = side or SIZES[size].native_size
    model = _meta_model(size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(pixel_values=torch.empty(1, 3, side, side, device="meta"))
    return counter.get_total_flops() / 1e9


def _meta_model(size: str):
    import torch
    from transformers import SegformerForSemanticSegmentation

    with torch.device("meta"):  # shapes only: no memory, no init cost
        return SegformerForSemanticSegmentation(make_config(size)).eval()


def reference_image_processor(side: int):
    """Transformers' own PIL/numpy SegFormer processor at `side`², the textbook path our predictor is checked
    against: `SegformerImageProcessorPil` from transformers 5.4, `SegformerImageProcessor` before (5.4
    made that name the torchvision one)."""
    try:
        from transformers.models.segformer.image_processing_pil_segformer import SegformerImageProcessorPil as cls
    except ImportError:
        from transformers.models.segformer.image_processing_segformer import SegformerImageProcessor as cls
    return cls(size={"height": side, "width": side}, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
