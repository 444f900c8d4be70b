"""The Analyse tab: one video in, an annotated video, a timeline, events and downloads out.

`analyse_video` is the whole request without Gradio widgets (tests call it directly). It checks
every input before any work, builds its result folder beside its final place so that a rejected
or killed request leaves nothing that looks complete, and keeps everything in the visitor's own
workspace.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from vlavad.core.errors import VlavadError
from vlavad.core.fileio import atomic_write_json
from vlavad.core.records import VideoInfo, VideoResult, backends_line
from vlavad.io.content_key import content_key
from vlavad.io.header import read_header
from vlavad.io.probe import probe
from vlavad.io.writer import write_clip
from vlavad.outputs.render import render_frame
from vlavad.outputs.report import score_scale, what_is_asked
from vlavad.outputs.results import load_result, write_outputs
from vlavad.pipeline.settings import preset
from webapp import plots
from webapp.common import EXAMPLE_VIDEO, TabHooks, choices_update, download_stem, events_table, result_meta, user_errors, workspace_of
from webapp.names import BUNDLED_POOL, AppError, ModelMeta, check_name, clip_name, link_or_copy, now_iso
from webapp.progress import ReportingPipeline, StageProgress
from webapp.store import Store
from webapp.tiers import APP_TIERS, default_tier, settings_for_tier, tier_choices
from webapp.workspace import Workspace

NORMAL_SEGMENT = "First seconds of this video"
NORMAL_CLIPS = "Uploaded normal clips"
NORMAL_MODEL = "A saved model"
NORMAL_MODES = (NORMAL_SEGMENT, NORMAL_CLIPS, NORMAL_MODEL)
# The example's cart enters at about 6 s: its first 5 s are all normal walking.
DEFAULT_NORMAL_SECONDS = 5.0
# Fewer S3M epochs than a benchmark: a few seconds of normal video train in a few epochs, and a
# user waits for this one.
DEFAULT_EPOCHS = 4
MAX_EPOCHS = 12
MAX_NORMAL_CLIPS = 8
EVENT_WIDTHS = ["7%", "15%", "15%", "15%", "48%"]  # #, start, end, peak score, why


@dataclass
class Analysis:
    """What one request produced: the result, its folder and the files offered for download."""

    result_id: str
    folder: Path
    result: VideoResult
    annotated: Path  # the published copy (outbox), what the browser plays
    downloads: list[str]
    model_label: str
    cards: str  # the events' cards, HTML
    normal_until_s: float | None  # the first seconds the user declared normal


def check_upload(path: str | Path, store: Store) -> VideoInfo:
    """File size, then the app's video limits (size, rate, length, frame count) from the header
    before anything is decoded and again while probing, then readability; each failure one line.
    The returned info carries the limits, which every later pass over the video keeps."""
    path = Path(path)
    limits = store.limits
    size_mb = path.stat().st_size / 1e6 if path.is_file() else 0
    if size_mb > limits.max_upload_mb:
        raise AppError(f"{path.name} is {size_mb:.0f} MB; the limit is {limits.max_upload_mb:.0f} MB.")
    info = probe(path, limits=limits.video)
    if info.frame_count < 2:
        raise AppError(f"{path.name} has {info.frame_count} frame(s); a video needs at least 2.")
    return info


@user_errors
def analyse_video(
    store: Store,
    workspace: Workspace,
    video: str | Path,
    *,
    normal_mode: str = NORMAL_SEGMENT,
    normal_seconds: float = DEFAULT_NORMAL_SECONDS,
    normal_clips: list[str | Path] | None = None,
    model_name: str | None = None,
    pool_name: str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    save_model_as: str = "",
    tier: str = "weight-free",
    report: Callable[[str, float | None], None] | None = None,
) -> Analysis:
    """Fits (or loads) a model of normality with `tier`'s backends, scores `video`, and writes
    every output file. A saved model keeps the backends it was fitted with. `report` hears what
    runs, in plain words, with the share of the whole run done (None while waiting for the
    packaged weights, which cannot say)."""
    report = report or (lambda line, fraction: None)
    progress = StageProgress(report, fitting=normal_mode != NORMAL_MODEL)
    # Every choice is checked before any work: an API call can send anything.
    if normal_mode not in NORMAL_MODES:
        raise AppError(f"Unknown choice of normal data: {str(normal_mode)[:40]!r}")
    if tier not in APP_TIERS:
        raise AppError(f"Unknown tier {str(tier)[:40]!r}; choose one of: {', '.join(APP_TIERS)}.")
    if not isinstance(epochs, (int, float)) or not 1 <= int(epochs) <= MAX_EPOCHS:
        raise AppError(f"Training epochs of the sequence model must be between 1 and {MAX_EPOCHS}.")
    save_as = check_name(save_model_as.strip().replace(" ", "-"), "model") if (save_model_as or "").strip() else ""
    clips = [Path(c) for c in normal_clips or []]
    if normal_mode == NORMAL_CLIPS and not 1 <= len(clips) <= MAX_NORMAL_CLIPS:
        raise AppError(f"Upload between 1 and {MAX_NORMAL_CLIPS} normal clips.")
    if normal_mode == NORMAL_MODEL and not model_name:
        raise AppError("Choose a saved model, or pick another way to say what is normal.")
    if normal_mode == NORMAL_MODEL:
        workspace.model_path(model_name)  # one that exists, before any folder is made
    pool = workspace.load_pool(pool_name)
    source = Path(video)
    info = check_upload(source, store)
    if normal_mode == NORMAL_SEGMENT and not 1.0 <= float(normal_seconds or 0) <= info.duration_s - 1.0:
        raise AppError(f"The normal segment must be between 1 s and {info.duration_s - 1:.1f} s (the video lasts {info.duration_s:.1f} s).")
    for clip in clips:
        check_upload(clip, store)
    if normal_mode != NORMAL_MODEL:  # before any folder is made: the wait for the weights may end in a refusal
        settings = settings_for_tier(tier, preset("custom").updated(**{"temporal.epochs": int(epochs)}), lambda line: report(line, None))

    result_id = workspace.new_result_id(source.stem)
    with workspace.result_staging(result_id) as folder:
        local = folder / f"input{source.suffix.lower() or '.mp4'}"
        shutil.copyfile(source, local)
        meta = {
            "id": result_id,
            "name": source.stem,
            "video": local.name,
            "content_key": content_key(local),
            "pool": pool_name or "",
            "created": now_iso(),
        }
        if normal_mode == NORMAL_MODEL:
            model = workspace.load_model(model_name)
            meta.update(model={"kind": "saved", "name": model_name}, model_label=f"the saved model {model_name!r}")
        else:
            # The normal clips stay in this result (normal/): they are kept in clips/ only if a
            # model fitted on them is saved, and go with the result otherwise.
            normal = folder / "normal"
            normal.mkdir()
            if normal_mode == NORMAL_SEGMENT:
                seconds = float(normal_seconds)
                clips = [write_clip(local, folder / "normal-segment.mp4", frames=int(round(seconds * info.fps)), limits=info.limits)]
                label = f"fitted on the first {seconds:g} s of this video"
            else:
                label = f"fitted on {len(clips)} uploaded normal clip(s)"
            kept = [clip_name(c) for c in clips]
            for clip, name in zip(clips, kept):
                link_or_copy(clip, normal / name)
            progress.enter("fit")
            model = ReportingPipeline(settings, cache_dir=store.cache, limits=info.limits, progress=progress).fit(
                [normal / name for name in kept], pool
            )
            model_meta = ModelMeta(normal_clips=kept, created=now_iso(), pool=pool_name or "", source=f"analysis of {source.stem}")
            model.save(folder / "model", extra={"app.json": model_meta.model_dump()})
            meta.update(model={"kind": "result"}, model_label=label)

        progress.enter("score")
        result = ReportingPipeline(model.settings, cache_dir=store.cache, limits=info.limits, progress=progress).score(model, local, name=source.stem)
        normal_until = float(normal_seconds) if normal_mode == NORMAL_SEGMENT else None
        meta["normal_until_s"] = normal_until
        progress.enter("outputs", "drawing the boxes on the video and writing the report")
        cards = write_outputs(result, folder, local, annotated=True, report=True, model_label=meta["model_label"], normal_until_s=normal_until)
        if save_as and normal_mode != NORMAL_MODEL:
            # Saved once the long and fallible work is done: a run that fails saves nothing.
            saved = workspace.save_model(model, save_as, model_meta, clips_from=normal)
            meta.update(model={"kind": "saved", "name": saved}, model_label=f"{meta['model_label']}, saved as the model {saved!r}")
        stem = download_stem(source.stem)
        downloads = store.publish(
            {f"{stem}-{name}": folder / name for name in ("annotated.mp4", "report.html", "frames.csv", "objects.csv", "result.json")}
        )
        meta["outbox"] = Path(downloads[0]).parent.name  # removed with the result
        atomic_write_json(folder / "app.json", meta)
    store.prune()
    return Analysis(result_id, workspace.result_dir(result_id), result, Path(downloads[0]), downloads, meta["model_label"], cards, normal_until)


def summary_markdown(done: Analysis) -> str:
    r = done.result
    text = (
        f"**{r.name}**: {r.info.frame_count} frames, {r.info.duration_s:.1f} s · **{len(r.events)} event(s)** · normal: {done.model_label}  \n"
        f"Backends: {backends_line(r.backends)}  \nWhat the model looks at in each object: {what_is_asked(r.selected_questions)}  \n"
        f"{score_scale(r.threshold, r.threshold_quantile)}  \n"
        f"Result id (reopen it in *Annotate*): `{done.result_id}`"
    )
    warning = normal_segment_warning(r, done.normal_until_s)
    return text + (f"  \n⚠️ **Check the normal segment:** {warning}" if warning else "")


def normal_segment_warning(result: VideoResult, normal_until_s: float | None) -> str:
    """One plain line when the part declared normal already holds what the model calls unusual:
    an event inside it, or the object that raised an event already in view there (the model then
    learnt part of that object as normal, and may miss it). Empty otherwise."""
    if normal_until_s is None:
        return ""
    events = result.events
    inside = [e for e in events if e.start_s < normal_until_s]
    if inside:
        first = inside[0]
        return (
            f"event {events.index(first) + 1} ({first.start_s:.1f}–{first.end_s:.1f} s) lies in the first {normal_until_s:g} s, which you "
            f"declared normal. If it is an anomaly, choose a segment that ends before {first.start_s:.1f} s, or upload normal clips."
        )
    for number, event in enumerate(events, 1):
        if not event.causes:
            continue
        objects = result.objects
        seen = objects.loc[objects["track_id"] == event.causes[0].track_id, "frame"]
        first_s = float(result.frames["time_s"].iloc[int(seen.min())]) if len(seen) else None
        if first_s is not None and first_s < normal_until_s:
            shorter = f"a normal segment of the first {int(first_s):d} s" if first_s >= 1.0 else "normal clips without it"
            return (
                f"the object that raised event {number} ({event.start_s:.1f}–{event.end_s:.1f} s) was already in view at {first_s:.1f} s, "
                f"inside the first {normal_until_s:g} s you declared normal, so the model learnt part of it as normal. Try {shorter}."
            )
    return ""


# --- the tab ---------------------------------------------------------------------------------


def build_tab(store: Store, session: gr.State, gpu=lambda fn: fn, concurrency: int = 2):
    """Builds the Analyse tab inside the current Blocks; returns its hooks, its run event and its tier choice."""
    with gr.Row():
        with gr.Column(scale=1):
            video_in = gr.Video(label="Video to analyse", sources=["upload"], height=240)
            example_btn = gr.Button("Use the bundled example (plaza, 16 s)", size="sm")
            normal_mode = gr.Radio(list(NORMAL_MODES), value=NORMAL_SEGMENT, label="What counts as normal?")
            normal_seconds = gr.Number(value=DEFAULT_NORMAL_SECONDS, label="Normal segment: first N seconds", minimum=1, maximum=600)
            normal_clips = gr.File(label="Normal clips", file_count="multiple", file_types=["video"], visible=False)
            # Choices come from the visitor's workspace when the page loads; the handler checks the name
            # itself, so that API clients, which never load the page, can name their models too.
            model_name = gr.Dropdown(choices=[], label="Saved model", visible=False, allow_custom_value=True)
            # The labels say what each tier is and, while the packaged weights are fetched, how far
            # that has got (the app refreshes them); a saved model keeps the backends it was fitted with.
            tier = gr.Radio(tier_choices(), value=default_tier(), label="Backends for fitting", elem_id="tier")
            with gr.Accordion("Options", open=False):
                pool_name = gr.Dropdown(choices=[BUNDLED_POOL], value=BUNDLED_POOL, label="Prompt pool (for fitting)", allow_custom_value=True)
                epochs = gr.Slider(1, MAX_EPOCHS, value=DEFAULT_EPOCHS, step=1, label="Training epochs of the sequence model (what objects do next)")
                save_as = gr.Textbox(label="Save the fitted model as (optional)", placeholder="e.g. plaza-day")
            run_btn = gr.Button("Analyse", variant="primary")
        with gr.Column(scale=2):
            summary = gr.Markdown("Upload a video (or use the example) and press **Analyse**.")
            video_out = gr.Video(
                label="Annotated video (box colour: green usual · orange unusual · red anomalous)", height=360, autoplay=False, interactive=False
            )
    # The heading sits above the plot rather than on it: a label over the plot covered Plotly's
    # buttons on a phone.
    gr.Markdown("**Timeline**: click a point to see that frame.")
    timeline = gr.Plot(show_label=False, elem_id="timeline")
    with gr.Row():
        frame_no = gr.Slider(0, 1, value=0, step=1, label="Frame", scale=3, elem_id="frame-slider")
        show_btn = gr.Button("Show this frame", scale=1, elem_id="show-frame")
    frame_img = gr.Image(label="Frame with its boxes", height=320, interactive=False)
    # Shares of the width, not pixels: on a phone the table fits the screen, and "why" wraps
    # inside it instead of running off to the right.
    events = gr.Dataframe(label="Events", interactive=False, wrap=True, value=events_table([]), column_widths=EVENT_WIDTHS, elem_id="events")
    cards = gr.HTML(label="Why each event was raised", elem_id="event-cards")
    downloads = gr.File(
        label="Downloads: frames CSV, objects CSV, result JSON, annotated video, HTML report", file_count="multiple", interactive=False
    )

    def toggle(mode):
        return (
            gr.update(visible=mode == NORMAL_SEGMENT),
            gr.update(visible=mode == NORMAL_CLIPS),
            gr.update(visible=mode == NORMAL_MODEL),
            gr.update(visible=mode != NORMAL_MODEL),
        )

    normal_mode.change(toggle, normal_mode, [normal_seconds, normal_clips, model_name, tier])
    example_btn.click(lambda: str(EXAMPLE_VIDEO), None, video_in)

    def suggest_segment(video):
        """A normal segment that leaves most of the clip to analyse: 5 s, at most a third of it.
        It runs on every upload, before anyone asks for work, so it reads the header alone."""
        if not video:
            return gr.skip()
        try:
            duration = read_header(video, limits=store.limits.video).duration_s
        except VlavadError:
            return gr.skip()  # the Analyse button reports what is wrong with it
        if not duration:
            return gr.skip()  # the header does not say: the default stands
        return gr.update(value=round(max(1.0, min(DEFAULT_NORMAL_SECONDS, duration / 3)), 1))

    # In the Analyse group, so that a flood of uploads waits its turn instead of running 8 at once.
    video_in.change(suggest_segment, video_in, normal_seconds, api_name=False, concurrency_limit=concurrency, concurrency_id="analyse")

    def run(video, mode, seconds, clips, model, pool, n_epochs, save_name, chosen_tier, state, progress=gr.Progress(track_tqdm=True)):
        if not video:
            raise gr.Error("Upload a video, or press “Use the bundled example”.")
        workspace, state = workspace_of(store, state)
        progress(0, desc="Checking the video")
        done = analyse_video(
            store,
            workspace,
            video,
            normal_mode=mode,
            normal_seconds=seconds,
            normal_clips=clips,
            model_name=model,
            pool_name=pool,
            epochs=n_epochs,
            save_model_as=save_name or "",
            tier=chosen_tier,
            report=lambda line, fraction: progress(fraction, desc=line),
        )
        r = done.result
        state["backends"] = backends_line(r.backends)  # what the banner says this result used
        state["results"] = {**state.get("results", {}), done.result_id: f"{r.name} ({done.result_id[:15]})"}
        state["current"] = done.result_id
        ev = [e.to_dict() for e in r.events]
        peak = max(ev, key=lambda e: e["peak_score"])["peak_frame"] if ev else 0
        figure = plots.timeline(r.frames, ev, r.threshold, normal_until_s=done.normal_until_s)  # the heading above names it
        return (
            str(done.annotated),
            figure,
            events_table(ev),
            done.cards or "<p>No event: the score never crossed the threshold.</p>",
            done.downloads,
            summary_markdown(done),
            gr.update(maximum=r.info.frame_count - 1, value=peak),
            state,
        )

    run_event = run_btn.click(
        gpu(run),
        # The tier comes after the older inputs: API clients that send only those get the tab's default.
        [video_in, normal_mode, normal_seconds, normal_clips, model_name, pool_name, epochs, save_as, tier, session],
        [video_out, timeline, events, cards, downloads, summary, frame_no, session],
        concurrency_limit=concurrency,
        concurrency_id="analyse",
        api_name="analyse",
    )

    @user_errors
    def show(index, state):
        current = (state or {}).get("current")
        if not current:
            raise AppError("Analyse a video first.")
        workspace, _ = workspace_of(store, state)
        folder = workspace.result_dir(current)
        saved = load_result(folder)
        index = int(index or 0)
        if not 0 <= index < saved.info.frame_count:
            raise AppError(f"Frame {index} is outside the video (0–{saved.info.frame_count - 1}).")
        video = folder / result_meta(folder)["video"]
        return render_frame(video, index, saved.objects, saved.frames, saved.threshold, limits=store.limits.video)[0]

    show_btn.click(show, [frame_no, session], frame_img, concurrency_limit=4, concurrency_id="frame", api_name="show_frame")
    run_event.then(show, [frame_no, session], frame_img)

    def refresh(state):
        workspace, _ = workspace_of(store, state)
        return choices_update(workspace.model_names()), choices_update(workspace.pool_names())

    return TabHooks(refresh, [model_name, pool_name], saves=[run_event]), run_event, tier
