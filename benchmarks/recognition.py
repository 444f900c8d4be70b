"""What each pretrained recogniser adds: the weight-free tier, then one packaged model at a time, then
all of them, on a dataset with test labels. One table, one fresh `vlavad bench` process per row.

    python benchmarks/recognition.py ../shared/data/ped2 --work /tmp/recognition

Columns: micro and macro frame AUC at the preset's smoothing (Ped2: 0.6 s, the paper's 6 frames),
per-video AUC, scoring frames/s, fit seconds and peak memory of the row's process. A second table
gives micro AUC against the smoothing σ: **it reads test labels and is a diagnostic only**; the
shipped σ is the preset's. A third gives the detectors' recall of the anomalous objects drawn in
the dataset's pixel masks (Ped2's `test_pixel_masks_packed.npz`), when present.

Every row's prompt pool is the bundled one for its describers; the "kind" question (the detector's
class) is added when the detector has classes. SPA chooses from it without test labels.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

ROWS = {
    "weight-free (blobs, motion, hashing)": dict(detect="blobs", describe="motion", embed="hashing"),
    "+ appearance describer": dict(detect="blobs", describe="motion+appearance", embed="hashing"),
    "+ pretrained detector": dict(detect="nanodet+blobs", describe="motion", embed="hashing"),
    "+ sentence encoder": dict(detect="blobs", describe="motion", embed="minilm"),
    "all together (packaged tier)": dict(detect="nanodet+blobs", describe="motion+appearance", embed="minilm"),
    "all together, without the S3M": dict(detect="nanodet+blobs", describe="motion+appearance", embed="minilm", no_s3m=True),
}
SIGMAS = (0.3, 0.6, 1.0, 1.5)


def pool_for(row: dict, folder: Path) -> Path:
    from vlavad.describe.base import default_pool
    from vlavad.describe.prompts import Prompt, pool_to_json, validate_pool

    prompts = default_pool(row["describe"])
    if row["detect"] != "blobs" and not any(p.measures == "kind" for p in prompts):
        prompts = validate_pool([*prompts, Prompt("What kind of object is it?", "kind")])
    path = folder / f"pool-{row['detect']}-{row['describe']}.json".replace("+", "-")
    path.write_text(pool_to_json(prompts, note="benchmarks/recognition.py"))
    return path


def run_row(name: str, row: dict, dataset: Path, work: Path, preset: str) -> dict:
    slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    out = work / "runs" / slug
    if not (out / "results.json").exists():
        settings = [
            "--set",
            f"detect.backend={row['detect']}",
            "--set",
            f"describe.backend={row['describe']}",
            "--set",
            f"embed.backend={row['embed']}",
        ]
        if row.get("no_s3m"):
            settings += ["--set", "temporal.epochs=0", "--set", "fusion.lam=0"]
        command = [
            sys.executable,
            "-m",
            "vlavad",
            "bench",
            str(dataset),
            "--preset",
            preset,
            "--out",
            str(out),
            "--prompts",
            str(pool_for(row, work)),
            "--cache",
            str(work / "cache" / slug),
            "-q",
            *settings,
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{name}: {done.stderr.strip().splitlines()[-1]}")
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return json.loads((out / "results.json").read_text()) | {"folder": str(out)}


def sigma_table(result: dict, labels: dict, fps: float) -> dict[float, float]:
    """Micro AUC of the run's unsmoothed fused score (static + λ·temporal) smoothed at each σ."""
    from vlavad.scorers.metrics import evaluate

    scores = pd.read_csv(Path(result["folder"]) / "scores.csv")
    lam = result["settings"]["fusion"]["lam"]
    out = {}
    for sigma in SIGMAS:
        per_video = {}
        for video, rows in scores.groupby("video"):
            raw = rows["static"].to_numpy() + lam * rows["temporal"].to_numpy()
            per_video[video] = (labels[video], gaussian_filter1d(raw, sigma * fps, mode="nearest"))
        out[sigma] = evaluate(per_video).micro_auc
    return out


