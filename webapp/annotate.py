"""The Annotate tab: mark what really was anomalous, judge the alarms, teach the model.

Annotations are stored in the visitor's workspace per video *content* (annotations/<content
key>.json), so they survive a restart and reappear whenever that visitor analyses the same video
again; another visitor never sees them. Every set of annotations, typed or imported, goes through
one schema with a cap on its size, and is checked before it is saved. "This is normal" feedback
never edits a model: it writes a new version (`<model>-v2`, `-v3`, ...) beside the old one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import gradio as gr
import numpy as np
import pandas as pd
from pydantic import Field, Strict

from vlavad.core.records import VideoResult
from vlavad.core.schema import Schema, read_json_file, validate
from vlavad.outputs.results import load_result
from vlavad.pipeline.pipeline import Pipeline
from vlavad.pipeline.revise import normal_answers
from vlavad.scorers.metrics import frame_auc
from webapp import plots
from webapp.common import TabHooks, download_stem, events_table, result_meta, user_errors, workspace_of
from webapp.names import AppError, ModelMeta, now_iso
from webapp.store import Store
from webapp.workspace import Workspace

VERDICTS = ("true alarm", "false alarm")
INTERVAL_COLUMNS = ["start (s)", "end (s)"]
MAX_INTERVALS = 500


class Annotations(Schema):
    """A video's annotations, as saved, imported and exported."""

    intervals: list[Annotated[tuple[float, float], Strict(False)]] = Field(default_factory=list, max_length=MAX_INTERVALS)
    event_labels: dict[str, str] = Field(default_factory=dict, max_length=1000)


def clean_annotations(data, duration_s: float) -> dict:
    """Checks intervals and verdicts (from the editor or an imported file): each a one-line error."""
    if not isinstance(data, dict):
        raise AppError("An annotation file holds a JSON object with 'intervals' and 'event_labels'.")
    data = {k: data[k] for k in ("intervals", "event_labels") if k in data}
    if isinstance(data.get("intervals"), list) and len(data["intervals"]) > MAX_INTERVALS:
        raise AppError(f"{len(data['intervals'])} intervals: at most {MAX_INTERVALS} are kept per video.")
    annotations = validate(Annotations, data, "annotations", AppError)
    intervals = []
    for start, end in annotations.intervals:
        if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end <= start or start > duration_s:
            raise AppError(f"Interval {start:g}–{end:g} s is not inside the video (0–{duration_s:.1f} s, start < end).")
        intervals.append([round(start, 3), round(min(end, duration_s), 3)])
    labels = {k: v for k, v in annotations.event_labels.items() if v in VERDICTS}
    return {"intervals": sorted(intervals), "event_labels": labels}


def frame_labels(intervals: list[list[float]], times: np.ndarray) -> np.ndarray:
    labels = np.zeros(len(times), dtype=np.int8)
    for start, end in intervals:
        labels[(times >= start) & (times <= end)] = 1
    return labels


def event_key(event: dict) -> str:
    return f"{event['start_frame']}-{event['end_frame']}"


def verdicts_table(events: list[dict], verdicts: dict[str, str]) -> pd.DataFrame:
    table = events_table(events)
    table.insert(4, "verdict", [verdicts.get(event_key(e), "") for e in events])
    return table


def load_annotations(workspace: Workspace, content_key: str, duration_s: float) -> dict:
    path = workspace.annotations_path(content_key)
    if not path.is_file():
        return {"intervals": [], "event_labels": {}}
    return clean_annotations(read_json_file(path, "annotations file", AppError), duration_s)


@user_errors
def add_normal_feedback(store: Store, workspace: Workspace, result_id: str, frames: np.ndarray) -> str:
    """Adds the answers of every object in `frames` to the model's normal answer counts and
    saves the result as a new model version; returns its name."""
    folder = workspace.result_dir(result_id)
    meta = result_meta(folder)
    if meta["model"]["kind"] == "saved":
        base = meta["model"]["name"]
        model, parent = workspace.load_model(base), workspace.model_meta(base)
    else:
        from vlavad.pipeline.model import FittedModel

        base = meta["name"]
        model, parent = FittedModel.load(folder / "model"), ModelMeta.model_validate(result_meta(folder / "model"))
    chosen = normal_answers(Pipeline(model.settings, cache_dir=store.cache), model, folder / meta["video"], frames)
    if chosen.empty:
        raise AppError("No described object in the frames marked as normal.")
    model.add_normal_answers(chosen)
    model.training = {**model.training, "feedback": [*model.training.get("feedback", []), {"video": meta["name"], "answers": int(len(chosen))}]}
    record = parent.model_copy(update={"created": now_iso(), "source": f"feedback on {base}"})
    return workspace.save_model(model, base, record, new_version=True, clips_from=folder / "normal")  # a result's model: its own clips


