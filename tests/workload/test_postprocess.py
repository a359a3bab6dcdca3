"""The fast exact postprocess must give the reference's maps exactly, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.workload import kernels, replay
from bench.workload.postprocess import (
    approx_argmax,
    exact_argmax,
    pixel_agreement,
    reference_argmax,
)
from bench.workload.replay import source_axis


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def path(request, monkeypatch):
    """Every exactness test runs on both implementations: numba kernels and plain torch ops."""
    if request.param == "compiled" and not kernels.available():
        pytest.skip("numba is not installed")
    if request.param == "torch":
        monkeypatch.setattr(kernels, "available", lambda: False)
    return request.param


@pytest.fixture(params=["contiguous", "channels_last"])
def layout(request):
    """The model's logits come channels-last on the CPU, and torch rounds differently in each layout:
    the reference is whatever torch does with the logits as given, so both layouts are checked."""
    return request.param


def in_layout(logits: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        return logits[None].contiguous(memory_format=torch.channels_last)[0]
    return logits.contiguous()


SIZES = [(257, 343), (343, 257), (188, 250), (150, 200), (301, 399), (97, 131), (1, 1), (3, 350)]


def smooth_logits(seed: int, scale: float, h: int = 32, w: int = 40) -> torch.Tensor:
    """Spatially correlated logits, like a model's (regions, boundaries): the fast path's territory."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 150, h + 4, w + 4, generator=gen)
    return torch.nn.functional.avg_pool2d(noise, 5, 1)[0] * scale


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scale", [0.03, 30.0])
def test_exact_equals_reference_on_smooth_logits(size, scale, layout):
    logits = in_layout(smooth_logits(sum(size), scale), layout)
    assert torch.equal(exact_argmax(logits, size), reference_argmax(logits, size))


@pytest.mark.parametrize("size", [(123, 301), (64, 64)])
def test_exact_equals_reference_on_noise_logits(size, layout):
    """i.i.d. noise: the bound prunes little, the reference fallback must still be exact."""
    logits = in_layout(torch.randn(150, 16, 24, generator=torch.Generator().manual_seed(5)), layout)
    assert torch.equal(exact_argmax(logits, size), reference_argmax(logits, size))


def test_exact_handles_exact_ties_like_argmax(layout):
    """Duplicated channels tie everywhere: argmax keeps the lowest index, and so must we."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(150, 16, 16, generator=gen)
    logits[7] = logits[3]
    logits[100] = logits[3] + 0.0
    logits[3] += 5  # make the tied trio win most pixels
    logits[7] += 5
    logits[100] += 5
    logits = in_layout(logits, layout)
    ref = reference_argmax(logits, (200, 170))
    assert torch.equal(exact_argmax(logits, (200, 170)), ref)
    assert (ref == 3).any() and not (ref == 7).any() and not (ref == 100).any()


def test_exact_handles_near_ties(layout):
    """Two classes within float rounding of each other over a whole region take the torch fallback."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(150, 24, 24, generator=gen) * 0.1
    logits[20] = logits.max(dim=0).values + 1.0
    logits[21] = torch.nextafter(logits[20], torch.full_like(logits[20], 10.0))  # one ulp above
    logits[22] = torch.nextafter(logits[20], torch.full_like(logits[20], -10.0))  # one ulp below
    logits = in_layout(logits, layout)
    for size in [(333, 257), (96, 96)]:
        assert torch.equal(exact_argmax(logits, size), reference_argmax(logits, size))


def test_quantised_logits_with_many_ties(layout):
    gen = torch.Generator().manual_seed(3)
    logits = in_layout(torch.randint(0, 3, (150, 20, 30), generator=gen).float(), layout)
    assert torch.equal(exact_argmax(logits, (311, 419)), reference_argmax(logits, (311, 419)))


@pytest.mark.parametrize("src", [16, 32, 128, 160])
def test_source_axis_matches_torch_indices_and_weights(src):
    """Our indices/weights reproduce torch's interpolation to float32 rounding for many output sizes."""
    gen = torch.Generator().manual_seed(src)
    line = torch.randn(1, 1, src, 1, generator=gen) * 10
    for dst in [*range(src + 1, src + 40), 256, 300, 364, 375, 512, 600, 683, 768, 1024, 4000, 6000]:
        ref = torch.nn.functional.interpolate(line, size=(dst, 1), mode="bilinear", align_corners=False)[0, 0, :, 0]
        first, second, w0, w1 = (torch.from_numpy(a) for a in source_axis(src, dst))
        ours = line[0, 0, first, 0] * w0 + line[0, 0, second, 0] * w1
        assert torch.allclose(ours, ref, rtol=0, atol=1e-5 * 10), (src, dst)


def test_near_ties_at_every_channel_position(layout):
    """Near-ties between a vector-lane class and a tail class (torch rounds those differently in
    channels-last), and between two tail classes, on smooth logits: ties land at many pixels."""
    base = smooth_logits(11, 3.0)
    for a, b in [(3, 148), (145, 149), (0, 1)]:
        logits = base.clone()
        logits[a] = base.max(dim=0).values + 0.5
        logits[b] = logits[a] * (1 + 2e-7) + base[7] * 1e-6
        logits = in_layout(logits, layout)
        for size in [(301, 257), (97, 683)]:
            assert torch.equal(exact_argmax(logits, size), reference_argmax(logits, size)), (a, b, size)


def test_replayed_arithmetic_is_torchs_bit_for_bit():
    """The replay found at start-up reproduces torch's channels-last interpolation exactly on sizes and
    values it was not chosen on, and the choice matters: a wrong formula per channel does not."""
    if kernels.numba is None:
        pytest.skip("numba is not installed")
    formulas = replay.formulas(150)
    if formulas is None:
        pytest.skip("torch's arithmetic on this CPU/build is none of the known formulas")
    logits = torch.randn(1, 150, 23, 19, generator=torch.Generator().manual_seed(9)) * 40
    logits = logits.contiguous(memory_format=torch.channels_last)
    size = (333, 257)
    want = torch.nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    want = want[0].permute(1, 2, 0).numpy()
    hwc = logits[0].permute(1, 2, 0).numpy()
    rows, cols = source_axis(23, size[0]), source_axis(19, size[1])
    assert np.array_equal(kernels.interpolate_replayed(hwc, rows, cols, formulas), want)
    wrong = (formulas + 1) % len(kernels.REPLAY_FORMULAS)
    assert not np.array_equal(kernels.interpolate_replayed(hwc, rows, cols, wrong.astype(np.int8)), want)


def test_approx_mode_reports_its_agreement():
    gen = torch.Generator().manual_seed(4)
    logits = torch.nn.functional.avg_pool2d(torch.randn(150, 36, 36, generator=gen)[None], 5, 1)[0]
    ref, approx = reference_argmax(logits, (400, 300)), approx_argmax(logits, (400, 300))
    agreement = pixel_agreement(ref, approx)
    assert 0.5 < agreement < 1.0  # close to, but not, the reference: that is why it is labelled