def recall(dataset: Path, detector: str, preset: str, min_pixels: int = 40) -> tuple[float, dict[str, float]]:
    """Share of the masks' anomalous objects (connected components) that a track's box covers by
    at least half, its box no more than 4x the object's: the protocol used to compare detectors."""
    import cv2

    from vlavad.io.datasets import load_dataset
    from vlavad.pipeline.pipeline import Pipeline
    from vlavad.pipeline.settings import preset as load_preset

    packed = np.load(dataset / "test_pixel_masks_packed.npz")
    settings = load_preset(preset).updated(**{"detect.backend": detector})
    pipeline = Pipeline(settings, cache_dir=None, show_progress=False)
    found = total = 0
    per_video = {}
    for ref in load_dataset(dataset).test:
        masks = np.unpackbits(packed[ref.name], axis=-1)[..., : pipeline.probe(ref.path).width].astype(bool)
        tracks, _ = pipeline.tracks(pipeline.probe(ref.path))
        boxes = {f: rows[["x1", "y1", "x2", "y2"]].to_numpy() for f, rows in tracks.groupby("frame")}
        hits = objects = 0
        for frame, mask in enumerate(masks):
            count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
            for c in range(1, count):
                if stats[c, cv2.CC_STAT_AREA] < min_pixels:
                    continue
                objects += 1
                area = stats[c, cv2.CC_STAT_WIDTH] * stats[c, cv2.CC_STAT_HEIGHT]
                pixels = components == c
                for x1, y1, x2, y2 in boxes.get(frame, []):
                    inside = pixels[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))].sum()
                    if inside >= 0.5 * stats[c, cv2.CC_STAT_AREA] and (x2 - x1) * (y2 - y1) <= 4 * area:
                        hits += 1
                        break
        per_video[ref.name] = hits / max(objects, 1)
        found, total = found + hits, total + objects
    return found / max(total, 1), per_video


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--work", type=Path, required=True, help="where the runs, caches and pools go (reruns reuse finished runs)")
    parser.add_argument("--preset", default="ped2")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    from vlavad.io.datasets import load_dataset

    labels = load_dataset(args.dataset).labels
    results = {name: run_row(name, row, args.dataset, args.work, args.preset) for name, row in ROWS.items()}

    videos = list(next(iter(results.values()))["metrics"]["per_video"])
    print("| backends | micro AUC | macro AUC | " + " | ".join(videos) + " | score frames/s | fit s | peak RSS MB | SPA selected |")
    print("| --- " * (len(videos) + 7) + "|")
    for name, result in results.items():
        m, t = result["metrics"], result["timings"]
        per = " | ".join("n/a" if m["per_video"][v] is None else f"{m['per_video'][v]:.3f}" for v in videos)
        print(
            f"| {name} | {m['micro_auc']:.3f} | {m['macro_auc']:.3f} | {per} | {t['score_fps']} | {t['fit_s']} | {t['peak_rss_mb']:.0f} | "
            + "; ".join(result["selected_questions"])
            + " |"
        )

    fps = json.loads((Path(next(iter(results.values()))["folder"]) / "results.json").read_text())["settings"]["default_fps"]
    print("\nDiagnostic (reads test labels): micro AUC against the final smoothing σ\n")
    print("| backends | " + " | ".join(f"σ {s:g} s" for s in SIGMAS) + " |\n| --- " * 1 + "| --- " * len(SIGMAS) + "|")
    for name in ("weight-free (blobs, motion, hashing)", "all together (packaged tier)"):
        row = sigma_table(results[name], labels, fps)
        print(f"| {name} | " + " | ".join(f"{row[s]:.3f}" for s in SIGMAS) + " |")

    if (args.dataset / "test_pixel_masks_packed.npz").exists():
        print("\nRecall of the anomalous objects in the pixel masks (a track's box covers at least half of one)\n")
        print("| detector | recall | per video |\n| --- | --- | --- |")
        for detector in ("blobs", "nanodet", "nanodet+blobs"):
            total, per_video = recall(args.dataset, detector, args.preset)
            print(f"| {detector} | {total:.3f} | " + ", ".join(f"{v} {r:.2f}" for v, r in per_video.items()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
