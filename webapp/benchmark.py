"""The Benchmark tab: fit on a dataset's normal videos, score its test videos, report frame AUC.

Datasets are offered only from the data root's listing and re-validated by name on submit, and
read confined to the data root, so no request can point the app at an arbitrary path or follow a
link out of it. Runs go to the visitor's workspace, complete or absent; their models can be used
in every tab. A run occupies one worker of its own queue (concurrency_id "benchmark"), so
analyses from other users keep running meanwhile.

A benchmark takes every core for minutes, so on a public host (a Hugging Face Space, or
`VLAVAD_PUBLIC=1`) only the operator runs one: with the key they set in `VLAVAD_OPERATOR_KEY`,
and nobody at all while it is unset (`BenchmarkAccess`).
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from vlavad.bench import fmt_auc, run_benchmark, save_benchmark
from vlavad.core.errors import VlavadError
from vlavad.core.records import backends_line
from vlavad.core.registry import highest_tier
from vlavad.core.schema import read_json_file
from vlavad.io.datasets import list_datasets, load_dataset
from vlavad.pipeline.backends import STAGES, TIER_BACKENDS, missing, resolve, uncached_weights
from vlavad.pipeline.pipeline import Pipeline
from vlavad.pipeline.settings import Settings, preset, preset_names
from webapp import plots, tiers
from webapp.common import TabHooks, choices_update, hide_paths, user_errors, workspace_of
from webapp.names import AppError
from webapp.store import Store
from webapp.tiers import default_tier, tier_choices
from webapp.workspace import Workspace

RUN_COLUMNS = ["run", "dataset", "preset", "micro AUC", "macro AUC", "time (s)", "backends"]
REPO = Path(__file__).resolve().parent.parent
MIN_OPERATOR_KEY = 16  # characters: a shorter key could be guessed through the API


def is_public_host() -> bool:
    """A Hugging Face Space (which sets SPACE_ID), or a server whose operator says it is public."""
    return bool(os.environ.get("SPACE_ID")) or os.environ.get("VLAVAD_PUBLIC", "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class BenchmarkAccess:
    """Who may start a benchmark: anyone when the app runs locally; on a public host whoever
    gives the operator's key, and nobody while the operator has set none."""

    public: bool
    operator_key: str = ""

    @classmethod
    def from_env(cls) -> BenchmarkAccess:
        key = os.environ.get("VLAVAD_OPERATOR_KEY", "")
        if key and len(key) < MIN_OPERATOR_KEY:
            raise AppError(f"VLAVAD_OPERATOR_KEY must be at least {MIN_OPERATOR_KEY} characters, not {len(key)}")
        return cls(is_public_host(), key)

    @property
    def needs_key(self) -> bool:
        return self.public and bool(self.operator_key)

    def check(self, given: object = None) -> None:
        """Raises AppError unless this request may run a benchmark."""
        if not self.public:
            return
        if not self.operator_key:
            raise AppError("Benchmarks are off on this public server; its operator turns them on with VLAVAD_OPERATOR_KEY.")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.operator_key.encode()):
            raise AppError("Benchmarks on this public server need the operator's key.")

    def note(self) -> str:
        """Why the tab asks for a key, or is off; empty when it runs locally."""
        if not self.public:
            return ""
        why = "a benchmark takes every core of this public server for minutes"
        if self.needs_key:
            return f"**Operator only:** {why}, so running one needs the operator's key."
        return f"**Benchmarks are off here:** {why}. Its operator turns them on by setting `VLAVAD_OPERATOR_KEY`."


def default_data_root() -> Path:
    """`VLAVAD_DATA_ROOT`, else the team's shared data folder next to the repo, else ./data."""
    if os.environ.get("VLAVAD_DATA_ROOT"):
        return Path(os.environ["VLAVAD_DATA_ROOT"]).resolve()
    shared = REPO.parent / "shared" / "data"
    return shared.resolve() if shared.is_dir() else (REPO / "data").resolve()


def dataset_names(data_root: Path) -> list[str]:
    try:
        return list_datasets(data_root)
    except VlavadError:
        return []  # no data folder: the tab says so instead of failing the whole app


def resolve_dataset(name: str, data_root: Path) -> Path:
    """The folder of a dataset the user picked: only names the listing offers, never a path."""
    name = (name or "").strip()
    if not name:
        raise AppError("Choose a dataset.")
    if name not in dataset_names(data_root):
        raise AppError(f"No dataset called {name[:40]!r} on this server.")
    return data_root / name


