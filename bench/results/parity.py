"""Parity: did a cell compute the segmentation maps it should have? Two entry points:

- `cells_against_reference`: across a sweep, from the records alone, every cell's maps against the
  reference cell's on the same inputs (a report's parity table).
- `runtime_against_eager`: inside a cell, after its window, the maps of a cell that runs another runtime
  or precision against fp32 eager torch's on the cell's first inputs (the record's `runtime_parity`: how
  close, measured; the floor a cell must reach to be ranked is applied where cells are ranked,
  bench.results.quality).

Across cells: records keep a digest and a class histogram per image (the outputs table), not the
maps. Equal digests mean equal maps. Where digests differ, the histograms bound the difference from
below: every pixel that changes class moves one count between two classes, so at least half the L1
distance of the two histograms differs.

Column-wise, for tables of a million rows: each side is projected to (hash of id, hash of digest,
forward size) of its readable images, 24 bytes an image, and the two are matched by sorted
intersection, one share of the hash range per pass (`PARTITION_ROWS` images at most); only the
images whose digests differ are read again, for their histograms (at most `BOUND_IMAGES` of them:
the worst bound is then the worst among those, still a lower bound). Two ids whose 64-bit hashes
collide (about n²/2⁶⁵ of a chance) would be paired wrongly.

The likely cause is named from what the records say about how each cell and each image ran: torch's
thread count, the device or the runtime changes the order of float reductions, and so does the size of
the forward pass that computed an image (the CPU kernels are chosen by the batch shape: the same image
in a forward of 2 and of 3 images gets logits a rounding apart). Either can flip an argmax where two
classes are nearly tied. Forward sizes differ with the batch size, at a partial batch, and where Ray
Data regroups rows between stages. A difference that none of these explains, or one larger than
rounding flips (`ROUNDING_PIXEL_SHARE` of an image's pixels, by the histogram bound), is an error:
that cell computed something else.

Inside a cell: the cell's first readable inputs go through fp32 eager and through the cell's runtime at
its precision, in this process, at the workers' torch thread count, and the two maps are compared pixel
by pixel (pooled agreement, the worst image, mean IoU). ONNX Runtime, OpenVINO and inductor reorder float
reductions and fuse operations, so logits differ by ~1e-7 and an argmax can flip where two classes are
tied that closely; bf16 and int8 round by design and flip more: bit-identical maps are not promised,
and the record says how close they came. An int8 cell's probe starts after its calibration images, so
its quality is not measured on the images it was tuned on. Whether the check speaks for what the workers produced is
recorded too: `cell_digests_matched` counts the images whose runtime map here has the digest the
cell's workers returned for them. The probe runs forwards of the cell's batch size from its first
inputs; an image the workers computed in a forward of another size (a batch with an unreadable input,
Ray Data regrouping rows) may round differently and not match, with nothing wrong.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import strategies
from bench.errors import SideFileError
from bench.results.record import RunRecord
from bench.results.sidefiles import hash_ids, partitions

if TYPE_CHECKING:  # the runtime probe runs models; reading records (a report) must not import torch
    from bench.workload.images import EncodedImage
    from bench.workload.predictor import PredictorSpec

BOUND_IMAGES = 10_000  # differing images whose histograms are read for the pixel bound
# Float-rounding flips measured here stay below 1e-4 of an image's pixels (near ties are rare even with
# random weights); a model, preprocessing or batch mix-up moves a large share. Past this share of one
# image no rounding cause explains the difference.
ROUNDING_PIXEL_SHARE = 1e-3
# Inside a cell, fp32 runtime rounding flips measured here stay below 1e-4 of the pixels (ONNX Runtime 0,
# OpenVINO 1.5e-5 on b0, random weights, whose logits are closer to ties than a trained model's); an
# export or runtime that computes something else disagrees on a large share (tens of per cent). 99.9%
# sits between, with room: the bound the cross-cell parity holds rounding causes to, and the default
# floor of an fp32 cell (bench.results.quality).
RUNTIME_THRESHOLD = 1 - ROUNDING_PIXEL_SHARE


def runtime(record: RunRecord) -> str:
    """What executed the model (records from before the runtime axis ran eager)."""
    return str(record.spec.get("runtime") or "eager")


def precision(record: RunRecord) -> str:
    """The precision a record ran at (records from before the precision axis ran fp32)."""
    return spec_precision(record.spec)


def spec_precision(spec: dict) -> str:
    value = spec.get("precision")
    return value if isinstance(value, str) and value else "fp32"


def reference_cells(records: list[RunRecord], named: str | None = None) -> dict[tuple[str, str, str], RunRecord]:
    """(model, runtime, precision) → its reference record: the named cell, else the reference strategy's at
    that model, runtime and precision (smallest cell id, lowest repeat first, so every cell of a model,
    runtime and precision is compared with the same one). How a runtime or precision compares with fp32
    eager is each cell's own probe (`runtime_against_eager`)."""
    ok = sorted((r for r in records if r.ok and _has_maps(r)), key=lambda r: (r.cell_id, r.repeat_index))
    if named:
        chosen = next((r for r in ok if r.cell_id == named), None)
        if chosen is None:
            raise ValueError(f"parity reference {named!r} is not a finished cell of these records")
        return {(str(r.spec.get("model")), runtime(r), precision(r)): chosen for r in ok}
    refs: dict[tuple[str, str, str], RunRecord] = {}
    for r in ok:
        if r.spec.get("strategy") == strategies.REFERENCE:
            refs.setdefault((str(r.spec.get("model")), runtime(r), precision(r)), r)
    return refs


