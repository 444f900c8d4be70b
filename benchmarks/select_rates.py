"""How often must the packaged tier's networks run? Chosen on a dataset's *training* videos alone.

NanoDet is the packaged tier's largest cost, so it runs at `detect.nanodet.rate_hz` and its boxes
are carried over the frames in between (`vlavad/detect/carried.py`). This script runs the real
detectors (`nanodet+blobs`, as the tier composes them) over the training videos once at every
frame, then replays each candidate rate from those same outputs, with the boxes held still or
carried at their velocity, through the real tracking pass, and compares the tracked boxes (what
the describers are shown) with those of NanoDet at every frame: a box counts as kept when one box
of the candidate has IoU >= 0.5 with it and the same class (or both of unknown kind). It reports recall, precision and F1 per
candidate, and the share of boxes "of unknown kind" (a blob the stale boxes did not explain),
which SPA would read as rare. No test video is read and no label is used.

The classifier's rate is chosen the same way: each track's crops are classified at every step, on
the original and on the re-encoded copy (the yardstick), and at each candidate rate the answers
carried between classifications are compared with every step's own. So is its precision: where
the run-time computes in bfloat16 (OpenVINO on CPUs with AMX), every step is classified again in
float32 (ONNX Runtime), and the share of equal answers is compared with the yardstick's.

The yardstick is the change a deployment makes anyway: the same videos re-encoded at H.264 CRF 28
(a phone's upload), detected at every frame. The lowest rate that changes the tracked boxes no
more than that re-encoding does (F1 at least the yardstick's) is marked.

    python benchmarks/select_rates.py ../shared/data/ped2
    python benchmarks/select_rates.py ../shared/data/ped2 --rates 10 5 3.3 2.5 2 --videos 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import supervision as sv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from transform_dataset import transform_clip  # noqa: E402

from vlavad.describe.appearance import AppearanceDescriber, _every  # noqa: E402
from vlavad.describe.steps import track_steps  # noqa: E402
from vlavad.detect.blobs import MotionBlobDetector  # noqa: E402
from vlavad.detect.composed import ComposedDetector  # noqa: E402
from vlavad.detect.nanodet import NanoDetDetector  # noqa: E402
from vlavad.io.datasets import load_dataset  # noqa: E402
from vlavad.io.probe import probe  # noqa: E402
from vlavad.io.working_frames import WorkingFrames  # noqa: E402
from vlavad.pipeline.settings import preset  # noqa: E402
from vlavad.track.tracking import track_video  # noqa: E402

IOU = 0.5


class Replay(NanoDetDetector):
    """NanoDet's outputs at every frame, replayed at a rate: the detector's own `detect`, with
    the network's pass replaced by the recorded one."""

    def __init__(self, settings, recorded: list[sv.Detections], carry: bool):
        super().__init__(settings)
        self.recorded, self.carry, self.index = recorded, carry, 0

    def detect_batch(self, frames_bgr):
        return [self.recorded[self.index]]

    def detect(self, frame_bgr, frame_gray):
        if self.carry:
            found = super().detect(frame_bgr, frame_gray)
        else:
            since_last = self._seen % self._every
            self._seen += 1
            if since_last == 0:
                self._last = self.detect_batch([frame_bgr])[0]
            found = self._last
        self.index += 1
        return found


def boxes_by_frame(table, frame_count: int) -> list[sv.Detections]:
    """A tracks table as each frame's boxes and class ids."""
    by_frame = dict(tuple(table.groupby("frame")))
    empty = sv.Detections.empty()
    return [
        sv.Detections(xyxy=rows[["x1", "y1", "x2", "y2"]].to_numpy(np.float32), class_id=rows["class_id"].to_numpy(int))
        if (rows := by_frame.get(i)) is not None
        else empty
        for i in range(frame_count)
    ]


def agreement(reference: sv.Detections, candidate: sv.Detections) -> int:
    """Boxes of `reference` that one box of `candidate` (greedily, each used once) overlaps by
    IoU >= 0.5 with the same class id (-1: of unknown kind)."""
    if len(reference) == 0 or len(candidate) == 0:
        return 0
    iou = sv.box_iou_batch(reference.xyxy, candidate.xyxy)
    iou = np.where(reference.class_id[:, None] == candidate.class_id[None, :], iou, 0.0)
    kept = 0
    for r in np.argsort(-iou.max(axis=1)):
        c = iou[r].argmax()
        if iou[r, c] >= IOU:
            kept += 1
            iou[:, c] = 0.0
    return kept


