"""The Prompt pool tab: edit the questions, re-run SPA's selection, save named pool versions.

Re-running selection asks the describer only the questions whose answers are not cached yet
(`Pipeline.answers` caches per prompt), on the normal videos the chosen model was fitted on.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from vlavad.describe.motion import MEASURES
from vlavad.describe.prompts import Prompt, bundled_pool, validate_pool
from vlavad.io.writer import write_clip
from vlavad.pipeline.pipeline import Pipeline
from vlavad.pipeline.revise import prompt_statistics
from vlavad.pipeline.settings import preset
from webapp import plots
from webapp.common import EXAMPLE_VIDEO, TabHooks, choices_update, user_errors, workspace_of
from webapp.names import BUNDLED_POOL, AppError
from webapp.store import Store
from webapp.workspace import Workspace

COLUMNS = ["question", "measures"]
EXAMPLE_MODEL = "the bundled example (its first 5 s)"  # works on a first visit, before any model is saved
_EXAMPLE: dict = {}


def pool_table(prompts: list[Prompt]) -> pd.DataFrame:
    return pd.DataFrame([{"question": p.question, "measures": p.measures or ""} for p in prompts], columns=COLUMNS)


@user_errors
def table_pool(table: pd.DataFrame | None) -> list[Prompt]:
    """The edited table as a validated pool; blank rows (a half-added row) are dropped."""
    if table is None or len(table) == 0:
        return validate_pool([])
    prompts = []
    for row in pd.DataFrame(table).fillna("").astype(str).itertuples(index=False):
        question, measures = row[0].strip(), row[1].strip()
        if not question and not measures:
            continue
        if measures and measures not in MEASURES:
            raise AppError(f"Unknown measure {measures[:20]!r} for {question[:40]!r}; the motion describer measures: {', '.join(MEASURES)}.")
        prompts.append(Prompt(question, measures or None))
    return validate_pool(prompts)


@user_errors
def reselect(store: Store, workspace: Workspace, model_name: str, prompts: list[Prompt]) -> list[dict]:
    """SPA's selection over `prompts` on the model's normal videos; returns per-prompt stats.

    Only the new questions are answered: the rest come from the stage cache.
    """
    if not model_name:
        raise AppError("Choose a model: its normal videos are what the questions are asked about.")
    model, videos = example_model(store) if model_name == EXAMPLE_MODEL else (workspace.load_model(model_name), workspace.normal_videos(model_name))
    if not videos:
        raise AppError(f"Model {model_name!r} has no record of its normal videos (it was not fitted in this app).")
    stats = prompt_statistics(Pipeline(model.settings, cache_dir=store.cache), model, videos, prompts)
    return [s.to_dict() for s in stats]


STATS_COLUMNS = ["★", "question", "answers", "concentration", "separation", "commonest answers"]


def example_model(store: Store):
    """A model of the bundled example's first 5 s (no S3M: only SPA's statistics need it), made
    once per process, and its normal clip."""
    if "model" not in _EXAMPLE:
        clip = store.root / "clips" / "example-first-5s.mp4"
        if not clip.exists():
            write_clip(EXAMPLE_VIDEO, clip, frames=50)
        settings = preset("custom").updated(**{"temporal.epochs": 0})
        _EXAMPLE["model"] = (Pipeline(settings, cache_dir=store.cache, show_progress=False).fit([clip]), [clip])
    return _EXAMPLE["model"]


def stats_table(stats: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        columns=STATS_COLUMNS,
        data=[
            {
                "★": "★" if s["selected"] else "",
                "question": s["question"],
                "answers": s["answers"],
                "concentration": round(s["concentration"], 3),
                "separation": None if s["separation"] is None else round(s["separation"], 3),
                "commonest answers": "; ".join(f"{a} ({share:.0%})" for a, share in s["top_answers"][:3]),
            }
            for s in stats
        ],
    )


def build_tab(store: Store, session: gr.State):
    gr.Markdown(
        "Edit the questions the describer answers about every object. The offline motion describer cannot read: "
        f"each question must name what it **measures** ({', '.join(MEASURES)}). Add a row at the bottom of the table, "
        "delete one by its number, then re-run SPA's selection to see which question separates unusual motion best. "
        "A blank separation is a question a faster clip cannot change (how an object looks): it is kept only if normal objects agree on its answer."
    )
    with gr.Row():
        pool_name = gr.Dropdown(choices=[BUNDLED_POOL], value=BUNDLED_POOL, label="Pool", scale=2, allow_custom_value=True)
        model_name = gr.Dropdown(
            choices=[EXAMPLE_MODEL], value=EXAMPLE_MODEL, label="Model whose normal videos to use", scale=2, allow_custom_value=True
        )
    table = gr.Dataframe(
        value=pool_table(bundled_pool("motion")), headers=COLUMNS, interactive=True, show_row_numbers=True, label="Prompt pool (editable)", wrap=True
    )
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
    stats = gr.Dataframe(
        label="Per-prompt statistics", interactive=False, wrap=True, value=stats_table([]), column_widths=["4%", "26%", "10%", "14%", "12%", "34%"]
    )

    @user_errors
    def load(name, state):
        workspace, _ = workspace_of(store, state)
        return pool_table(workspace.load_pool(name))

    def add_row(current):
        current = pd.DataFrame(current, columns=COLUMNS)
        return pd.concat([current, pd.DataFrame([{"question": "", "measures": "speed"}])], ignore_index=True)

    @user_errors
    def delete_row(current, number):
        current = pd.DataFrame(current, columns=COLUMNS)
        if number is None or not 1 <= int(number) <= len(current):
            raise AppError(f"Row # must be between 1 and {len(current)}." if len(current) else "The pool is empty.")
        return current.drop(index=current.index[int(number) - 1]).reset_index(drop=True)

    def rerun(current, model, state, progress=gr.Progress(track_tqdm=True)):
        workspace, state = workspace_of(store, state)
        prompts = table_pool(current)
        result = reselect(store, workspace, model, prompts)
        chosen = [s["question"] for s in result if s["selected"]]
        return (
            f"Valid pool of {len(prompts)} question(s). SPA selects: **{'; '.join(chosen) or 'none'}**.",
            plots.prompt_stats(result),
            stats_table(result),
        )

    @user_errors
    def save(current, name, state):
        workspace, state = workspace_of(store, state)
        prompts = table_pool(current)
        name = workspace.save_pool(name, prompts)
        return f"Saved pool **{name}** ({len(prompts)} questions).", gr.update(choices=workspace.pool_names(), value=name), state

    pool_name.change(load, [pool_name, session], table)
    add_btn.click(add_row, table, table)
    delete_btn.click(delete_row, [table, delete_no], table)
    rerun_btn.click(rerun, [table, model_name, session], [status, chart, stats], concurrency_limit=2, concurrency_id="analyse", api_name="reselect")
    save_event = save_btn.click(save, [table, save_name, session], [status, pool_name, session], api_name="save_pool")

    def refresh(state):
        workspace, _ = workspace_of(store, state)
        return choices_update(workspace.pool_names()), choices_update([EXAMPLE_MODEL, *workspace.model_names()])

    return TabHooks(refresh, [pool_name, model_name], saves=[save_event])
