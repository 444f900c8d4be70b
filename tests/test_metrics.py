import json

import numpy as np
import pytest

from vlavad.core.errors import DatasetError
from vlavad.scorers.metrics import ROC_MAX_POINTS, evaluate, frame_auc


def test_frame_auc_hand_computed():
    # positives .35 and .8 against negatives .1 and .4: 3 of the 4 pairs are ordered right
    assert frame_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_frame_auc_one_class_is_none():
    assert frame_auc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert frame_auc([0, 0], [0.1, 0.2]) is None


def test_perfect_separation():
    m = evaluate({"v": (np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.7, 0.9]))})
    assert m.micro_auc == 1.0
    assert m.macro_auc == 1.0
    assert m.per_video == {"v": 1.0}


def test_micro_differs_from_macro():
    # Each video alone is perfectly ordered (AUC 1), but b's normal frame (.5) outscores a's
    # anomalous frame (.2). Pooled: negatives .1 .5, positives .2 .6 -> pairs (.2,.1) (.6,.1)
    # (.6,.5) right, (.2,.5) wrong -> micro 3/4.
    m = evaluate({"a": ([0, 1], [0.1, 0.2]), "b": ([0, 1], [0.5, 0.6])})
    assert m.macro_auc == pytest.approx(1.0)
    assert m.micro_auc == pytest.approx(0.75)
    assert m.macro_videos == 2
    assert m.macro_skipped == []


def test_single_class_videos_are_skipped_from_macro_only():
    m = evaluate(
        {
            "a": ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]),  # 0.75
            "all_anomalous": ([1, 1], [0.9, 0.05]),
            "all_normal": ([0, 0, 0], [0.2, 0.2, 0.2]),
        }
    )
    assert m.per_video == {"a": pytest.approx(0.75), "all_anomalous": None, "all_normal": None}
    assert m.macro_auc == pytest.approx(0.75)
    assert m.macro_videos == 1
    assert m.macro_skipped == ["all_anomalous", "all_normal"]
    # micro pools every frame. Positives .35 .8 .9 .05; negatives .1 .4 .2 .2 .2.
    # Negatives each positive beats: .35 -> 4, .8 -> 5, .9 -> 5, .05 -> 0; 14 of 20 pairs.
    assert m.micro_auc == pytest.approx(14 / 20)


def test_no_video_with_both_classes():
    m = evaluate({"a": ([1, 1], [0.1, 0.2])})
    assert m.micro_auc is None and m.macro_auc is None
    assert m.macro_videos == 0 and m.macro_skipped == ["a"]
    assert m.roc_fpr == [] and m.roc_tpr == []


def test_length_mismatch_names_video_and_lengths():
    with pytest.raises(DatasetError, match=r"Test003.*5.*4"):
        evaluate({"Test003": (np.zeros(5), np.zeros(4))})


def test_no_videos_raises():
    with pytest.raises(DatasetError):
        evaluate({})


def test_roc_is_thinned_but_keeps_its_shape():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 20_000)
    scores = labels * 0.5 + rng.random(20_000)  # overlapping classes: a long, ragged curve
    m = evaluate({"a": (labels[:10_000], scores[:10_000]), "b": (labels[10_000:], scores[10_000:])})
    fpr, tpr = np.array(m.roc_fpr), np.array(m.roc_tpr)
    assert 100 < len(fpr) <= ROC_MAX_POINTS
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # the thinned curve's area stays close to the exact AUC
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(m.micro_auc, abs=2e-3)


def test_small_roc_is_kept_whole():
    m = evaluate({"a": ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])})
    assert m.roc_fpr == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert m.roc_tpr == [0.0, 0.5, 0.5, 1.0, 1.0]


def test_to_dict_is_json_ready_and_rounded():
    m = evaluate({"a": ([0, 1, 0, 1, 1, 0], [0.1, 0.9, 0.35, 0.3, 0.8, 0.2]), "b": ([1], [0.5])})
    d = json.loads(json.dumps(m.to_dict()))
    auc_keys = {"micro_auc", "macro_auc", "macro_videos", "macro_skipped", "per_video"}
    assert set(d) == auc_keys | {"roc_fpr", "roc_tpr"}
    assert d["per_video"]["a"] == round(m.per_video["a"], 6)
    assert d["per_video"]["b"] is None
    assert d["macro_skipped"] == ["b"]
    assert all(x == round(x, 4) for x in d["roc_fpr"] + d["roc_tpr"])
