"""The Analyse tab: one video in, an annotated video, a timeline, events and downloads out.

`analyse_video` is the whole request without Gradio widgets (tests call it directly); the tab
wires it to components. Every request writes into its own fresh result folder and returns its id
in the caller's session state, so concurrent users never see each other's results.
"""

from __future__ import annotations

import html
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from vlavad.backends import backends_line
from vlavad.cache import atomic_write_text
from vlavad.config import preset
from vlavad.model import FittedModel
from vlavad.pipeline import Pipeline, VideoResult
from vlavad.results import save_result
from vlavad.video import VideoInfo, content_key, probe, write_clip

from . import plots
from .render import render_frame, render_video
from .state import EXAMPLE_VIDEO, AppDir, Limits, check_name, now_iso, read_json, user_errors, write_json

NORMAL_SEGMENT = "First seconds of this video"
NORMAL_CLIPS = "Uploaded normal clips"
NORMAL_MODEL = "A saved model"
# The example's cart enters at about 6 s: its first 5 s are all normal walking.
DEFAULT_NORMAL_SECONDS = 5.0
# Fewer S3M epochs than a benchmark: a few seconds of normal video train in a few epochs, and a
# user waits for this one.
DEFAULT_EPOCHS = 4


@dataclass
class Analysis:
    """What one request produced: the result and where its files are."""

    result_id: str
    folder: Path
    result: VideoResult
    video: Path  # the analysed video (a copy inside the result folder)
    annotated: Path
    report: Path
    model_label: str


def check_upload(path: str | Path, limits: Limits) -> VideoInfo:
    """Size, readability and duration of an uploaded video, each failure a gr.Error."""
    path = Path(path)
    size_mb = path.stat().st_size / 1e6 if path.is_file() else 0
    if size_mb > limits.max_upload_mb:
        raise gr.Error(f"{path.name} is {size_mb:.0f} MB; the limit is {limits.max_upload_mb:.0f} MB.")
    info = user_errors(probe)(path)
    if info.frame_count < 2:
        raise gr.Error(f"{path.name} has {info.frame_count} frame(s); a video needs at least 2.")
    if info.duration_s > limits.max_duration_s:
        raise gr.Error(f"{path.name} lasts {info.duration_s / 60:.1f} min; the limit is {limits.max_duration_s / 60:.0f} min.")
    return info


