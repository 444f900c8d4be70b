"""Benchmark a dataset: fit on its normal training videos, score its test videos, measure AUC.

Used by `vlavad bench` and the web app's Benchmark tab. A run folder gets `results.json`
(metrics, per-video AUC, settings, backends, timings, cache use), `per_video.csv`, `scores.csv`
(every test frame's label and scores), `roc.png` and the fitted `model/`. It is built beside its
target and renamed into place, so a run folder is complete or absent.
"""

from __future__ import annotations

import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vlavad.core.errors import DatasetError
from vlavad.core.fileio import atomic_write_json, atomic_write_text, staged_folder
from vlavad.core.records import VideoResult
from vlavad.core.timing import TABLE_NOTE, format_table, stage_table
from vlavad.io.datasets import Dataset, check_labels
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.pipeline import Pipeline
from vlavad.scorers.metrics import BenchMetrics, evaluate

FORMAT = "vlavad-run/1"


@dataclass
class BenchResult:
    dataset: str
    metrics: BenchMetrics
    results: dict[str, VideoResult]
    model: FittedModel
    timings: dict
    cache_summary: str
    backends: dict

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "dataset": self.dataset,
            "metrics": self.metrics.to_dict(),
            "settings": self.model.settings.to_dict(),
            "selected_questions": [p.label for p in self.model.selected_prompts],
            "prompt_stats": [s.to_dict() for s in self.model.prompt_stats],
            "backends": self.backends,
            "timings": self.timings,
            "cache": self.cache_summary,
            "machine": {"platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version()},
        }

    def scores_table(self) -> pd.DataFrame:
        rows = []
        for name, result in self.results.items():
            frame = result.frames[["frame", "static", "temporal", "fused"]].copy()
            frame.insert(0, "video", name)
            rows.append(frame)
        return pd.concat(rows, ignore_index=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux from /proc (VmHWM): ru_maxrss survives
    exec, so a process started by a big one would report at least its parent's size."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_benchmark(dataset: Dataset, pipeline: Pipeline, prompts: list | None = None) -> BenchResult:
    if not dataset.labels:
        raise DatasetError(f"Dataset {dataset.name} has no test labels, so it cannot be benchmarked.")
    # Labels that do not fit their videos are reported before minutes of work, not after.
    test_infos = list(pipeline.probed([ref.path for ref in dataset.test], ahead=2))
    check_labels(dataset, {ref.name: info.frame_count for ref, info in zip(dataset.test, test_infos)})
    started, before_fit = time.perf_counter(), pipeline.times.snapshot()
    model = pipeline.fit([ref.path for ref in dataset.train], prompts)
    fitted, fit_stages = time.perf_counter(), pipeline.times.since(before_fit)
    before_score = pipeline.times.snapshot()

    results = {}
    for ref in pipeline.progress_bar(dataset.test, desc="bench: scoring test videos", unit="video"):
        results[ref.name] = pipeline.score(model, ref.path, name=ref.name)
    scored = time.perf_counter()

    metrics = evaluate({name: (dataset.labels[name], r.frames["fused"].to_numpy()) for name, r in results.items()})
    train_frames = model.training.get("frames", 0)
    test_frames = sum(r.info.frame_count for r in results.values())
    timings = {
        "fit_s": round(fitted - started, 2),
        "score_s": round(scored - fitted, 2),
        "train_frames": train_frames,
        "test_frames": test_frames,
        "fit_fps": round(train_frames / max(fitted - started, 1e-9), 1),
        "score_fps": round(test_frames / max(scored - fitted, 1e-9), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        # Where the time went; the pseudo-anomaly pass (normal videos played faster) is part of fit.
        "fit_stages": stage_table(fit_stages, train_frames, fitted - started),
        "score_stages": stage_table(pipeline.times.since(before_score), test_frames, scored - fitted),
    }
    return BenchResult(dataset.name, metrics, results, model, timings, pipeline.cache.summary(), model.backends)


def save_benchmark(result: BenchResult, out_dir: str | Path, *, replace: bool = True) -> Path:
    """Writes the run folder; an existing one is replaced only if it is a vlavad run."""
    with staged_folder(out_dir, "run", replace=replace) as out:
        per_video = pd.DataFrame([{"video": k, "auc": v, "frames": result.results[k].info.frame_count} for k, v in result.metrics.per_video.items()])
        atomic_write_text(out / "per_video.csv", per_video.to_csv(index=False))
        atomic_write_text(out / "scores.csv", result.scores_table().to_csv(index=False, float_format="%.5f"))
        save_roc_png(result.metrics, out / "roc.png", title=f"{result.dataset}: ROC, micro AUC {fmt_auc(result.metrics.micro_auc)}")
        result.model.save(out / "model")
        atomic_write_json(out / "results.json", result.to_json())  # the marker, last
    return Path(out_dir)


def fmt_auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def save_roc_png(metrics: BenchMetrics, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(metrics.roc_fpr, metrics.roc_tpr, lw=2, label=f"micro AUC {fmt_auc(metrics.micro_auc)}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def metrics_table(result: BenchResult) -> str:
    m, t = result.metrics, result.timings
    lines = [
        "| dataset | micro AUC | macro AUC (videos) | fit frames/s | score frames/s | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {result.dataset} | {fmt_auc(m.micro_auc)} | {fmt_auc(m.macro_auc)} ({m.macro_videos}, {len(m.macro_skipped)} skipped) "
        f"| {t['fit_fps']} | {t['score_fps']} | {t['peak_rss_mb']} |",
        "",
        "| video | AUC |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {fmt_auc(auc)} |" for name, auc in m.per_video.items()]
    tables = [format_table(title, t[key]) for title, key in (("fit stage", "fit_stages"), ("score stage", "score_stages")) if t.get(key)]
    for table in tables:
        lines += ["", table]
    if tables:
        lines += ["", TABLE_NOTE]
    return "\n".join(lines)
