"""Where does a benchmark lose its micro AUC? A diagnostic that reads test labels.

The micro AUC is the share of (normal frame, anomalous frame) pairs, over all test videos
together, in which the anomalous frame scores higher. This reads a `vlavad bench` run folder
(its scores.csv) and the dataset's frame labels and says which videos the misordered pairs come
from: on the normal side (normal frames that score too high) and on the anomalous side
(anomalous frames that score too low), each as a share of all pairs, so each side's shares add
up to 1 - micro AUC. It then lists the normal frames that outscore the most anomalous frames;
`vlavad score` on that video says what was seen there.

It reads test labels, so it chooses nothing: it says where to look.

    vlavad bench ../shared/data/ped2 --preset ped2 --backend packaged --out runs/ped2-packaged
    python benchmarks/misordered.py runs/ped2-packaged ../shared/data/ped2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.io.datasets import load_dataset  # noqa: E402


def misordered(scores: pd.DataFrame) -> pd.DataFrame:
    """Per frame of `scores` (columns video, frame, fused, label): how many frames of the other
    class it is misordered against (a tie counts as half, as in the AUC)."""
    normal, anomalous = scores["label"] == 0, scores["label"] == 1
    anomalous_sorted = np.sort(scores.loc[anomalous, "fused"].to_numpy())
    normal_sorted = np.sort(scores.loc[normal, "fused"].to_numpy())

    def against(values: np.ndarray, others: np.ndarray, higher: bool) -> np.ndarray:
        below, not_above = np.searchsorted(others, values, "left"), np.searchsorted(others, values, "right")
        ties = not_above - below
        return (below if higher else len(others) - not_above) + ties / 2

    count = np.zeros(len(scores))
    count[normal.to_numpy()] = against(scores.loc[normal, "fused"].to_numpy(), anomalous_sorted, higher=True)
    count[anomalous.to_numpy()] = against(scores.loc[anomalous, "fused"].to_numpy(), normal_sorted, higher=False)
    return scores.assign(misordered=count)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a `vlavad bench` run folder (with scores.csv)")
    parser.add_argument("dataset", type=Path, help="the dataset it was run on (for its frame labels)")
    parser.add_argument("--frames", type=int, default=10, help="how many of the worst normal frames to list")
    args = parser.parse_args(argv)
    labels = load_dataset(args.dataset).labels
    scores = pd.read_csv(args.run / "scores.csv")
    scores["label"] = [int(labels[video][frame]) for video, frame in zip(scores["video"], scores["frame"])]
    scores = misordered(scores)
    pairs = int((scores["label"] == 0).sum()) * int((scores["label"] == 1).sum())
    if not pairs:
        raise SystemExit("The test frames are all of one class: there is no AUC to take apart.")
    scores["share"] = scores["misordered"] / pairs
    lost = scores.loc[scores["label"] == 0, "share"].sum()
    print(f"{args.run}: micro AUC {1 - lost:.4f}; misordered pairs {lost:.4f} of all (each side below adds up to it)\n")
    print("| video | normal frames | their share of misordered pairs | anomalous frames | their share of misordered pairs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for video, part in scores.groupby("video", sort=True):
        normal, anomalous = part[part["label"] == 0], part[part["label"] == 1]
        print(f"| {video} | {len(normal)} | {normal['share'].sum():.4f} | {len(anomalous)} | {anomalous['share'].sum():.4f} |")
    worst = scores[scores["label"] == 0].nlargest(args.frames, "misordered")
    print(f"\nThe {len(worst)} normal frames that outscore the most anomalous frames:\n")
    print("| video | frame | fused score | anomalous frames scoring lower |")
    print("| --- | ---: | ---: | ---: |")
    for row in worst.itertuples():
        print(f"| {row.video} | {row.frame} | {row.fused:.2f} | {row.misordered:g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