def build_tab(store: Store, session: gr.State, analysed):
    gr.Markdown(
        "Pick a video you analysed (or reopen a result by its id), mark the intervals that really were anomalous, and judge "
        "each detected event. Annotations are kept in this browser's workspace, per video, and survive restarts."
    )
    with gr.Row():
        result = gr.Dropdown(choices=[], label="Analysed video (this session)", scale=2)
        result_id = gr.Textbox(label="…or a saved result id", placeholder="shown in the Analyse summary", scale=2)
        open_btn = gr.Button("Open", scale=1)
    current = gr.State(None)  # the open result id
    auc = gr.Markdown()
    timeline = gr.Plot(label="Score, detected events (red) and your marked intervals (grey)")
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Anomalous intervals**")
            with gr.Row():
                start = gr.Number(label="start (s)", minimum=0)
                end = gr.Number(label="end (s)", minimum=0)
            with gr.Row():
                add_btn = gr.Button("Add interval", size="sm")
                from_events_btn = gr.Button("Add all detected events", size="sm")
                clear_btn = gr.Button("Clear", size="sm")
            intervals = gr.Dataframe(
                headers=INTERVAL_COLUMNS, value=pd.DataFrame(columns=INTERVAL_COLUMNS), interactive=True, label="Intervals (editable)"
            )
        with gr.Column():
            gr.Markdown("**Detected events**")
            events = gr.Dataframe(interactive=False, wrap=True, label="Events and your verdicts", value=verdicts_table([], {}))
            with gr.Row():
                event_no = gr.Number(label="Event #", precision=0, minimum=1)
                verdict = gr.Radio(list(VERDICTS), label="Verdict")
                label_btn = gr.Button("Label", size="sm")
    with gr.Row():
        save_btn = gr.Button("Save annotations", variant="primary")
        import_file = gr.File(label="Import annotations (JSON)", file_types=[".json"], type="filepath")
        export_file = gr.File(label="Export", interactive=False)
    feedback_btn = gr.Button("This is normal: add the false alarms to the normal statistics (new model version)")
    status = gr.Markdown()
    labels_state = gr.State({})  # event key -> verdict, while editing

    def session_choices(state):
        results = (state or {}).get("results", {})
        return gr.update(choices=[(label, rid) for rid, label in results.items()], value=(state or {}).get("current"))

    def table_intervals(table) -> list[list[float]]:
        table = pd.DataFrame(table, columns=INTERVAL_COLUMNS).replace("", np.nan).dropna(how="all")
        if len(table) > MAX_INTERVALS:
            raise AppError(f"At most {MAX_INTERVALS} intervals are kept per video.")
        try:
            return [[float(row[0]), float(row[1])] for row in table.itertuples(index=False)]
        except (TypeError, ValueError):
            raise AppError("Every interval needs a start and an end in seconds.") from None

    def opened(state, rid) -> tuple[Workspace, VideoResult, dict]:
        if not rid:
            raise AppError("Choose an analysed video in the list, or type a saved result id, then press Open.")
        workspace, _ = workspace_of(store, state)
        folder = workspace.result_dir(rid)
        return workspace, load_result(folder), result_meta(folder)

    def view(state, rid, rows, labels):
        """Everything the tab shows for a result and the annotations being edited."""
        _, saved, meta = opened(state, rid)
        data = clean_annotations({"intervals": rows, "event_labels": labels}, saved.info.duration_s)
        evs = [e.to_dict() for e in saved.events]
        table = verdicts_table(evs, data["event_labels"])
        fig = plots.timeline(saved.frames, evs, saved.threshold, title=meta["name"], marked=[tuple(i) for i in data["intervals"]])
        value = frame_auc(frame_labels(data["intervals"], saved.frames["time_s"].to_numpy()), saved.frames["fused"].to_numpy())
        text = f"**{meta['name']}** · {len(data['intervals'])} marked interval(s) · AUC of the model's score against your annotations: " + (
            f"**{value:.3f}**" if value is not None else "n/a (mark at least one interval, and leave some frames unmarked)"
        )
        return text, fig, pd.DataFrame(data["intervals"], columns=INTERVAL_COLUMNS), table, data["event_labels"]

    @user_errors
    def open_result(state, rid, chosen=None):
        """Opens the typed result id or, when none is typed, the video chosen in the list: after
        an analysis the list shows that video, and Open opens it."""
        rid = (rid or "").strip() or (chosen or "").strip()
        workspace, saved, meta = opened(state, rid)
        stored = load_annotations(workspace, meta["content_key"], saved.info.duration_s)
        return (rid, *view(state, rid, stored["intervals"], stored["event_labels"]))

    outputs = [auc, timeline, intervals, events, labels_state]

    @user_errors
    def add_interval(state, rid, rows, labels, s, e):
        if s is None or e is None:
            raise AppError("Enter a start and an end time in seconds.")
        return view(state, rid, [*table_intervals(rows), [s, e]], labels)

    @user_errors
    def add_events(state, rid, rows, labels):
        _, saved, _ = opened(state, rid)
        return view(state, rid, [*table_intervals(rows), *[[e.start_s, e.end_s] for e in saved.events]], labels)

    @user_errors
    def clear(state, rid, labels):
        return view(state, rid, [], labels)

    @user_errors
    def label_event(state, rid, rows, labels, number, choice):
        _, saved, _ = opened(state, rid)
        evs = [e.to_dict() for e in saved.events]
        if number is None or not 1 <= int(number) <= len(evs):
            raise AppError(f"Event # must be between 1 and {len(evs)}." if evs else "This video has no detected event.")
        if choice not in VERDICTS:
            raise AppError("Choose a verdict: true alarm or false alarm.")
        return view(state, rid, table_intervals(rows), {**labels, event_key(evs[int(number) - 1]): choice})

    def save_data(state, rid, data):
        workspace, saved, meta = opened(state, rid)
        data = clean_annotations(data, saved.info.duration_s)
        record = {"video": meta["name"], "fps": saved.info.fps, "frames": saved.info.frame_count, **data, "updated": now_iso()}
        path = workspace.save_annotations(meta["content_key"], record)
        export = store.publish({f"{download_stem(meta['name'])}-annotations.json": path})[0]
        return (
            *view(state, rid, data["intervals"], data["event_labels"]),
            export,
            f"Saved {len(data['intervals'])} interval(s) and {len(data['event_labels'])} verdict(s).",
        )

    @user_errors
    def save(state, rid, rows, labels):
        return save_data(state, rid, {"intervals": table_intervals(rows), "event_labels": labels})

    @user_errors
    def import_json(state, rid, file):
        if not file:
            return gr.skip()
        size_kb = Path(file).stat().st_size / 1024
        if size_kb > store.limits.max_import_kb:
            raise AppError(f"The annotations file is {size_kb:.0f} KB; at most {store.limits.max_import_kb:.0f} KB are read.")
        return save_data(state, rid, read_json_file(file, "annotations file", AppError))

    @user_errors
    def feedback(state, rid, labels):
        workspace, saved, _ = opened(state, rid)
        false = [e for e in saved.events if labels.get(event_key(e.to_dict())) == "false alarm"]
        if not false:
            raise AppError("Label at least one event as a false alarm first: its objects' answers are what becomes normal.")
        frames = np.concatenate([np.arange(e.start_frame, e.end_frame + 1) for e in false])
        name = add_normal_feedback(store, workspace, rid, frames)
        return f"Saved new model **{name}** (the old one is kept). Choose it under *A saved model* in Analyse."

    analysed.then(session_choices, session, result)
    result.select(open_result, [session, result], [current, *outputs], api_name=False)
    # The typed id comes first: API clients that send only an id keep working.
    open_btn.click(open_result, [session, result_id, result], [current, *outputs], api_name="open_result")
    add_btn.click(add_interval, [session, current, intervals, labels_state, start, end], outputs)
    from_events_btn.click(add_events, [session, current, intervals, labels_state], outputs)
    clear_btn.click(clear, [session, current, labels_state], outputs)
    label_btn.click(label_event, [session, current, intervals, labels_state, event_no, verdict], outputs)
    save_btn.click(save, [session, current, intervals, labels_state], [*outputs, export_file, status], api_name="save_annotations")
    import_file.upload(import_json, [session, current, import_file], [*outputs, export_file, status], api_name="import_annotations")
    feedback_event = feedback_btn.click(feedback, [session, current, labels_state], status, concurrency_limit=2, concurrency_id="analyse")
    return TabHooks(lambda state: [], [], saves=[feedback_event])