@user_errors
def benchmark_dataset(
    store: Store, workspace: Workspace, data_root: Path, dataset: str, preset_name: str, detector: str, describer: str, encoder: str, epochs: int
):
    """Runs and saves one benchmark; returns (BenchResult, run name)."""
    folder = resolve_dataset(dataset, data_root)
    if preset_name not in preset_names():
        raise AppError(f"Unknown preset {str(preset_name)[:40]!r}.")
    if not isinstance(epochs, (int, float)) or not 1 <= int(epochs) <= 12:
        raise AppError("S3M training epochs must be between 1 and 12.")
    settings = preset(preset_name).updated(
        **{"detect.backend": detector, "describe.backend": describer, "embed.backend": encoder, "temporal.epochs": int(epochs)}
    )
    # Refuse at once, naming the missing model, rather than after minutes of tracking.
    settings, _ = resolve(settings, "weight-free", explicit=list(STAGES))
    if uncached_weights(settings):
        tiers.PACKAGED.wait()  # the background fetch (or one started now): never a second one beside it
    data = load_dataset(folder, confine_to=data_root)
    result = run_benchmark(data, Pipeline(settings, cache_dir=store.cache))
    name = workspace.new_result_id(f"{data.name}-{preset_name}")
    save_benchmark(result, workspace.run_dir(name), replace=False)
    store.prune()
    return result, name


def preset_for(dataset: str | None) -> str:
    """The preset named after a dataset (ped2, avenue, shanghaitech), else "custom"."""
    return dataset if dataset in preset_names() else "custom"


def backend_choices(stage: str) -> list[tuple[str, str]]:
    """(label, name) of every backend of a stage and combination a tier uses; the label says its
    tier and, before anyone clicks, whether it can run here."""
    names = list(dict.fromkeys([*STAGES[stage].names(), *(tier[stage] for tier in TIER_BACKENDS.values())]))
    choices = []
    for name in names:
        problem = missing(Settings().updated(**{f"{stage}.backend": name}), stage)
        tier = highest_tier(STAGES[stage].get(part).tier for part in name.split("+"))
        choices.append((f"{name} · {tier}" + (" · unavailable here" if problem else ""), name))
    return choices


def availability_note() -> str:
    """Why each unavailable backend cannot run here, and what would fix it."""
    lines = []
    for stage in STAGES:
        for name in STAGES[stage].names():
            problem = missing(Settings().updated(**{f"{stage}.backend": name}), stage)
            if problem:
                lines.append(f"- **{name}** ({stage}): {hide_paths(str(problem))}")  # a weights folder is the server's business
    return ("Unavailable on this server:\n" + "\n".join(lines)) if lines else "Every backend can run here."


