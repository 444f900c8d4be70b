"""The Prompt pool tab: edit the questions, re-run SPA's selection, save named pool versions.

Re-running selection asks the describer only the questions whose answers are not cached yet
(`Pipeline.answers` caches per prompt), on the normal videos the chosen model was fitted on.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from vlavad.cache import atomic_write_text
from vlavad.describe import MEASURES
from vlavad.model import FittedModel
from vlavad.pipeline import Pipeline
from vlavad.prompts import Prompt, pool_to_json, validate_pool

from . import plots
from .state import AppDir, check_name, user_errors

COLUMNS = ["question", "measures"]


def pool_table(prompts: list[Prompt]) -> pd.DataFrame:
    return pd.DataFrame([{"question": p.question, "measures": p.measures or ""} for p in prompts], columns=COLUMNS)


@user_errors
def table_pool(table: pd.DataFrame | None) -> list[Prompt]:
    """The edited table as a validated pool; blank rows (a half-added row) are dropped."""
    if table is None or len(table) == 0:
        return validate_pool([])
    prompts = []
    for row in table.fillna("").astype(str).itertuples(index=False):
        question, measures = row[0].strip(), row[1].strip()
        if not question and not measures:
            continue
        if measures and measures not in MEASURES:
            raise gr.Error(f"Unknown measure {measures!r} for {question!r}; the motion describer measures: {', '.join(MEASURES)}.")
        prompts.append(Prompt(question, measures or None))
    return validate_pool(prompts)


@user_errors
def reselect(app: AppDir, model_name: str, prompts: list[Prompt]) -> list[dict]:
    """SPA's selection over `prompts` on the model's normal videos; returns per-prompt stats.

    Only the new questions are answered: the rest come from the stage cache.
    """
    if not model_name:
        raise gr.Error("Choose a saved model: its normal videos are what the questions are asked about.")
    model = FittedModel.load(app.model_path(model_name))
    videos = app.model_meta(model_name).get("normal_videos", [])
    if not videos:
        raise gr.Error(f"Model {model_name!r} has no record of its normal videos (it was not fitted in this app).")
    stats = Pipeline(model.settings, prompts=prompts, cache_dir=app.cache).prompt_statistics(model, videos)
    return [s.to_dict() for s in stats]


def stats_table(stats: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([
        {"★": "★" if s["selected"] else "", "question": s["question"], "answers": s["answers"],
         "concentration": round(s["concentration"], 3), "separation": None if s["separation"] is None else round(s["separation"], 3),
         "commonest answers": "; ".join(f"{a} ({share:.0%})" for a, share in s["top_answers"][:3])}
        for s in stats
    ])


def build_tab(app: AppDir, analyse_pool: gr.Dropdown):
    gr.Markdown(
        "Edit the questions the describer answers about every object. The offline motion describer cannot read: "
        f"each question must name what it **measures** ({', '.join(MEASURES)}). Add a row at the bottom of the table, "
        "delete one by its number, then re-run SPA's selection to see which question separates unusual motion best."
    )
    with gr.Row():
        pool_name = gr.Dropdown(choices=app.pool_names(), value=app.pool_names()[0], label="Pool", scale=2)
        model_name = gr.Dropdown(choices=app.model_names(), value=(app.model_names() or [None])[0], label="Model whose normal videos to use", scale=2)
    table = gr.Dataframe(value=pool_table(app.load_pool(None)), headers=COLUMNS, interactive=True, show_row_numbers=True,
                         label="Prompt pool (editable)", wrap=True)
    with gr.Row():
        add_btn = gr.Button("Add a row", size="sm")
        delete_no = gr.Number(value=None, label="Row # to delete", precision=0, minimum=1)
        delete_btn = gr.Button("Delete row", size="sm")
    with gr.Row():
        rerun_btn = gr.Button("Validate and re-run selection", variant="primary")
        save_name = gr.Textbox(label="Save pool as", placeholder="e.g. motion-no-shape")
        save_btn = gr.Button("Save pool version")
    status = gr.Markdown()
    chart = gr.Plot(label="Per-prompt statistics")
    # Fixed widths: left to itself the table squeezes the number columns until their headers
    # wrap one letter per line.
    stats = gr.Dataframe(label="Per-prompt statistics", interactive=False, wrap=True,
                         column_widths=["4%", "26%", "10%", "14%", "12%", "34%"])

    def load(name):
        return pool_table(app.load_pool(name))

    def add_row(current):
        current = pd.DataFrame(current, columns=COLUMNS)
        return pd.concat([current, pd.DataFrame([{"question": "", "measures": "speed"}])], ignore_index=True)

    def delete_row(current, number):
        current = pd.DataFrame(current, columns=COLUMNS)
        if number is None or not 1 <= int(number) <= len(current):
            raise gr.Error(f"Row # must be between 1 and {len(current)}.")
        return current.drop(index=current.index[int(number) - 1]).reset_index(drop=True)

    def rerun(current, model, progress=gr.Progress(track_tqdm=True)):
        prompts = table_pool(current)
        result = reselect(app, model, prompts)
        chosen = [s["question"] for s in result if s["selected"]]
        return f"Valid pool of {len(prompts)} question(s). SPA selects: **{'; '.join(chosen) or 'none'}**.", plots.prompt_stats(result), stats_table(result)

    def save(current, name):
        prompts = table_pool(current)
        name = check_name(name, "pool")
        atomic_write_text(app.pools / f"{name}.json", pool_to_json(prompts, note="saved from the web app"))
        choices = app.pool_names()
        return f"Saved pool **{name}** ({len(prompts)} questions).", gr.update(choices=choices, value=name), gr.update(choices=choices)

    pool_name.change(load, pool_name, table)
    add_btn.click(add_row, table, table)
    delete_btn.click(delete_row, [table, delete_no], table)
    rerun_btn.click(rerun, [table, model_name], [status, chart, stats], concurrency_limit=2, concurrency_id="analyse", api_name="reselect")
    save_btn.click(save, [table, save_name], [status, pool_name, analyse_pool], api_name="save_pool")
    # Models saved elsewhere (Analyse, Annotate) appear when the user comes to this tab's dropdown.
    model_name.focus(lambda: gr.update(choices=app.model_names()), None, model_name)
