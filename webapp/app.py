"""The Blocks layout, the backend banner and the launch configuration.

The banner says which tiers this server can run (the packaged one's fetch, while it runs) and,
once a visitor has a result, which backends that result used: its own record, not a default.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from vlavad.core.errors import VlavadError
from vlavad.outputs.report import CARD_STYLE
from vlavad.pipeline.backends import TIER_BACKENDS
from webapp import analyse, annotate, benchmark, live, prompt_pool, tiers
from webapp.benchmark import default_data_root
from webapp.store import Store
from webapp.tiers import APP_TIERS, default_tier, tier_choices, tiers_line

# How often an open page refreshes the banner and the tier labels while the packaged weights are
# fetched; it stops once they are here or have failed.
FETCH_REFRESH_S = 2.0


def scoped(css: str, scope: str) -> str:
    """`css` (plain rules, no @media) with every selector inside `scope`."""
    rules = [rule.split("{", 1) for rule in css.replace("\n", "").split("}") if "{" in rule]
    return "\n".join(", ".join(f"{scope} {sel.strip()}" for sel in selectors.split(",")) + "{" + body + "}" for selectors, body in rules)


# The event cards look as they do in the report (the same rules, kept to the cards' element),
# before the phone's overrides below.
CSS = (
    scoped(CARD_STYLE, "#event-cards")
    + scoped(CARD_STYLE, "#live-cards")
    + """
#banner {border-left: 4px solid #1f77b4; padding: 6px 12px; background: #f3f7fb; border-radius: 4px}
footer {display: none !important}
/* On a phone, the five tab names fit on one line instead of some hiding behind "..." (Gradio
   measures the names to decide which fit): smaller names, closer together, within the page (a
   tab bar wider than the page would scroll sideways); the events' cards stack. */
