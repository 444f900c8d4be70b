"""Frame-level ROC AUC, the metric video anomaly detection papers report.

Two numbers are reported for a benchmark:

* micro AUC: one ROC over every test frame of every video concatenated. This is the number papers
  give for UCSD Ped2, Avenue and ShanghaiTech.
* macro AUC: the mean of per-video AUCs. A video whose frames are all normal or all anomalous has
  no AUC (e.g. Ped2 Test008-Test011), so it is skipped and listed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vlavad.core.errors import DatasetError

ROC_MAX_POINTS = 500


def frame_auc(labels, scores) -> float | None:
    """ROC AUC of per-frame `scores` against 0/1 `labels`; None if the labels hold one class."""
    from sklearn.metrics import roc_auc_score  # here: scoring a video never needs scikit-learn (0.5-1.5 s to import)

    labels = np.asarray(labels).ravel()
    if np.unique(labels).size < 2:
        return None
    return float(roc_auc_score(labels, np.asarray(scores).ravel()))


@dataclass
class BenchMetrics:
    micro_auc: float | None
    macro_auc: float | None
    macro_videos: int
    macro_skipped: list[str]
    per_video: dict[str, float | None]
    roc_fpr: list[float]
    roc_tpr: list[float]

    def to_dict(self) -> dict:
        """JSON-ready dict: AUCs rounded to 6 places, ROC points to 4."""
        d = asdict(self)
        d["micro_auc"] = _round(self.micro_auc, 6)
        d["macro_auc"] = _round(self.macro_auc, 6)
        d["per_video"] = {name: _round(auc, 6) for name, auc in self.per_video.items()}
        d["roc_fpr"] = [round(x, 4) for x in self.roc_fpr]
        d["roc_tpr"] = [round(x, 4) for x in self.roc_tpr]
        return d


def evaluate(per_video: dict[str, tuple[np.ndarray, np.ndarray]]) -> BenchMetrics:
    """Micro and macro frame AUC over test videos given as {name: (labels 0/1, scores)}."""
    if not per_video:
        raise DatasetError("no test videos to evaluate")
    all_labels, all_scores = [], []
    aucs: dict[str, float | None] = {}
    for name, (labels, scores) in per_video.items():
        labels, scores = np.asarray(labels).ravel(), np.asarray(scores, dtype=np.float64).ravel()
        if len(labels) != len(scores):
            raise DatasetError(f"video {name}: {len(labels)} frame labels but {len(scores)} frame scores")
        aucs[name] = frame_auc(labels, scores)
        all_labels.append(labels)
        all_scores.append(scores)
    labels, scores = np.concatenate(all_labels), np.concatenate(all_scores)

    valid = [auc for auc in aucs.values() if auc is not None]
    micro = frame_auc(labels, scores)
    fpr, tpr = _roc_points(labels, scores) if micro is not None else ([], [])
    return BenchMetrics(
        micro_auc=micro,
        macro_auc=float(np.mean(valid)) if valid else None,
        macro_videos=len(valid),
        macro_skipped=[name for name, auc in aucs.items() if auc is None],
        per_video=aucs,
        roc_fpr=fpr,
        roc_tpr=tpr,
    )


def _roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[list[float], list[float]]:
    """The micro ROC curve, from (0, 0) to (1, 1), thinned to at most ROC_MAX_POINTS vertices."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    if len(fpr) > ROC_MAX_POINTS:
        # Keep vertices evenly spaced along the curve's length rather than by index: ROC vertices
        # bunch up where scores are dense, and index spacing would flatten the sparse parts.
        length = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(fpr), np.diff(tpr)))])
        targets = np.linspace(0.0, length[-1], ROC_MAX_POINTS)
        keep = np.unique(np.clip(np.searchsorted(length, targets), 0, len(fpr) - 1))
        keep[-1] = len(fpr) - 1  # the end point (1, 1) even after a run of zero-length steps
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr.tolist(), tpr.tolist()


def _round(x: float | None, places: int) -> float | None:
    return None if x is None else round(x, places)
