"""The Annotate tab: mark what really was anomalous, judge the alarms, teach the model.

Annotations are stored per video *content* (annotations/<content key>.json), so they survive a
restart and reappear whenever the same video is analysed again. "This is normal" feedback never
edits a model: it writes a new version (`<model>-v2`, `-v3`, ...) beside the old one.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from vlavad.metrics import frame_auc
from vlavad.model import FittedModel
from vlavad.pipeline import Pipeline

from . import plots
from .analyse import events_table, load_analysis
from .state import AppDir, now_iso, read_json, user_errors, write_json

VERDICTS = ("true alarm", "false alarm")
INTERVAL_COLUMNS = ["start (s)", "end (s)"]


def annotation_path(app: AppDir, saved: dict) -> Path:
    return app.annotations / f"{saved['meta']['content_key']}.json"


def load_annotations(app: AppDir, saved: dict) -> dict:
    found = read_json(annotation_path(app, saved), None)
    return found or {"intervals": [], "event_labels": {}}


def clean_annotations(data: dict, duration_s: float) -> dict:
    """Checks intervals and verdicts (from the editor or an imported file)."""
    if not isinstance(data, dict):
        raise gr.Error("An annotation file holds a JSON object with 'intervals' and 'event_labels'.")
    intervals = []
    for item in data.get("intervals", []):
        try:
            start, end = float(item[0]), float(item[1])
        except (TypeError, ValueError, IndexError):
            raise gr.Error(f"An interval must be [start_s, end_s], got {item!r}.") from None
        if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end <= start or start > duration_s:
            raise gr.Error(f"Interval {start:g}–{end:g} s is not inside the video (0–{duration_s:.1f} s, start < end).")
        intervals.append([round(start, 3), round(min(end, duration_s), 3)])
    labels = {str(k): v for k, v in dict(data.get("event_labels", {})).items() if v in VERDICTS}
    return {"intervals": sorted(intervals), "event_labels": labels}


def frame_labels(intervals: list[list[float]], times: np.ndarray) -> np.ndarray:
    labels = np.zeros(len(times), dtype=np.int8)
    for start, end in intervals:
        labels[(times >= start) & (times <= end)] = 1
    return labels


def event_key(event: dict) -> str:
    return f"{event['start_frame']}-{event['end_frame']}"


@user_errors
def add_normal_feedback(app: AppDir, saved: dict, frames: np.ndarray) -> str:
    """Adds the answers of every object in `frames` to the model's normal answer counts and
    saves the result as a new model version; returns its name."""
    meta = saved["meta"]
    if meta["model"]["kind"] == "saved":
        source, base = app.model_path(meta["model"]["name"]), meta["model"]["name"]
    else:
        source, base = saved["folder"] / "model", meta["name"]
    model = FittedModel.load(source)
    pipeline = Pipeline(model.settings, prompts=model.prompts, cache_dir=app.cache)
    chosen = pipeline.normal_answers(model, saved["folder"] / meta["video"], frames)
    if chosen.empty:
        raise gr.Error("No described object in the frames marked as normal.")
    model.add_normal_answers(chosen)
    name = app.free_model_name(_slug(base), new_version=True)
    model.training = {**model.training, "feedback": [*model.training.get("feedback", []), {"video": meta["name"], "answers": int(len(chosen))}]}
    model.save(app.models / name)
    normal = meta.get("normal_videos", [])
    if meta["model"]["kind"] == "saved":
        normal = app.model_meta(base).get("normal_videos", normal)
    write_json(app.models / f"{name}.json", {"normal_videos": normal, "created": now_iso(), "parent": base, "feedback_from": meta["id"]})
    return name


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "-" for c in text)[:50].strip("-.") or "model"


def build_tab(app: AppDir, session: gr.State, analysed: gr.events.Dependency):
    gr.Markdown("Pick a video you analysed in this session (or reopen a saved result by its id), mark the intervals that "
                "really were anomalous, and judge each detected event. Annotations are saved per video and survive restarts.")
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
            intervals = gr.Dataframe(headers=INTERVAL_COLUMNS, value=pd.DataFrame(columns=INTERVAL_COLUMNS), interactive=True, label="Intervals (editable)")
        with gr.Column():
            gr.Markdown("**Detected events**")
            events = gr.Dataframe(interactive=False, wrap=True, label="Events and your verdicts")
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
        return [[row[0], row[1]] for row in table.itertuples(index=False)]

    def view(rid, rows, labels):
        """Everything the tab shows for a result and the annotations being edited."""
        saved = load_analysis(app, rid)
        frames = saved["frames"]
        duration = len(frames) / saved["summary"]["fps"]
        data = clean_annotations({"intervals": rows, "event_labels": labels}, duration)
        evs = saved["summary"]["events"]
        table = events_table(evs)
        table.insert(4, "verdict", [data["event_labels"].get(event_key(e), "") for e in evs])
        fig = plots.timeline(frames, evs, saved["summary"]["threshold"], saved["summary"]["fps"], title=saved["meta"]["name"],
                             marked=[tuple(i) for i in data["intervals"]])
        truth = frame_labels(data["intervals"], frames["time_s"].to_numpy())
        value = frame_auc(truth, frames["fused"].to_numpy())
        text = (f"**{saved['meta']['name']}** · {len(data['intervals'])} marked interval(s) · AUC of the model's score against your annotations: "
                + (f"**{value:.3f}**" if value is not None else "n/a (mark at least one interval, and leave some frames unmarked)"))
        return text, fig, pd.DataFrame(data["intervals"], columns=INTERVAL_COLUMNS), table, data["event_labels"]

    def open_result(rid):
        if not rid:
            raise gr.Error("Choose an analysed video or enter a result id.")
        saved = load_analysis(app, rid)
        stored = clean_annotations(load_annotations(app, saved), len(saved["frames"]) / saved["summary"]["fps"])
        return (rid, *view(rid, stored["intervals"], stored["event_labels"]))

    outputs = [auc, timeline, intervals, events, labels_state]

    def need(rid):
        if not rid:
            raise gr.Error("Open an analysed video first.")
        return rid

    def add_interval(rid, rows, labels, s, e):
        if s is None or e is None:
            raise gr.Error("Enter a start and an end time in seconds.")
        return view(need(rid), [*table_intervals(rows), [s, e]], labels)

    def add_events(rid, rows, labels):
        evs = load_analysis(app, need(rid))["summary"]["events"]
        return view(rid, [*table_intervals(rows), *[[e["start_s"], e["end_s"]] for e in evs]], labels)

    def label_event(rid, rows, labels, number, choice):
        evs = load_analysis(app, need(rid))["summary"]["events"]
        if number is None or not 1 <= int(number) <= len(evs):
            raise gr.Error(f"Event # must be between 1 and {len(evs)}." if evs else "This video has no detected event.")
        if choice not in VERDICTS:
            raise gr.Error("Choose a verdict: true alarm or false alarm.")
        return view(rid, table_intervals(rows), {**labels, event_key(evs[int(number) - 1]): choice})

    def save(rid, rows, labels):
        saved = load_analysis(app, need(rid))
        data = clean_annotations({"intervals": table_intervals(rows), "event_labels": labels}, len(saved["frames"]) / saved["summary"]["fps"])
        path = write_json(annotation_path(app, saved), {"video": saved["meta"]["name"], "content_key": saved["meta"]["content_key"],
                                                        "fps": saved["summary"]["fps"], "frames": len(saved["frames"]), **data, "updated": now_iso()})
        return (*view(rid, data["intervals"], data["event_labels"]), str(path), f"Saved {len(data['intervals'])} interval(s) and {len(data['event_labels'])} verdict(s).")

    def import_json(rid, file):
        if not file:
            return gr.skip()
        try:
            data = json.loads(Path(file).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise gr.Error("The imported file is not valid JSON.") from None
        saved = load_analysis(app, need(rid))
        data = clean_annotations(data, len(saved["frames"]) / saved["summary"]["fps"])
        return save(rid, data["intervals"], data["event_labels"])

    def feedback(rid, labels):
        saved = load_analysis(app, need(rid))
        false = [e for e in saved["summary"]["events"] if labels.get(event_key(e)) == "false alarm"]
        if not false:
            raise gr.Error("Label at least one event as a false alarm first: its objects' answers are what becomes normal.")
        frames = np.concatenate([np.arange(e["start_frame"], e["end_frame"] + 1) for e in false])
        name = add_normal_feedback(app, saved, frames)
        return f"Saved new model **{name}** (the old one is kept). Choose it under *A saved model* in Analyse."

    analysed.then(session_choices, session, result)
    result.select(open_result, result, [current, *outputs])
    open_btn.click(open_result, result_id, [current, *outputs], api_name="open_result")
    add_btn.click(add_interval, [current, intervals, labels_state, start, end], outputs)
    from_events_btn.click(add_events, [current, intervals, labels_state], outputs)
    clear_btn.click(lambda rid, labels: view(need(rid), [], labels), [current, labels_state], outputs)
    label_btn.click(label_event, [current, intervals, labels_state, event_no, verdict], outputs)
    save_btn.click(save, [current, intervals, labels_state], [*outputs, export_file, status], api_name="save_annotations")
    import_file.upload(import_json, [current, import_file], [*outputs, export_file, status])
    feedback_btn.click(feedback, [current, labels_state], status, concurrency_limit=2, concurrency_id="analyse")
