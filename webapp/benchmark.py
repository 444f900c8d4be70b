"""The Benchmark tab: fit on a dataset's normal videos, score its test videos, report frame AUC.

Datasets are offered only from the data root's listing and re-validated by name on submit, so no
request can point the app at an arbitrary path. A run occupies one worker of its own queue
(concurrency_id "benchmark"), so analyses from other users keep running meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import gradio as gr
import pandas as pd

from vlavad import backends as vb
from vlavad.backends import backends_line
from vlavad.bench import run_benchmark, save_benchmark
from vlavad.config import preset, preset_names
from vlavad.datasets import load_dataset
from vlavad.pipeline import Pipeline

from . import plots
from .state import AppDir, dataset_names, read_json, resolve_dataset, user_errors

RUN_COLUMNS = ["run", "dataset", "preset", "micro AUC", "macro AUC", "time (s)", "backends"]


def _auc(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@user_errors
def benchmark_dataset(app: AppDir, data_root: Path, dataset: str, preset_name: str, detector: str, describer: str, encoder: str, epochs: int):
    """Runs and saves one benchmark; returns (BenchResult, run folder)."""
    folder = resolve_dataset(dataset, data_root)
    if preset_name not in preset_names():
        raise gr.Error(f"Unknown preset {preset_name!r}.")
    settings = preset(preset_name).updated(detector=detector, describer=describer, encoder=encoder, epochs=int(epochs))
    # Refuse at once, naming the missing model, rather than after minutes of tracking.
    settings, _ = vb.resolve_backend("offline", settings, explicit=("detector", "describer", "encoder"))
    data = load_dataset(folder)
    result = run_benchmark(data, Pipeline(settings, cache_dir=app.cache))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    out = save_benchmark(result, app.runs / f"{stamp}-{data.name}-{preset_name}")
    return result, out


def runs_table(app: AppDir) -> pd.DataFrame:
    """Every saved run, newest first, for side-by-side comparison."""
    rows = []
    for folder in sorted(app.runs.iterdir(), reverse=True):
        meta = read_json(folder / "results.json") if (folder / "results.json").is_file() else None
        if not meta:
            continue
        timings = meta.get("timings", {})
        rows.append({
            "run": folder.name,
            "dataset": meta.get("dataset"),
            "preset": meta.get("settings", {}).get("preset"),
            "backends": backends_line(meta.get("backends", {})),
            "micro AUC": _auc(meta["metrics"].get("micro_auc")),
            "macro AUC": _auc(meta["metrics"].get("macro_auc")),
            "time (s)": round(timings.get("fit_s", 0) + timings.get("score_s", 0), 1),
        })
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def build_tab(app: AppDir, data_root: Path, gpu=lambda fn: fn):
    names = dataset_names(data_root)
    gr.Markdown(f"Datasets found under the data folder `{data_root}`" + ("" if names else " — **none found**: set `VLAVAD_DATA_ROOT`."))
    with gr.Row():
        dataset = gr.Dropdown(choices=names, value=names[0] if names else None, label="Dataset", allow_custom_value=False)
        preset_box = gr.Dropdown(choices=preset_names(), value="custom", label="Preset")
        epochs = gr.Slider(1, 12, value=preset("custom").epochs, step=1, label="S3M training epochs")
    with gr.Row():
        detector = gr.Dropdown(choices=list(vb.DETECTORS), value=vb.DETECTORS[0], label="Detector")
        describer = gr.Dropdown(choices=list(vb.DESCRIBERS), value=vb.DESCRIBERS[0], label="Describer")
        encoder = gr.Dropdown(choices=list(vb.ENCODERS), value=vb.ENCODERS[0], label="Text encoder")
    run_btn = gr.Button("Run benchmark", variant="primary")
    summary = gr.Markdown()
    with gr.Row():
        roc = gr.Plot(label="ROC")
        per_video = gr.Dataframe(label="AUC per test video", interactive=False)
    curves = gr.Plot(label="Per-video scores")
    gr.Markdown("### Past runs")
    runs = gr.Dataframe(value=runs_table(app), label="Saved runs (newest first)", interactive=False, wrap=True)

    def run(name, preset_name, det, desc, enc, n_epochs, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc="loading dataset")
        result, out = benchmark_dataset(app, data_root, name, preset_name, det, desc, enc, n_epochs)
        m = result.metrics
        text = (f"**{result.dataset}** · micro AUC **{_auc(m.micro_auc)}** · macro AUC **{_auc(m.macro_auc)}** "
                f"({m.macro_videos} videos, {len(m.macro_skipped)} skipped: one class only)  \n"
                f"Backends: {backends_line(result.backends)} · fit {result.timings['fit_s']} s, score {result.timings['score_s']} s · saved to `{out.name}`")
        table = pd.DataFrame([{"video": k, "AUC": _auc(v), "frames": result.results[k].info.frame_count} for k, v in m.per_video.items()])
        data = load_dataset(resolve_dataset(name, data_root))
        series = {k: (data.labels[k], result.results[k].frames["fused"].to_numpy(), m.per_video.get(k)) for k in result.results}
        return text, plots.roc(m.roc_fpr, m.roc_tpr, f"micro AUC {_auc(m.micro_auc)}"), table, plots.per_video_curves(series), runs_table(app)

    run_btn.click(gpu(run), [dataset, preset_box, detector, describer, encoder, epochs], [summary, roc, per_video, curves, runs],
                  concurrency_limit=1, concurrency_id="benchmark", api_name="benchmark")
    preset_box.change(lambda name: gr.update(value=preset(name).epochs), preset_box, epochs)