def row(detector: str, every_frames: float, between_runs: str, kept: int, total_ref: int, total_cand: int, unknown: int) -> dict:
    recall, precision = kept / max(total_ref, 1), kept / max(total_cand, 1)
    return {
        "detector": detector,
        "every_frames": round(every_frames, 2),
        "between_runs": between_runs,
        "recall": round(recall, 4),
        "precision": round(precision, 4),
        "f1": round(2 * recall * precision / max(recall + precision, 1e-9), 4),
        "unknown_share": round(unknown / max(total_cand, 1), 4),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--preset", default="ped2")
    parser.add_argument("--rates", type=float, nargs="+", default=[5.0, 3.3, 2.5, 2.0], help="detector rates (Hz) to compare")
    parser.add_argument("--videos", type=int, default=0, help="use only the first N training videos (default: all)")
    parser.add_argument("--input-sizes", type=int, nargs="*", default=[320], help="NanoDet input sizes to compare with the preset's")
    parser.add_argument("--crf", type=int, default=28, help="the yardstick's re-encoding quality (H.264 CRF)")
    parser.add_argument("--classifier-rates", type=float, nargs="*", default=[2.0, 1.0], help="crop classification rates (Hz) to compare")
    parser.add_argument("--classifier-sizes", type=int, nargs="*", default=[128, 112], help="classifier input sizes to compare with the preset's")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)

    settings = preset(args.preset)
    nanodet_settings = settings.detect.nanodet.model_copy(update={"rate_hz": 1000.0})
    blob_settings = settings.detect.blobs
    train = load_dataset(args.dataset).train
    train = train[: args.videos] if args.videos else train

    def every_frame(path: Path, input_size: int):
        """(the video's info, NanoDet's detections at every frame)."""
        network = NanoDetDetector(nanodet_settings.model_copy(update={"input_size": input_size}))
        info = probe(path)
        source = WorkingFrames.at_height(info, settings.track.working_height, colour=True)
        return info, [network.detect_batch([bgr])[0] for _, _, bgr in source.frames()]

    started = time.perf_counter()
    size = nanodet_settings.input_size
    recorded = [every_frame(ref.path, size) for ref in train]
    smaller = {other: [every_frame(ref.path, other) for ref in train] for other in args.input_sizes}
    work = tempfile.TemporaryDirectory(prefix="vlavad-rates-")  # the copies, removed at exit
    copies = []
    for ref in train:
        copy = Path(work.name) / f"{ref.name}.mp4"
        transform_clip(ref.path, copy, mirror=False, scale=1.0, fps=None, crf=args.crf)
        copies.append(every_frame(copy, size))
    print(f"NanoDet at every frame of {len(train)} training videos and their copies: {time.perf_counter() - started:.0f} s", file=sys.stderr)

    def track_table(info, detections, rate_hz, carry):
        """The tracking pass's table for NanoDet's recorded detections replayed at `rate_hz`."""
        nanodet = Replay(nanodet_settings.model_copy(update={"rate_hz": rate_hz}), detections, carry)
        return track_video(info, ComposedDetector(nanodet, MotionBlobDetector(blob_settings)), settings.track)

    def tracked(info, detections, rate_hz, carry) -> list[sv.Detections]:
        """What the tracking pass hands the describers: each frame's tracked boxes and classes."""
        return boxes_by_frame(track_table(info, detections, rate_hz, carry), info.frame_count)

    fps = recorded[0][0].fps
    reference_tables = [track_table(info, detections, fps, False) for info, detections in recorded]
    reference = [boxes_by_frame(table, info.frame_count) for table, (info, _) in zip(reference_tables, recorded)]

    def compared(name: str, candidate, rate_hz: float, carry: bool, between: str) -> dict:
        kept = total_ref = total_cand = unknown = 0
        for (info, detections), ref_frames in zip(candidate, reference):
            for ref, cand in zip(ref_frames, tracked(info, detections, rate_hz, carry)):
                kept += agreement(ref, cand)
                total_ref, total_cand = total_ref + len(ref), total_cand + len(cand)
                unknown += int((cand.class_id == -1).sum()) if len(cand) else 0
        return row(name, max(1.0, fps / rate_hz), between, kept, total_ref, total_cand, unknown)

    rows = [compared(f"{size} px, every frame, re-encoded at CRF {args.crf} (yardstick)", copies, fps, False, "-")]
    for rate in args.rates:
        for carry in (False, True):
            rows.append(compared(f"{size} px, {rate:g} Hz", recorded, rate, carry, "carried" if carry else "held"))
    for other, detections in smaller.items():
        for rate in (fps, *args.rates):
            rows.append(compared(f"{other} px, {rate:g} Hz", detections, rate, True, "carried" if rate < fps else "-"))
    yardstick = rows[0]
    print(f"Training videos of {args.dataset} ({len(train)}, {fps:g} fps); tracked boxes against NanoDet at every frame of the original.\n")
    print("| NanoDet runs | every | boxes between runs | recall | precision | F1 | of unknown kind | within the yardstick |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows[1:]:
        r["within"] = r["f1"] >= yardstick["f1"]
    for r in rows:
        mark = {True: "yes", False: "no"}.get(r.get("within"), "")
        print(
            f"| {r['detector']} | {r['every_frames']:g} frames | {r['between_runs']} | {r['recall']:.3f} | {r['precision']:.3f} | {r['f1']:.3f} | {r['unknown_share']:.1%} | {mark} |"
        )
    classifier_rows = []
    if args.classifier_rates or args.classifier_sizes:
        classifier_rows = classifier_agreement(settings, recorded, reference_tables, copies, args)
        print(
            f"\nEach track's appearance answer, against every step's own at {settings.describe.appearance.input_size} px "
            f"in {classifier_rows[0]['reference_runtime']} "
            f"(step_hz {settings.describe.step_hz:g}); between classifications a track keeps its answer.\n"
        )
        print("| crops classified | same answer as every step | within the yardstick |")
        print("| --- | ---: | --- |")
        yard = classifier_rows[0]["agreement"]
        for r in classifier_rows:
            mark = "" if r is classifier_rows[0] else ("yes" if r["agreement"] >= yard else "no")
            print(f"| {r['classified']} | {r['agreement']:.3f} | {mark} |")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "classifier_rows": classifier_rows, "videos": [ref.name for ref in train]}, indent=1))
    return 0


