"""Plotly figures for the web app.

Shaded intervals (events, marked intervals, ground truth) are drawn as one filled trace per kind
rather than one shape each: Plotly lays out shapes one by one, so hundreds of them took a minute.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vlavad.scorers.fusion import runs

FUSED, STATIC, TEMPORAL, THRESHOLD = "#1f77b4", "#9467bd", "#17becf", "#d62728"
# The legend goes under the plot, where it covers no peak, also on a phone's narrow screen.
LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))


def bands(spans: list[tuple[float, float]], name: str, color: str, opacity: float) -> go.Scatter:
    """Vertical bands over the whole plot height as one trace: rectangles in paper y, joined by gaps."""
    xs, ys = [], []
    for start, end in spans:
        xs += [start, start, end, end, start, None]
        ys += [0, 1, 1, 0, 0, None]
    return go.Scatter(
        x=xs, y=ys, yaxis="y2", fill="toself", mode="none", fillcolor=color, opacity=opacity, name=name, hoverinfo="skip", showlegend=bool(spans)
    )


def _with_band_axis(fig: go.Figure) -> None:
    fig.update_layout(yaxis2=dict(range=[0, 1], overlaying="y", visible=False, fixedrange=True))


def timeline(
    frames: pd.DataFrame,
    events: list[dict],
    threshold: float,
    title: str = "",
    marked: list[tuple[float, float]] | None = None,
    normal_until_s: float | None = None,
) -> go.Figure:
    """Fused score per frame with its static (SPA) and temporal (S3M) parts, the event threshold,
    detected events shaded red, the part declared normal shaded blue and, when given, the user's
    marked intervals shaded grey."""
    fig = go.Figure()
    if normal_until_s is not None:
        fig.add_trace(bands([(0.0, normal_until_s)], "declared normal", "#1f77b4", 0.08))
    # Half a frame on each side, so that a one-frame event is visible.
    half = 0.5 * float(np.median(np.diff(frames["time_s"]))) if len(frames) > 1 else 0.05
    fig.add_trace(bands([(e["start_s"] - half, e["end_s"] + half) for e in events], "detected events", THRESHOLD, 0.12))
    fig.add_trace(bands([tuple(m) for m in marked or []], "your marked intervals", "grey", 0.25))
    captions = frames["top_caption"].fillna("no object").astype(str) if "top_caption" in frames else pd.Series([""] * len(frames))
    tracks = frames["top_track"] if "top_track" in frames else pd.Series([np.nan] * len(frames))
    who = [f"track {int(t)}: {html.escape(c)}" if pd.notna(t) else "no object" for t, c in zip(tracks, captions)]
    x = frames["time_s"]
    fig.add_trace(
        go.Scatter(
            x=x,
            y=frames["fused"],
            name="fused score",
            line=dict(color=FUSED, width=2.5),
            customdata=np.c_[frames["frame"], who],
            hovertemplate="t=%{x:.1f}s (frame %{customdata[0]})<br>score %{y:.2f}<br>%{customdata[1]}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x, y=frames["static"], name="static part: how rare its answers were", line=dict(color=STATIC, width=1, dash="dot"), visible="legendonly"
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=frames["temporal"],
            name="temporal part: how unexpected its next moves were",
            line=dict(color=TEMPORAL, width=1, dash="dot"),
            visible="legendonly",
        )
    )
    fig.add_hline(y=threshold, line=dict(color=THRESHOLD, dash="dash", width=1), annotation_text="event threshold", annotation_position="top left")
    _with_band_axis(fig)
    fig.update_layout(title=title, xaxis_title="time (s)", yaxis_title="anomaly score", hovermode="x unified", height=420, **LAYOUT)
    return fig


def roc(fpr: list[float], tpr: list[float], label: str) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=fpr, y=tpr, name=label, line=dict(color=FUSED, width=2.5)))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="chance", line=dict(color="grey", dash="dash", width=1)))
    fig.update_layout(
        title="ROC (all test frames)",
        xaxis_title="false positive rate",
        yaxis_title="true positive rate",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
        height=380,
        **LAYOUT,
    )
    return fig


def per_video_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]], max_videos: int = 12) -> go.Figure:
    """One small panel per test video: fused score, with the ground-truth anomalous frames shaded."""
    names = list(curves)[:max_videos]
    cols = 2 if len(names) > 1 else 1
    rows = max(1, -(-len(names) // cols))
    titles = [f"{n} (AUC {'n/a' if curves[n][2] is None else f'{curves[n][2]:.3f}'})" for n in names]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, vertical_spacing=0.12 if rows < 4 else 0.06)
    for i, name in enumerate(names):
        labels, scores, _ = curves[name]
        r, c = i // cols + 1, i % cols + 1
        truth = [(start - 0.5, end + 0.5) for start, end in runs(labels)]
        low, high = float(np.nanmin(scores)), float(np.nanmax(scores))
        xs = [x for s, e in truth for x in (s, s, e, e, None)]
        ys = [y for _ in truth for y in (low, high, high, low, None)]
        fig.add_trace(
            go.Scatter(x=xs, y=ys, fill="toself", mode="none", fillcolor=THRESHOLD, opacity=0.15, showlegend=False, hoverinfo="skip"), row=r, col=c
        )
        fig.add_trace(go.Scatter(y=scores, line=dict(color=FUSED, width=1.5), showlegend=False, name=name), row=r, col=c)
    fig.update_layout(
        title="Scores per test video (red: ground-truth anomaly)",
        height=max(300, 220 * rows),
        template="plotly_white",
        margin=dict(l=40, r=20, t=70, b=30),
    )
    fig.update_xaxes(title_text="frame", row=rows)
    return fig


def prompt_stats(stats: list[dict]) -> go.Figure:
    """Per question: how concentrated its normal answers are, and how well its rarity separates
    pseudo-anomalies from normal objects (what SPA selects on). Selected questions are highlighted."""
    questions = [s["question"] if len(s["question"]) <= 45 else s["question"][:44] + "…" for s in stats]
    questions = [("★ " if s["selected"] else "") + q for s, q in zip(stats, questions)]
    separation = [np.nan if s["separation"] is None else s["separation"] for s in stats]
    line = [2.5 if s["selected"] else 0 for s in stats]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            y=questions,
            x=[s["concentration"] for s in stats],
            orientation="h",
            name="concentration (top-k share)",
            marker=dict(color="#aec7e8", line=dict(color="black", width=line)),
        )
    )
    fig.add_trace(
        go.Bar(
            y=questions,
            x=separation,
            orientation="h",
            name="pseudo-anomaly separation (AUC)",
            marker=dict(color=["#d62728" if s["selected"] else "#ff9896" for s in stats], line=dict(color="black", width=line)),
        )
    )
    fig.update_layout(
        barmode="group",
        title="Prompt statistics (★ = selected by SPA)",
        xaxis_range=[0, 1.05],
        height=max(320, 70 * len(stats) + 120),
        yaxis=dict(autorange="reversed"),
        **LAYOUT,
    )
    return fig
