"""Which part of the score does the work? AUC of the static (SPA) and temporal (S3M) parts alone
and fused, for benchmark runs (the paper's Table 2, on our backends).

Each part is smoothed like the fused curve (Gaussian, the run's sigma_s at the preset's default_fps,
which is the frame rate of the benchmark presets' videos).
This reads test labels, so it is a diagnostic: nothing here chooses a setting.

    vlavad bench ../shared/data/ped2 --preset ped2 --out runs/ped2-s3m
    vlavad bench ../shared/data/ped2 --preset ped2 --predictor gru --out runs/ped2-gru
    python benchmarks/ablation.py ../shared/data/ped2 runs/ped2-s3m runs/ped2-gru
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy.ndimage import gaussian_filter1d

from vlavad.bench import fmt_auc
from vlavad.io.datasets import load_dataset
from vlavad.pipeline.settings import Settings
from vlavad.scorers.metrics import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders written by `vlavad bench`")
    args = parser.parse_args()
    labels = load_dataset(args.dataset).labels

    print("| run | predictor | static (SPA) micro / macro | temporal (S3M) micro / macro | fused micro / macro |")
    print("| --- | --- | --- | --- | --- |")
    for run in args.runs:
        results = json.loads((run / "results.json").read_text())
        settings = Settings.from_dict(results["settings"])  # also reads runs written by 0.1.0
        sigma_frames = settings.fusion.sigma_s * settings.default_fps
        scores = pd.read_csv(run / "scores.csv")
        cells = []
        for part in ("static", "temporal", "fused"):
            per_video = {}
            for video, rows in scores.groupby("video"):
                curve = rows[part].to_numpy()
                if part != "fused":  # the fused column is already smoothed
                    curve = gaussian_filter1d(curve, sigma_frames, mode="nearest")
                per_video[video] = (labels[video], curve)
            m = evaluate(per_video)
            cells.append(f"{fmt_auc(m.micro_auc)} / {fmt_auc(m.macro_auc)}")
        print(f"| {run.name} | {settings.temporal.predictor} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