def _copy_in(source: Path, target: Path) -> Path:
    """The input kept with its result (uploads in Gradio's cache may be deleted); a hard link
    when the file system allows, so a big video is not stored twice."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


@user_errors
def analyse_video(
    app: AppDir,
    video: str | Path,
    *,
    normal_mode: str = NORMAL_SEGMENT,
    normal_seconds: float = DEFAULT_NORMAL_SECONDS,
    normal_clips: list[str | Path] | None = None,
    model_name: str | None = None,
    pool_name: str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    save_model_as: str = "",
    limits: Limits | None = None,
) -> Analysis:
    """Fits (or loads) a model of normality, scores `video`, and writes every output file."""
    limits = limits or Limits()
    source = Path(video)
    info = check_upload(source, limits)
    folder = app.new_result_dir(source.stem)
    local = _copy_in(source, folder / f"input{source.suffix.lower() or '.mp4'}")

    normal_videos: list[str] = []
    saved_name = model_name if normal_mode == NORMAL_MODEL else None  # feedback versions build on it
    if normal_mode == NORMAL_MODEL:
        if not model_name:
            raise gr.Error("Choose a saved model, or pick another way to say what is normal.")
        model = FittedModel.load(app.model_path(model_name))
        normal_videos = app.model_meta(model_name).get("normal_videos", [])
        model_label = f"saved model {model_name!r}"
    else:
        settings = preset("custom").updated(epochs=int(epochs))
        if normal_mode == NORMAL_SEGMENT:
            seconds = float(normal_seconds or 0)
            if not 1.0 <= seconds <= info.duration_s - 1.0:
                raise gr.Error(f"The normal segment must be between 1 s and {info.duration_s - 1:.1f} s (the video lasts {info.duration_s:.1f} s).")
            clip = write_clip(local, folder / "normal-segment.mp4", frames=int(round(seconds * info.fps)))
            clips = [clip]
            model_label = f"fitted on the first {seconds:g} s of this video"
        elif normal_mode == NORMAL_CLIPS:
            if not normal_clips:
                raise gr.Error("Upload at least one normal clip.")
            clips = [Path(c) for c in normal_clips]
            for c in clips:
                check_upload(c, limits)
            model_label = f"fitted on {len(clips)} uploaded normal clip(s)"
        else:
            raise gr.Error(f"Unknown choice of normal data: {normal_mode!r}")
        normal_videos = [str(app.store_normal_clip(c, content_key(c))) for c in clips]
        pipeline = Pipeline(settings, prompts=app.load_pool(pool_name), cache_dir=app.cache)
        model = pipeline.fit(normal_videos)
        model.save(folder / "model")
        if save_model_as.strip():
            name = saved_name = app.free_model_name(_model_name(save_model_as))
            model.save(app.models / name)
            write_json(app.models / f"{name}.json", {"normal_videos": normal_videos, "created": now_iso(), "pool": pool_name or "", "source": folder.name})
            model_label += f", saved as model {name!r}"

    pipeline = Pipeline(model.settings, prompts=model.prompts, cache_dir=app.cache)
    result = pipeline.score(model, local, name=source.stem)
    save_result(result, folder)
    annotated = render_video(local, folder / "annotated.mp4", result.objects, result.frames, result.threshold, info.fps, info.width, info.height)
    report = write_report(result, folder / "report.html", model_label)
    write_json(folder / "app.json", {
        "id": folder.name,
        "name": source.stem,
        "video": local.name,
        "content_key": content_key(local),
        "model": {"kind": "saved", "name": saved_name} if saved_name else {"kind": "fitted", "path": "model"},
        "model_label": model_label,
        "normal_videos": normal_videos,
        "pool": pool_name or "",
        "created": now_iso(),
    })
    return Analysis(folder.name, folder, result, local, annotated, report, model_label)


def _model_name(text: str) -> str:
    return check_name(text.strip().replace(" ", "-"), "model")


def events_table(events: list[dict]) -> pd.DataFrame:
    """The events as a reviewer reads them: when, how strong, and why (the captions)."""
    rows = [
        {
            "#": i + 1,
            "start (s)": round(e["start_s"], 1),
            "end (s)": round(e["end_s"], 1),
            "peak score": round(e["peak_score"], 2),
            "why (top objects)": " | ".join(e["reasons"]) or "—",
        }
        for i, e in enumerate(events)
    ]
    return pd.DataFrame(rows, columns=["#", "start (s)", "end (s)", "peak score", "why (top objects)"])


def write_report(result: VideoResult, path: Path, model_label: str) -> Path:
    """A standalone HTML page (plotly.js inlined, so it opens offline) for stakeholders."""
    events = [e.to_dict() for e in result.events]
    figure = plots.timeline(result.frames, events, result.threshold, result.info.fps, title=f"{result.name}: anomaly score over time")
    table = events_table(events).to_html(index=False, escape=True, border=0)
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>VLAVAD report: {html.escape(result.name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}</style></head><body>
<h1>Anomaly report: {html.escape(result.name)}</h1>
<p>{result.info.frame_count} frames at {result.info.fps:g} fps ({result.info.duration_s:.1f} s), {result.info.width}×{result.info.height}.
Model: {html.escape(model_label)}.<br>Backends: {html.escape(backends_line(result.backends))}.<br>
Question(s) selected by SPA: {html.escape('; '.join(result.selected_questions) or 'none')}. Event threshold: {result.threshold:.2f}.</p>
<h2>Events ({len(events)})</h2>{table if events else '<p>No event: the score never crossed the threshold.</p>'}
<h2>Timeline</h2>{figure.to_html(include_plotlyjs=True, full_html=False)}
<p style="color:#777">Generated by vlavad. Red bands: detected events; dashed line: event threshold.</p></body></html>"""
    atomic_write_text(path, body)
    return path


def load_analysis(app: AppDir, result_id: str) -> dict:
    """A saved result, read back from its folder (for "show frame", Annotate and restarts)."""
    folder = app.result_dir(result_id)
    meta = read_json(folder / "app.json")
    summary = read_json(folder / "result.json")
    frames = pd.read_csv(folder / "frames.csv")
    objects = pd.read_csv(folder / "objects.csv")
    return {"folder": folder, "meta": meta, "summary": summary, "frames": frames, "objects": objects}


# --- the tab ---------------------------------------------------------------------------------


