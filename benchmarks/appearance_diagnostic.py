"""Would a weight-free appearance cue add to the motion describer's speed answer?

Each tracked object's crop is described by a HOG descriptor (grey, resized to 32x64); its
appearance rarity is the mean distance to its K nearest neighbours among the normal training
objects, standardised with leave-one-video-out distances of the training objects themselves.
The script prints frame AUCs of the speed answer's rarity alone (the SPA static score), of
appearance rarity alone, and of their sum and maximum, each as the per-frame maximum over objects
smoothed like the pipeline's curve.

This reads test labels, so it is a diagnostic: nothing here chooses a setting.

    python benchmarks/appearance_diagnostic.py ../shared/data/ped2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.bench import fmt_auc  # noqa: E402
from vlavad.core.records import VideoInfo  # noqa: E402
from vlavad.io.datasets import load_dataset  # noqa: E402
from vlavad.io.decoder import iter_frames  # noqa: E402
from vlavad.pipeline.pipeline import Pipeline  # noqa: E402
from vlavad.pipeline.settings import preset  # noqa: E402
from vlavad.scorers.metrics import evaluate  # noqa: E402

HOG = cv2.HOGDescriptor((32, 64), (16, 16), (8, 8), (8, 8), 9)
K = 3
TRAIN_EVERY = 3  # training objects every 3rd frame: neighbours a frame apart add nothing


def hog_features(info: VideoInfo, boxes: pd.DataFrame) -> np.ndarray:
    """Unit-length HOG descriptor of each row's box (x1, y1, x2, y2 in source pixels)."""
    out = np.zeros((len(boxes), HOG.getDescriptorSize()), np.float32)
    rows_of_frame = boxes.reset_index(drop=True).groupby("frame").indices
    corners = boxes[["x1", "y1", "x2", "y2"]].to_numpy()
    for index, frame in iter_frames(info.path, fps_hint=info.fps):
        if index not in rows_of_frame:
            continue
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        for row in rows_of_frame[index]:
            x1, y1, x2, y2 = corners[row]
            x1, y1, x2, y2 = max(0, int(x1)), max(0, int(y1)), min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
            if x2 - x1 >= 4 and y2 - y1 >= 4:
                out[row] = HOG.compute(cv2.resize(gray[y1:y2, x1:x2], (32, 64), interpolation=cv2.INTER_AREA)).ravel()
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--preset", default="ped2")
    args = parser.parse_args()

    dataset = load_dataset(args.dataset)
    settings = preset(args.preset).updated(**{"temporal.epochs": 0})  # the static part only: no S3M to train
    pipeline = Pipeline(settings)
    model = pipeline.fit([ref.path for ref in dataset.train])

    features, video_of = [], []
    for number, ref in enumerate(dataset.train):
        info = pipeline.probe(ref.path)
        tracks, _ = pipeline.tracks(info)
        features.append(hog_features(info, tracks[tracks["frame"] % TRAIN_EVERY == 0].sort_values("frame")))
        video_of.append(np.full(len(features[-1]), number))
    train, video_of = np.concatenate(features), np.concatenate(video_of)
    held_out = np.zeros(len(train))
    for number in range(len(dataset.train)):
        mine = video_of == number
        distances, _ = NearestNeighbors(n_neighbors=K).fit(train[~mine]).kneighbors(train[mine])
        held_out[mine] = distances.mean(axis=1)
    mean, std = held_out.mean(), held_out.std()
    neighbours = NearestNeighbors(n_neighbors=K).fit(train)

    n = model.normaliser
    curves: dict[str, dict] = {"speed": {}, "appearance": {}, "sum": {}, "max": {}}
    for ref in dataset.test:
        result = pipeline.score(model, ref.path)
        objects = result.objects.dropna(subset=["static_score"]).sort_values("frame").reset_index(drop=True)
        distances, _ = neighbours.kneighbors(hog_features(result.info, objects))
        appearance = (distances.mean(axis=1) - mean) / std
        speed = (np.log(objects["static_score"].astype(float).to_numpy()) - n.static_mean) / n.static_std
        for name, values in (("speed", speed), ("appearance", appearance), ("sum", speed + appearance), ("max", np.maximum(speed, appearance))):
            per_frame = pd.Series(values).groupby(objects["frame"].to_numpy()).max()
            curve = np.full(result.info.frame_count, np.nan)
            curve[per_frame.index.to_numpy()] = per_frame.to_numpy()
            curve = np.where(np.isfinite(curve), curve, np.nanmedian(curve) if np.isfinite(curve).any() else 0.0)
            sigma = settings.fusion.sigma_s * result.info.fps
            curves[name][ref.name] = (dataset.labels[ref.name], gaussian_filter1d(curve, sigma, mode="nearest"))

    print(f"{dataset.name}: {len(train)} normal training objects (HOG 32x64, K={K}). Reads test labels: a diagnostic.\n")
    print("| object score | micro AUC | macro AUC |")
    print("| --- | --- | --- |")
    for name, per_video in curves.items():
        metrics = evaluate(per_video)
        print(f"| {name} | {fmt_auc(metrics.micro_auc)} | {fmt_auc(metrics.macro_auc)} |")


if __name__ == "__main__":
    main()