def at_rate(steps, answers: np.ndarray, every_steps: float) -> np.ndarray:
    """Each step's answer when each track is classified once every `every_steps` and keeps its
    answer in between (steps sorted by track, then frame)."""
    asked = _every(steps, max(1, int(round(every_steps))))
    return pd.Series(np.where(asked, answers, None)).ffill().to_numpy()  # each track's first step is asked


@contextmanager
def float32_runtime():
    """Networks run in ONNX Runtime, which computes in float32, while inside."""
    before = os.environ.get("VLAVAD_RUNTIME")
    os.environ["VLAVAD_RUNTIME"] = "onnxruntime"
    try:
        yield
    finally:
        if before is None:
            del os.environ["VLAVAD_RUNTIME"]
        else:
            os.environ["VLAVAD_RUNTIME"] = before


def classifier_agreement(settings, recorded, reference_tables, copies, args) -> list[dict]:
    """Per candidate (a rate, or an input size), the share of steps whose appearance answer equals
    the one classified at that very step at the preset's size; the first row is the yardstick:
    every step classified on the re-encoded copy."""
    appearance = settings.describe.appearance
    by_size = {size: AppearanceDescriber(appearance.model_copy(update={"input_size": size})) for size in args.classifier_sizes}
    describer = AppearanceDescriber(appearance)
    names = [f"every step, re-encoded at CRF {args.crf} (yardstick)", "every step, in float32 (ONNX Runtime)"]
    names += [f"{rate:g} Hz per track" for rate in args.classifier_rates]
    names += [f"{size} px, every step" for size in args.classifier_sizes]
    names += [f"{size} px, {appearance.rate_hz:g} Hz per track" for size in args.classifier_sizes]
    same = {name: 0 for name in names}
    total = 0
    for (info, _), tracks, (copy_info, _) in zip(recorded, reference_tables, copies):
        steps = track_steps(tracks, info.fps, settings.describe.step_hz).sort_values(["track_id", "frame"], kind="stable")
        if steps.empty:
            continue

        every_step = np.array(describer.describe_crops(info, steps)[0], dtype=object)
        candidates = [np.array(describer.describe_crops(copy_info, steps)[0], dtype=object)]
        with float32_runtime():
            candidates.append(np.array(AppearanceDescriber(appearance).describe_crops(info, steps)[0], dtype=object))
        candidates += [at_rate(steps, every_step, info.fps / rate) for rate in args.classifier_rates]
        sized = [np.array(by_size[size].describe_crops(info, steps)[0], dtype=object) for size in args.classifier_sizes]
        candidates += sized + [at_rate(steps, answers, info.fps / appearance.rate_hz) for answers in sized]
        for name, answers in zip(names, candidates):
            same[name] += int((answers == every_step).sum())
        total += len(steps)
    return [{"classified": name, "agreement": same[name] / max(total, 1), "reference_runtime": describer.runtime()} for name in names]


if __name__ == "__main__":
    raise SystemExit(main())