def cells_against_reference(records: list[RunRecord], named: str | None = None) -> list[dict]:
    """One row per cell (its first ok repeat) against the reference of its model, runtime and precision; that
    reference itself, or a cell whose runtime and precision have none, against its model's fp32 eager
    reference."""
    refs = reference_cells(records, named)
    firsts: dict[str, RunRecord] = {}
    for r in sorted((r for r in records if r.ok and _has_maps(r)), key=lambda r: r.repeat_index):
        firsts.setdefault(r.cell_id, r)
    rows = []
    for cell_id, record in sorted(firsts.items()):
        model = str(record.spec.get("model"))
        ref = refs.get((model, runtime(record), precision(record)))
        if ref is None or ref.cell_id == cell_id:  # a runtime's own reference is compared with fp32 eager's
            ref = refs.get((model, "eager", "fp32"))
        if ref is None or ref.cell_id == cell_id:
            continue
        try:
            rows.append(compare_outputs(record, ref))
        except SideFileError as err:  # a table that is missing, altered or too large: this pair is not compared
            rows.append(not_compared(record, ref, str(err)))
    return rows


def not_compared(record: RunRecord, ref: RunRecord, why: str) -> dict:
    """The row of a cell whose maps could not be compared with its reference's, and why."""
    return {"cell_id": record.cell_id, "reference": ref.cell_id, "images": 0, "equal": 0, "equal_share": None,
            "differing": 0, "differing_forward_size": 0, "min_pixels_differing_share": None,
            "threads": (record.plan or {}).get("threads"), "reference_threads": (ref.plan or {}).get("threads"),
            "cause": f"not compared: {why}", "error": False}


def _has_maps(record: RunRecord) -> bool:
    """At least one readable image (the outputs table also holds the bad ones)."""
    counted = record.counts and record.counts.ok
    return counted > 0 if counted is not None else any(o.get("digest") for o in record.outputs or [])


# Each pass re-reads both tables and passes grow with the images, so the work grows with their square: a
# record claiming 10^8 images would hold a report for hours. Ten times the million-image cells it is built for.
MAX_PARITY_IMAGES = 10_000_000


