"""The Blocks layout, the backend banner and the launch configuration."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from vlavad.backends import backends_line, describe_backends, make_describer, make_detector, make_encoder
from vlavad.config import Settings

from . import analyse, annotate, benchmark, prompt_pool
from .state import AppDir, Limits, default_data_root

CSS = """
#banner {border-left: 4px solid #1f77b4; padding: 6px 12px; background: #f3f7fb; border-radius: 4px}
footer {display: none !important}
"""

# gr.Plot has no click event: this hook forwards a click on the timeline (whose fused trace
# carries the frame index as customdata) to the frame slider and presses "Show this frame".
PLOT_CLICK_JS = """
() => {
  const attach = () => {
    document.querySelectorAll('#timeline .js-plotly-plot').forEach((plot) => {
      if (plot.dataset.vlavadClick || typeof plot.on !== 'function') return;
      plot.dataset.vlavadClick = '1';
      plot.on('plotly_click', (event) => {
        const point = event.points.find((p) => p.customdata);
        const input = document.querySelector('#frame-slider input[type=number]');
        if (!point || !input) return;
        input.value = point.customdata[0];
        input.dispatchEvent(new Event('input', {bubbles: true}));
        input.dispatchEvent(new Event('change', {bubbles: true}));
        setTimeout(() => document.querySelector('#show-frame').click(), 150);
      });
    });
  };
  new MutationObserver(attach).observe(document.body, {childList: true, subtree: true});
}
"""

try:  # On Hugging Face ZeroGPU Spaces, GPU work must run inside functions decorated with spaces.GPU.
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn


def current_backends() -> dict:
    """The backends a run with default settings uses (the offline ones when no weights exist)."""
    settings = Settings()
    return describe_backends(make_detector(settings), make_describer(settings), make_encoder(settings))


def build_app(app_dir: str | Path | None = None, data_root: str | Path | None = None) -> gr.Blocks:
    app = AppDir(app_dir)
    root = Path(data_root).resolve() if data_root else default_data_root()
    with gr.Blocks(title="VLAVAD: explainable video anomaly detection") as demo:
        gr.Markdown("# VLAVAD · explainable video anomaly detection\nEvery alarm comes with the object captions that caused it.")
        gr.Markdown(f"**Running:** {backends_line(current_backends())}", elem_id="banner")
        session = gr.State({})  # this browser session's result ids: never shared between users
        with gr.Tabs():
            with gr.Tab("Analyse", id="analyse"):
                tab = analyse.build_tab(app, session, gpu=gpu)
            with gr.Tab("Benchmark", id="benchmark"):
                benchmark.build_tab(app, root, gpu=gpu)
            with gr.Tab("Prompt pool", id="prompt-pool"):
                prompt_pool.build_tab(app, tab["pool_name"])
            with gr.Tab("Annotate", id="annotate"):
                annotate.build_tab(app, session, tab["run_event"])
    return demo


def launch(**overrides) -> None:
    """Builds the app and serves it on 127.0.0.1 (0.0.0.0 on Spaces, where SPACE_ID is set)."""
    app = AppDir()
    demo = build_app()
    port = int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860)
    # Per-event limits queue long runs rather than running many at once; the default covers the
    # light events (plots, tables).
    demo.queue(default_concurrency_limit=8)
    demo.launch(
        server_name="0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1",
        server_port=port,
        theme=gr.themes.Soft(),
        css=CSS,
        js=PLOT_CLICK_JS,
        allowed_paths=[str(app.root)],
        max_file_size=f"{int(Limits().max_upload_mb)}mb",
        show_error=True,
        **overrides,
    )
