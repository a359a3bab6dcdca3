"""The fast exact postprocess must give the reference's maps exactly, ties included."""

from __future__ import annotations

import pytest
import torch

from bench.workload import kernels
from bench.workload.postprocess import (
    approx_argmax,
    exact_argmax,
    pixel_agreement,
    reference_argmax,
    source_axis,
)


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def path(request, monkeypatch):
    """Every exactness test runs on both implementations: numba kernels and plain torch ops."""
    if request.param == "compiled" and not kernels.available():
        pytest.skip("numba is not installed")
    if request.param == "torch":
        monkeypatch.setattr(kernels, "available", lambda: False)
    return request.param


SIZES = [(257, 343), (343, 257), (188, 250), (150, 200), (301, 399), (97, 131), (1, 1), (3, 350)]


def smooth_logits(seed: int, scale: float, h: int = 32, w: int = 40) -> torch.Tensor:
    """Spatially correlated logits, like a model's (regions, boundaries): the fast path's territory."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 150, h + 4, w + 4, generator=gen)
    return torch.nn.functional.avg_pool2d(noise, 5, 1)[0] * scale


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scale", [0.03, 30.0])
def test_exact_equals_reference_on_smooth_logits(size, scale):
    logits = smooth_logits(sum(size), scale)
    assert torch.equal(exact_argmax(logits, size), reference_argmax(logits, size))


@pytest.mark.parametrize("size", [(123, 301), (64, 64)])
def test_exact_equals_reference_on_noise_logits(size):
    """i.i.d. noise: the bound prunes little, the reference fallback must still be exact."""
    logits = torch.randn(150, 16, 24, generator=torch.Generator().manual_seed(5))
    assert torch.equal(exact_argmax(logits, size), reference_argmax(logits, size))


def test_exact_handles_exact_ties_like_argmax():
    """Duplicated channels tie everywhere: argmax keeps the lowest index, and so must we."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(150, 16, 16, generator=gen)
    logits[7] = logits[3]
    logits[100] = logits[3] + 0.0
    logits[3] += 5  # make the tied trio win most pixels
    logits[7] += 5
    logits[100] += 5
    ref = reference_argmax(logits, (200, 170))
    assert torch.equal(exact_argmax(logits, (200, 170)), ref)
    assert (ref == 3).any() and not (ref == 7).any() and not (ref == 100).any()


def test_exact_handles_near_ties():
    """Two classes within float rounding of each other over a whole region take the torch fallback."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(150, 24, 24, generator=gen) * 0.1
    logits[20] = logits.max(dim=0).values + 1.0
    logits[21] = torch.nextafter(logits[20], torch.full_like(logits[20], 10.0))  # one ulp above
    logits[22] = torch.nextafter(logits[20], torch.full_like(logits[20], -10.0))  # one ulp below
    for size in [(333, 257), (96, 96)]:
        assert torch.equal(exact_argmax(logits, size), reference_argmax(logits, size))


def test_quantised_logits_with_many_ties():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randint(0, 3, (150, 20, 30), generator=gen).float()
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


def test_approx_mode_reports_its_agreement():
    gen = torch.Generator().manual_seed(4)
    logits = torch.nn.functional.avg_pool2d(torch.randn(150, 36, 36, generator=gen)[None], 5, 1)[0]
    ref, approx = reference_argmax(logits, (400, 300)), approx_argmax(logits, (400, 300))
    agreement = pixel_agreement(ref, approx)
    assert 0.5 < agreement < 1.0  # close to, but not, the reference: that is why it is labelled