def compare_outputs(record: RunRecord, ref: RunRecord) -> dict:
    images = max(record.row_count("outputs"), ref.row_count("outputs"))
    if images > MAX_PARITY_IMAGES:
        raise SideFileError(f"{images} images; parity compares at most {MAX_PARITY_IMAGES}")
    parts = partitions(images)
    images = unequal = other_shape = 0
    shape_example: tuple[int, int] | None = None
    bounded: list[np.ndarray] = [np.empty(0, np.uint64)]
    for part in range(parts):
        ids, digests, forwards = _projection(record, part, parts)
        ref_ids, ref_digests, ref_forwards = _projection(ref, part, parts)
        common, mine, theirs = np.intersect1d(ids, ref_ids, return_indices=True)
        differs = digests[mine] != ref_digests[theirs]
        differing = common[differs]
        shapes = forwards[mine][differs], ref_forwards[theirs][differs]
        reshaped = shapes[0] != shapes[1]
        if reshaped.any() and shape_example is None:
            shape_example = int(shapes[0][reshaped][0]), int(shapes[1][reshaped][0])
        images, unequal = images + int(common.size), unequal + int(differing.size)
        other_shape += int(reshaped.sum())
        bounded.append(differing[:max(0, BOUND_IMAGES - sum(map(len, bounded)))])
    worst = _worst_bound(record, ref, np.concatenate(bounded))
    threads, ref_threads = (record.plan or {}).get("threads"), (ref.plan or {}).get("threads")
    device, ref_device = record.spec.get("device"), ref.spec.get("device")
    causes = []
    if threads != ref_threads:
        causes.append(f"torch threads {threads} vs {ref_threads}")
    if device != ref_device:
        causes.append(f"device {device} vs {ref_device}")
    if runtime(record) != runtime(ref):
        causes.append(f"runtime {runtime(record)} vs {runtime(ref)}")
    shape = (f"{other_shape} computed in a forward of another size ({shape_example[0]} vs {shape_example[1]} "
             "images)") if shape_example else None
    if precision(record) != precision(ref):  # rounds by design, beyond float rounding: its quality probe judges it
        cause, unexplained = (f"precision {precision(record)} vs {precision(ref)}: rounds by design (judged by its "
                              "quality probe against its floor)" if unequal else None), 0
    else:
        cause, unexplained = _cause(unequal, worst, causes, shape, unequal - other_shape)
    return {"cell_id": record.cell_id, "reference": ref.cell_id, "images": images,
            "equal": images - unequal, "equal_share": (images - unequal) / images if images else None,
            "differing": unequal, "differing_forward_size": other_shape, "min_pixels_differing_share": worst,
            "threads": threads, "reference_threads": ref_threads, "cause": cause, "error": unexplained > 0}


def _cause(unequal: int, worst: float, cell_causes: list[str], shape: str | None,
           same_shape: int) -> tuple[str | None, int]:
    """(what explains the differing maps, how many no cause explains). A cause of the whole cell (threads,
    device, runtime) covers every image; a forward of another size only those it concerns; none covers
    more than rounding flips."""
    if not unequal:
        return None, 0
    if worst > ROUNDING_PIXEL_SHARE:
        return (f"unexplained: at least {worst:.2%} of one image's pixels differ, more than float rounding flips "
                f"({ROUNDING_PIXEL_SHARE:.1%})"), unequal
    unexplained = 0 if cell_causes else same_shape
    explained = [*cell_causes, *([shape] if shape else [])]
    parts = ["; ".join(explained) + ": float reduction order"] if explained else []
    if unexplained:
        parts.append(f"unexplained: {unexplained} differ with the same threads, device, runtime and forward size")
    return "; ".join(parts), unexplained