def runs_table(workspace: Workspace) -> pd.DataFrame:
    """This visitor's saved runs, newest first, for side-by-side comparison."""
    rows = []
    for name in workspace.run_names():
        meta = read_json_file(workspace.run_dir(name) / "results.json", "run record")
        timings = meta.get("timings", {})
        rows.append(
            {
                "run": name,
                "dataset": meta.get("dataset"),
                "preset": meta.get("settings", {}).get("preset"),
                "backends": backends_line(meta.get("backends", {})),
                "micro AUC": fmt_auc(meta["metrics"].get("micro_auc")),
                "macro AUC": fmt_auc(meta["metrics"].get("macro_auc")),
                "time (s)": round(timings.get("fit_s", 0) + timings.get("score_s", 0), 1),
            }
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def build_tab(store: Store, session: gr.State, data_root: Path, gpu=lambda fn: fn):
    access = BenchmarkAccess.from_env()
    if access.public:
        gr.Markdown(access.note(), elem_id="benchmark-access")
    names = dataset_names(data_root)
    gr.Markdown("Benchmark datasets found on this server" + ("." if names else ": **none found**; an operator sets `VLAVAD_DATA_ROOT`."))
    shown = names[0] if names else None
    with gr.Row():
        dataset = gr.Dropdown(choices=names, value=shown, label="Dataset", allow_custom_value=False)
        preset_box = gr.Dropdown(choices=preset_names(), value=preset_for(shown), label="Preset")
        epochs = gr.Slider(1, 12, value=preset(preset_for(shown)).temporal.epochs, step=1, label="S3M training epochs")
    best = TIER_BACKENDS[default_tier()]
    tier = gr.Radio(tier_choices(tuple(TIER_BACKENDS)), value=default_tier(), label="Backends: a tier, or one per stage below")
    with gr.Row():
        detector = gr.Dropdown(choices=backend_choices("detect"), value=best["detect"], label="Detector")
        describer = gr.Dropdown(choices=backend_choices("describe"), value=best["describe"], label="Describer")
        encoder = gr.Dropdown(choices=backend_choices("embed"), value=best["embed"], label="Text encoder")
    gr.Markdown(availability_note())
    key_box = gr.Textbox(label="Operator key", type="password") if access.needs_key else None
    run_btn = gr.Button("Run benchmark", variant="primary", interactive=not access.public or access.needs_key)
    summary = gr.Markdown()
    with gr.Row():
        roc = gr.Plot(label="ROC")
        per_video = gr.Dataframe(label="AUC per test video", interactive=False, value=pd.DataFrame(columns=["video", "AUC", "frames"]))
    curves = gr.Plot(label="Per-video scores")
    gr.Markdown("### Past runs")
    runs = gr.Dataframe(value=pd.DataFrame(columns=RUN_COLUMNS), label="Your saved runs (newest first)", interactive=False, wrap=True)

    def run(name, preset_name, det, desc, enc, n_epochs, state, progress=gr.Progress(track_tqdm=True)):
        workspace, state = workspace_of(store, state)
        progress(0, desc="loading the dataset")
        result, run_name = benchmark_dataset(store, workspace, data_root, name, preset_name, det, desc, enc, n_epochs)
        m = result.metrics
        text = (
            f"**{result.dataset}** · micro AUC **{fmt_auc(m.micro_auc)}** · macro AUC **{fmt_auc(m.macro_auc)}** "
            f"({m.macro_videos} videos, {len(m.macro_skipped)} skipped: one class only)  \n"
            f"Backends: {backends_line(result.backends)} · fit {result.timings['fit_s']} s, score {result.timings['score_s']} s · "
            f"saved as run `{run_name}`; its model is offered as `run:{run_name}` in the other tabs"
        )
        table = pd.DataFrame([{"video": k, "AUC": fmt_auc(v), "frames": result.results[k].info.frame_count} for k, v in m.per_video.items()])
        labels = load_dataset(resolve_dataset(name, data_root), confine_to=data_root).labels
        series = {k: (labels[k], result.results[k].frames["fused"].to_numpy(), m.per_video.get(k)) for k in result.results}
        return (
            text,
            plots.roc(m.roc_fpr, m.roc_tpr, f"micro AUC {fmt_auc(m.micro_auc)}"),
            table,
            plots.per_video_curves(series),
            runs_table(workspace),
            state,
        )

    inputs, handler = [dataset, preset_box, detector, describer, encoder, epochs, session], gpu(run)
    # On a public host the key is checked before anything else (a GPU included), whatever an API call sends.
    if access.needs_key:
        inputs.append(key_box)
        run_on_gpu = handler

        @user_errors
        def handler(name, preset_name, det, desc, enc, n_epochs, state, key, progress=gr.Progress(track_tqdm=True)):
            access.check(key)
            return run_on_gpu(name, preset_name, det, desc, enc, n_epochs, state, progress)

    elif access.public:

        @user_errors
        def handler(name, preset_name, det, desc, enc, n_epochs, state, progress=gr.Progress(track_tqdm=True)):
            access.check()

    run_event = run_btn.click(
        handler,
        inputs,
        [summary, roc, per_video, curves, runs, session],
        concurrency_limit=1,
        concurrency_id="benchmark",
        api_name="benchmark",
    )
    preset_box.change(lambda name: gr.update(value=preset(name).temporal.epochs), preset_box, epochs)
    tier.change(lambda name: tuple(gr.update(value=TIER_BACKENDS[name][stage]) for stage in STAGES), tier, [detector, describer, encoder])
    # The preset follows the dataset, the one shown when the page loads (above) and every change.
    dataset.change(lambda name: gr.update(value=preset_for(name)), dataset, preset_box)

    def refresh(state):
        workspace, state = workspace_of(store, state)
        return runs_table(workspace), choices_update(dataset_names(data_root))

    return TabHooks(refresh, [runs, dataset], saves=[run_event]), tier