def build_tab(app: AppDir, session: gr.State, gpu=lambda fn: fn, concurrency: int = 2):
    """Builds the Analyse tab inside the current Blocks; returns components other tabs listen to."""
    with gr.Row():
        with gr.Column(scale=1):
            video_in = gr.Video(label="Video to analyse", sources=["upload"], height=240)
            example_btn = gr.Button("Use the bundled example (plaza, 16 s)", size="sm")
            normal_mode = gr.Radio([NORMAL_SEGMENT, NORMAL_CLIPS, NORMAL_MODEL], value=NORMAL_SEGMENT, label="What counts as normal?")
            normal_seconds = gr.Number(value=DEFAULT_NORMAL_SECONDS, label="Normal segment: first N seconds", minimum=1, maximum=600)
            normal_clips = gr.File(label="Normal clips", file_count="multiple", file_types=["video"], visible=False)
            model_name = gr.Dropdown(choices=app.model_names(), label="Saved model", visible=False, allow_custom_value=False)
            with gr.Accordion("Options", open=False):
                pool_name = gr.Dropdown(choices=app.pool_names(), value=app.pool_names()[0], label="Prompt pool (for fitting)")
                epochs = gr.Slider(1, 12, value=DEFAULT_EPOCHS, step=1, label="S3M training epochs")
                save_as = gr.Textbox(label="Save the fitted model as (optional)", placeholder="e.g. plaza-day")
            run_btn = gr.Button("Analyse", variant="primary")
        with gr.Column(scale=2):
            summary = gr.Markdown("Upload a video (or use the example) and press **Analyse**.")
            video_out = gr.Video(label="Annotated video (box colour: green usual · orange unusual · red anomalous)", height=360, autoplay=False, interactive=False)
    timeline = gr.Plot(label="Timeline (click a point to see that frame)", elem_id="timeline")
    with gr.Row():
        frame_no = gr.Slider(0, 1, value=0, step=1, label="Frame", scale=3, elem_id="frame-slider")
        show_btn = gr.Button("Show this frame", scale=1, elem_id="show-frame")
    frame_img = gr.Image(label="Frame with its boxes", height=320, interactive=False)
    events = gr.Dataframe(label="Events", interactive=False, wrap=True, value=events_table([]))
    downloads = gr.File(label="Downloads: frames CSV, objects CSV, result JSON, annotated video, HTML report", file_count="multiple", interactive=False)

    def toggle(mode):
        return gr.update(visible=mode == NORMAL_SEGMENT), gr.update(visible=mode == NORMAL_CLIPS), gr.update(visible=mode == NORMAL_MODEL, choices=app.model_names())

    normal_mode.change(toggle, normal_mode, [normal_seconds, normal_clips, model_name])
    example_btn.click(lambda: str(EXAMPLE_VIDEO), None, video_in)

    def run(video, mode, seconds, clips, model, pool, n_epochs, save_name, state, progress=gr.Progress(track_tqdm=True)):
        if not video:
            raise gr.Error("Upload a video, or press “Use the bundled example”.")
        progress(0, desc="starting")
        done = analyse_video(app, video, normal_mode=mode, normal_seconds=seconds, normal_clips=clips, model_name=model,
                             pool_name=pool, epochs=n_epochs, save_model_as=save_name or "")
        r = done.result
        state = dict(state or {})
        state["results"] = {**state.get("results", {}), done.result_id: f"{r.name} ({done.result_id[:15]})"}
        state["current"] = done.result_id
        ev = [e.to_dict() for e in r.events]
        text = (f"**{r.name}**: {r.info.frame_count} frames, {r.info.duration_s:.1f} s · **{len(ev)} event(s)** · model {done.model_label}  \n"
                f"Backends: {backends_line(r.backends)}  \nSPA question(s): {'; '.join(r.selected_questions) or 'none'} · threshold {r.threshold:.2f}  \n"
                f"Result id (reopen it in *Annotate*): `{done.result_id}`")
        files = [str(done.folder / n) for n in ("frames.csv", "objects.csv", "result.json")] + [str(done.annotated), str(done.report)]
        peak = max(ev, key=lambda e: e["peak_score"])["peak_frame"] if ev else 0
        return (str(done.annotated), plots.timeline(r.frames, ev, r.threshold, r.info.fps, title="Anomaly score over time (hover: top object's caption)"),
                events_table(ev), files, text, gr.update(maximum=r.info.frame_count - 1, value=peak), state,
                gr.update(choices=app.model_names()))

    run_event = run_btn.click(
        gpu(run), [video_in, normal_mode, normal_seconds, normal_clips, model_name, pool_name, epochs, save_as, session],
        [video_out, timeline, events, downloads, summary, frame_no, session, model_name],
        concurrency_limit=concurrency, concurrency_id="analyse", api_name="analyse",
    )

    def show(index, state):
        current = (state or {}).get("current")
        if not current:
            raise gr.Error("Analyse a video first.")
        saved = load_analysis(app, current)
        frames, index = saved["frames"], int(index or 0)
        if not 0 <= index < len(frames):
            raise gr.Error(f"Frame {index} is outside the video (0–{len(frames) - 1}).")
        return render_frame(saved["folder"] / saved["meta"]["video"], index, saved["objects"], frames, saved["summary"]["threshold"])

    show_btn.click(show, [frame_no, session], frame_img, concurrency_limit=4, concurrency_id="frame", api_name="show_frame")
    run_event.then(show, [frame_no, session], frame_img)
    return {"run_event": run_event, "pool_name": pool_name, "model_name": model_name}