def _projection(record: RunRecord, part: int, parts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(id hashes, digest hashes, forward sizes) of the record's readable images whose id hash is in this
    pass's share. A record from before forward sizes were kept is taken to have run its batch size."""
    batch_size = record.spec.get("batch_size")  # data: anything but a count is no size
    unrecorded = batch_size if isinstance(batch_size, int) and not isinstance(batch_size, bool) else 0
    ids, digests, forwards = [np.empty(0, np.uint64)], [np.empty(0, np.uint64)], [np.empty(0, np.int64)]
    for batch in record.iter_table("outputs", ["id", "ok", "digest", "forward_images"]):
        readable = batch.filter(batch.column("ok"))
        hashes = hash_ids(readable.column("id"))
        mine = hashes % parts == part
        ids.append(hashes[mine])
        digests.append(hash_ids(readable.column("digest"))[mine])
        forward = pc.fill_null(readable.column("forward_images"), unrecorded).to_numpy(zero_copy_only=False)
        forwards.append(forward.astype(np.int64)[mine])
    return np.concatenate(ids), np.concatenate(digests), np.concatenate(forwards)


def _maps(record: RunRecord, wanted: np.ndarray) -> Iterator[tuple[int, dict]]:
    """(id hash, row) of the readable images whose id hash is wanted: a pass over the table's columns."""
    for batch in record.iter_table("outputs", ["id", "ok", "width", "height", "histogram"]):
        hashes = hash_ids(batch.column("id"))
        hit = np.isin(hashes, wanted) & batch.column("ok").to_numpy(zero_copy_only=False)
        if hit.any():
            yield from zip(hashes[hit].tolist(), batch.filter(pa.array(hit)).to_pylist(), strict=True)


def _worst_bound(record: RunRecord, ref: RunRecord, differing: np.ndarray) -> float:
    if not differing.size:
        return 0.0
    theirs = {h: dict(row["histogram"] or []) for h, row in _maps(ref, differing)}
    return max((_pixel_bound(dict(row["histogram"] or []), theirs[h], row["width"], row["height"])
                for h, row in _maps(record, differing) if h in theirs), default=0.0)


def _pixel_bound(ha: dict, hb: dict, width: int, height: int) -> float:
    """Lower bound on the share of pixels whose class differs, from the two class histograms."""
    l1 = sum(abs(float(ha.get(k, 0)) - float(hb.get(k, 0))) for k in set(ha) | set(hb))
    pixels = float(width or 0) * float(height or 0)
    return l1 / 2 / pixels if pixels else 0.0


def thread_groups(rows: list[dict]) -> dict[tuple, list[str]]:
    """(cell threads, reference threads) → cells: a line of explanation per group, not per cell."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for row in rows:
        groups[(row["threads"], row["reference_threads"])].append(row["cell_id"])
    return dict(groups)


def runtime_against_eager(spec: PredictorSpec, images: list[EncodedImage], cell_digests: dict[str, str],
                          calibration_images_skipped: int = 0) -> dict:
    """The cell's quality on `images`: its maps (its runtime, at its precision) against fp32 eager's, pixel by
    pixel. `cell_digests`: id → the digest the cell's workers returned; `calibration_images_skipped`: the
    calibration images the caller left out of `images` (an int8 cell is not judged on what it was tuned on)."""
    import torch

    from bench.workload.postprocess import upsample_argmax
    from bench.workload.predictor import Predictor, map_digest, prepare
    from bench.workload.runtimes import EAGER, FP32

    eager = Predictor(dataclasses.replace(spec, runtime=EAGER, precision=FP32, calibration=(), keep_masks=False),
                      worker="parity-eager")
    other = Predictor(dataclasses.replace(spec, keep_masks=False), worker=f"parity-{spec.runtime}-{spec.precision}")
    step = spec.batch_size or len(images) or 1
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    matched, max_diff = 0, 0.0
    for first in range(0, len(images), step):
        prepared = prepare(images[first:first + step], spec.native_size)
        if not prepared.slots:
            continue
        reference, candidate = eager.runtime.forward(prepared.pixels), other.runtime.forward(prepared.pixels)
        max_diff = max(max_diff, float((reference.float() - candidate.float()).abs().max()))
        for k, slot in enumerate(prepared.slots):
            image = prepared.results[slot]
            size = (image.height, image.width)
            with torch.inference_mode():
                a = upsample_argmax(reference[k], size, spec.postprocess).to(torch.uint8).cpu().numpy()
                b = upsample_argmax(candidate[k], size, spec.postprocess).to(torch.uint8).cpu().numpy()
            pairs.append((a, b))
            matched += cell_digests.get(image.image_id) == map_digest(b)
    return {"runtime": spec.runtime, "precision": spec.precision, **map_agreement(pairs),
            "max_logit_abs_diff": max_diff, "threads": spec.threads, "cell_digests_matched": matched,
            "calibration_images_skipped": calibration_images_skipped, "runtime_cold": other.runtime_cold}


def map_agreement(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict:
    """How far maps agree with their reference maps, over (reference, candidate) pairs of class-id arrays:
    images, pixels, agreeing_pixels, pixel_agreement (pooled), worst_image_agreement, and mean_iou, the mean
    over the classes present in either side of each class's IoU, its intersections and unions pooled over
    the images (so a class's IoU weighs its pixels, not its images). None where there was no image."""
    intersection = union = np.zeros(0, np.int64)
    images = pixels = agreeing = 0
    worst = 1.0
    for reference, candidate in pairs:
        a, b = np.asarray(reference).ravel(), np.asarray(candidate).ravel()
        same = a == b
        classes = int(max(a.max(initial=0), b.max(initial=0))) + 1
        both = np.bincount(a[same], minlength=classes)
        either = np.bincount(a, minlength=classes) + np.bincount(b, minlength=classes) - both
        size = max(classes, intersection.size)
        intersection = np.pad(intersection, (0, size - intersection.size)) + np.pad(both, (0, size - classes))
        union = np.pad(union, (0, size - union.size)) + np.pad(either, (0, size - classes))
        count = int(same.sum())
        images, pixels, agreeing = images + 1, pixels + a.size, agreeing + count
        worst = min(worst, count / a.size if a.size else 1.0)
    present = union > 0
    return {"images": images, "pixels": pixels, "agreeing_pixels": agreeing,
            "pixel_agreement": agreeing / pixels if pixels else None,
            "worst_image_agreement": worst if images else None,
            "mean_iou": float(np.mean(intersection[present] / union[present])) if present.any() else None}
