"""ByteTrack alone: `vlavad.track.bytetrack` against the implementation it replaced (`trackers`).

Detects every frame of a dataset's test videos once (the preset's detector, weight-free by
default), then feeds the same detections to both trackers, alternated `--repeat` times in this
one process, and prints the time per frame of each, their ratio, and whether every frame's
confirmed tracks are the same (boxes and ids).

    python benchmarks/tracker_speed.py ../shared/data/ped2 --preset ped2

Needs `trackers` (a test requirement: `pip install -r requirements-dev.txt`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from vlavad.io.datasets import load_dataset
from vlavad.io.probe import probe
from vlavad.io.working_frames import WorkingFrames
from vlavad.pipeline.backends import make
from vlavad.pipeline.settings import preset
from vlavad.track.bytetrack import ByteTrack
from vlavad.track.tracking import _frames_lost

Detections = list[tuple[np.ndarray, np.ndarray]]  # per frame: boxes (N, 4), confidences (N,)


def detect_videos(dataset: str, preset_name: str) -> tuple[list[Detections], list[float], float]:
    """Every test video's detections per frame, each video's frame rate, the detector's activation."""
    settings = preset(preset_name)
    detector = make(settings, "detect")
    videos, rates = [], []
    for ref in load_dataset(dataset).test:
        info = probe(ref.path)
        source = WorkingFrames.at_height(info, settings.track.working_height, colour=detector.uses_colour)
        detector.begin(source.background(), fps=info.fps)
        frames = []
        for _, grey, colour in source.frames():
            found = detector.detect(colour, grey)
            confidences = found.confidence if found.confidence is not None else np.ones(len(found))
            frames.append((found.xyxy, confidences))
        videos.append(frames)
        rates.append(info.fps)
    return videos, rates, detector.track_activation


def run_ours(videos: list[Detections], rates: list[float], activation: float, lost_s: float) -> list[list[set]]:
    tracks = []
    for frames, fps in zip(videos, rates):
        tracker = ByteTrack(max_frames_lost=_frames_lost(lost_s, fps), activation_threshold=activation, high_confidence=activation + 0.05)
        per_frame = []
        for boxes, confidences in frames:
            indices, ids = tracker.update(boxes, confidences)
            per_frame.append(set(zip(map(tuple, boxes[indices].tolist()), ids.tolist())))
        tracks.append(per_frame)
    return tracks


def run_reference(videos: list[Detections], rates: list[float], activation: float, lost_s: float) -> list[list[set]]:
    tracks = []
    for frames, fps in zip(videos, rates):
        tracker = ByteTrackTracker(
            lost_track_buffer=max(1, int(round(lost_s * fps))),
            frame_rate=fps,
            track_activation_threshold=activation,
            high_conf_det_threshold=activation + 0.05,
            minimum_consecutive_frames=2,
        )
        per_frame = []
        for boxes, confidences in frames:
            found = sv.Detections(xyxy=boxes, confidence=confidences, class_id=np.full(len(boxes), -1)) if len(boxes) else sv.Detections.empty()
            tracked = tracker.update(found)
            keep = tracked.tracker_id >= 0
            per_frame.append(set(zip(map(tuple, tracked.xyxy[keep].tolist()), tracked.tracker_id[keep].tolist())))
        tracks.append(per_frame)
    return tracks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--preset", default="custom")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    videos, rates, activation = detect_videos(args.dataset, args.preset)
    lost_s = preset(args.preset).track.lost_track_s
    frames = sum(map(len, videos))
    boxes = sum(len(b) for v in videos for b, _ in v)
    seconds: dict[str, list[float]] = {"vlavad.track.bytetrack": [], "trackers.ByteTrackTracker": []}
    results = {}
    for _ in range(args.repeat):
        for name, run in (("vlavad.track.bytetrack", run_ours), ("trackers.ByteTrackTracker", run_reference)):
            started = time.perf_counter()
            results[name] = run(videos, rates, activation, lost_s)
            seconds[name].append(time.perf_counter() - started)

    ours, reference = results["vlavad.track.bytetrack"], results["trackers.ByteTrackTracker"]
    differing = sum(a != b for video_a, video_b in zip(ours, reference) for a, b in zip(video_a, video_b))
    print(f"{len(videos)} test videos, {frames} frames, {boxes / frames:.1f} detections a frame, median of {args.repeat} alternated runs\n")
    print("| tracker | ms a frame (median) | min–max | vs trackers |")
    print("| --- | ---: | ---: | ---: |")
    reference_median = statistics.median(seconds["trackers.ByteTrackTracker"])
    for name, runs in seconds.items():
        median = statistics.median(runs)
        print(
            f"| {name} | {median / frames * 1e3:.3f} | {min(runs) / frames * 1e3:.3f}–{max(runs) / frames * 1e3:.3f} | {median / reference_median:.2f}× |"
        )
    print(f"\nframes whose confirmed tracks (boxes and ids) differ: {differing} of {frames}")


if __name__ == "__main__":
    main()