@media (max-width: 520px) {
  .gradio-container {padding-left: 6px !important; padding-right: 6px !important}
  .tab-container button {padding: 6px 3px !important; font-size: 11.5px !important}
  #event-cards .card, #live-cards .card {padding: 8px}
  #events [role=gridcell], #events [role=columnheader], #events [role=gridcell] *, #events [role=columnheader] * {
    padding-left: 2px !important; padding-right: 2px !important; font-size: 12px !important; word-break: normal !important}
}
"""
)


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


def banner(state: dict | None) -> str:
    """The visitor's last result's backends (as recorded with it), then the tiers here."""
    used = (state or {}).get("backends") if isinstance(state, dict) else None
    return (f"**This result used:** {used}  \n" if used else "") + tiers_line()


def fetch_running() -> bool:
    return tiers.PACKAGED.state() in ("fetching", "pending")


def build_app(app_dir: str | Path | None = None, data_root: str | Path | None = None, *, store: Store | None = None) -> gr.Blocks:
    """The app over the folder `app_dir` (or `store`); `launch` serves it and starts its pruning."""
    store = store or Store(app_dir)
    root = Path(data_root).resolve() if data_root else default_data_root()
    # Gradio keeps every upload, and a copy of every file a handler returns, in GRADIO_TEMP_DIR:
    # inside the app folder they count in its budget and are pruned with the rest. Gradio reads
    # it as each component is made and as the server starts, so it is set before both.
    os.environ["GRADIO_TEMP_DIR"] = str(store.uploads)
    with gr.Blocks(title="VLAVAD: explainable video anomaly detection") as demo:
        gr.Markdown("# VLAVAD · explainable video anomaly detection\nEvery alarm comes with the object captions that caused it.")
        banner_md = gr.Markdown(banner(None), elem_id="banner")
        refresher = gr.Timer(FETCH_REFRESH_S, active=fetch_running())
        # The visitor's key to their workspace, kept in their browser. BrowserState encrypts it
        # there with a secret that Gradio publishes in /config: what keeps workspaces apart is
        # the key itself, which only that browser holds. The session state holds it for the
        # handlers, with this session's result ids.
        visitor = gr.BrowserState(None, storage_key="vlavad-visitor", secret=store.browser_state_secret())
        session = gr.State({})
        with gr.Tabs():
            with gr.Tab("Analyse", id="analyse"):
                analyse_hooks, analysed, analyse_tier = analyse.build_tab(store, session, gpu=gpu)
            with gr.Tab("Benchmark", id="benchmark"):
                benchmark_hooks, benchmark_tier = benchmark.build_tab(store, session, root, gpu=gpu)
            with gr.Tab("Prompt pool", id="prompt-pool"):
                pool_hooks = prompt_pool.build_tab(store, session)
            with gr.Tab("Annotate", id="annotate"):
                annotate_hooks = annotate.build_tab(store, session, analysed)
            with gr.Tab("Live", id="live"):
                live_hooks, watches = live.build_tab(store, session)
        hooks = [analyse_hooks, benchmark_hooks, pool_hooks, annotate_hooks, live_hooks]
        lists = [c for hook in hooks for c in hook.components]

        def refresh_all(state):
            """Every list, from the visitor's workspace: what was saved after the app started, or
            in another tab, can be chosen everywhere."""
            return [update for hook in hooks for update in hook.refresh(state)]

        def on_load(key, state):
            """Gives a new visitor a key, then fills every list. A stored value that is not a key
            this app makes (a damaged or forged one) is replaced, as for a new visitor: the page
            works, and no folder is made until the visitor saves something."""
            if not Store.is_visitor_key(key):
                key = store.new_visitor_key()
            state = {**(state if isinstance(state, dict) else {}), "key": key}
            return [key, state, *refresh_all(state), *tier_updates(state, None, None)]

        def tier_updates(state, analyse_choice, benchmark_choice):
            """The banner, both tier choices' labels and the refresh timer, from the fetch's state.
            A page's choice is set when it loads (None: the best tier then), and again only if it
            is the packaged tier and that became unavailable; otherwise the visitor's choice stands."""
            best = default_tier()

            def choice(chosen, offered):
                keep = chosen is not None and not (chosen == "packaged" and best == "weight-free")
                return gr.update(choices=tier_choices(offered), **({} if keep else {"value": best}))

            return [
                gr.update(value=banner(state)),
                choice(analyse_choice, APP_TIERS),
                choice(benchmark_choice, tuple(TIER_BACKENDS)),
                gr.Timer(active=fetch_running()),
            ]

        tier_outputs = [banner_md, analyse_tier, benchmark_tier, refresher]
        demo.load(on_load, [visitor, session], [visitor, session, *lists, *tier_outputs])
        refresher.tick(tier_updates, [session, analyse_tier, benchmark_tier], tier_outputs, api_name=False, queue=False)

        def show_result_banner(state):
            return banner(state)

        analysed.then(show_result_banner, session, banner_md, api_name=False)
        for event in (e for hook in hooks for e in hook.saves):
            event.then(refresh_all, session, lists)

        def forget_watch(request: gr.Request):
            """A closed page's webcam scorer goes at once, rather than when it has been idle a while."""
            watches.forget(request.session_hash)

        demo.unload(forget_watch)
    # Per-event limits queue long runs rather than running many at once; the default covers the
    # light events (plots, tables). Past `max_size` waiting requests, a new one is told the
    # queue is full rather than held in memory.
    demo.queue(default_concurrency_limit=8, max_size=store.limits.max_queue)
    return demo


def launch(**overrides) -> None:
    """Builds the app and serves it on 127.0.0.1 (0.0.0.0 on Spaces, where SPACE_ID is set).
    A bad setting (e.g. VLAVAD_MAX_SIDE=big) stops it with one line."""
    try:
        store = Store()
        demo = build_app(store=store)
    except VlavadError as exc:
        raise SystemExit(f"error: {exc}") from None
    store.start_pruning()  # at once (in the background: a first prune after an upgrade may take seconds), then on a timer
    tiers.PACKAGED.start()  # the packaged weights, fetched in the background unless here (or VLAVAD_FETCH_WEIGHTS=0)
    port = int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860)
    demo.launch(
        server_name="0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1",
        server_port=port,
        theme=gr.themes.Soft(),
        css=CSS,
        js=PLOT_CLICK_JS,
        # Only the outbox, where each download is copied under a random folder name, is served
        # (with Gradio's own folder of uploads); never the app's state.
        allowed_paths=[str(store.outbox)],
        max_file_size=f"{int(store.limits.max_upload_mb)}mb",
        show_error=True,
        **overrides,
    )
