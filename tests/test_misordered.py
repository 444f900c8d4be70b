"""benchmarks/misordered.py: where a micro AUC is lost adds up to what is lost."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import misordered  # noqa: E402


def test_each_side_of_the_misordered_pairs_adds_up_to_one_minus_the_auc():
    rng = np.random.default_rng(0)
    scores = pd.DataFrame(
        {
            "video": rng.choice(["a", "b", "c"], 300),
            "frame": np.arange(300),
            "fused": rng.integers(0, 20, 300).astype(float),  # many ties, which count as half
            "label": rng.integers(0, 2, 300),
        }
    )
    counted = misordered.misordered(scores)
    pairs = (scores["label"] == 0).sum() * (scores["label"] == 1).sum()
    lost = 1 - roc_auc_score(scores["label"], scores["fused"])
    for side in (0, 1):
        assert np.isclose(counted.loc[counted["label"] == side, "misordered"].sum() / pairs, lost)


def test_a_frame_counts_the_frames_of_the_other_class_it_is_misordered_against_a_tie_as_half():
    scores = pd.DataFrame({"video": "a", "frame": range(4), "fused": [9.0, 1.0, 3.0, 3.0], "label": [0, 1, 1, 0]})
    # normal 9 outscores both anomalous frames; normal 3 outscores 1 and ties 3; and the other way round
    assert misordered.misordered(scores)["misordered"].tolist() == [2, 2, 1.5, 1.5]
