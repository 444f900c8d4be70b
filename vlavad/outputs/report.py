"""What a stakeholder reads: event cards and a standalone HTML report that opens offline.

An event card shows when the event happened, the full frame at its peak with the objects that
caused it boxed, a picture of each cause, its answers, and how rare they were in plain words
(`vlavad.scorers.explain`). The web app shows the same cards. The report is one file: pictures are small
JPEGs inside it, and the timeline is an inline SVG drawn here (a few kilobytes) rather than an
interactive chart whose JavaScript library would be inlined in every report or fetched from the
internet; the app keeps the interactive Plotly view. Everything user-controlled is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import cv2
import numpy as np

from vlavad.core.fileio import atomic_write_text
from vlavad.core.records import VideoResult, backends_line
from vlavad.io.decoder import iter_frames
from vlavad.scorers.explain import cause_in_words, headline

MAX_CARDS = 20  # events beyond these are listed in the table only
CAUSE_PICTURE_PX = 160  # each cause's crop, tall enough to see what the object is
STRIP_PX = 90  # the frames around the peak: five fit a phone's width
CARD_STYLE = """.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;margin:12px 0;display:flex;flex-wrap:wrap;gap:14px}
.card h3{margin:0 0 6px;font-size:1.05em;width:100%}.card .warn{color:#a15c00;background:#fff4e0;padding:4px 8px;border-radius:4px;width:100%}
.card img{border-radius:4px;max-width:100%}.cause{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start;max-width:560px}.cause>div{min-width:0;flex:1 1 200px}
.cause p{margin:2px 0;font-size:.92em}.cause .title{font-weight:600}.card .when{margin:0;width:100%}
.cause summary{cursor:pointer;color:#555;font-size:.92em}
.strip{display:flex;gap:4px;width:100%;overflow:hidden}.strip figure{margin:0;flex:1 1 0;min-width:0;text-align:center;font-size:.8em;color:#777}
.strip img{width:100%;height:auto}.strip span{display:block}"""

# With the viewport tag, a phone lays the page out at its own width (without it, at 980 px and all
# text tiny); pictures and the table shrink to the screen, and long words wrap.
STYLE = (
    """body{font-family:system-ui,sans-serif;font-size:16px;line-height:1.4;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;overflow-wrap:break-word}
table{border-collapse:collapse;width:100%}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.muted{color:#777}td:last-child{overflow-wrap:anywhere}svg{max-width:100%;height:auto}img{height:auto}.summary{font-size:1.15em;font-weight:600}
@media (max-width:600px){body{margin:1em auto;padding:0 .6em}td,th{padding:4px 5px}h1{font-size:1.4em}}"""
    + CARD_STYLE
)


def timeline_svg(
    times: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    events: list[dict],
    width: int = 1000,
    height: int = 220,
    normal_until_s: float | None = None,
) -> str:
    """The fused score over time as an SVG: the curve, the threshold (dashed), events (red bands)
    and, when given, the part declared normal (a blue band from the start)."""
    left, right, top, bottom = 48, 24, 10, 30  # the right margin holds half of the last time label
    plot_w, plot_h = width - left - right, height - top - bottom
    t0, t1 = (float(times[0]), float(times[-1])) if len(times) else (0.0, 1.0)
    t1 = t1 if t1 > t0 else t0 + 1.0
    finite = scores[np.isfinite(scores)] if len(scores) else np.zeros(1)
    low = min(float(finite.min()) if len(finite) else 0.0, threshold)
    high = max(float(finite.max()) if len(finite) else 1.0, threshold)
    pad = 0.08 * (high - low or 1.0)
    low, high = low - pad, high + pad

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return top + (high - v) / (high - low) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-label="anomaly score over time">']
    if normal_until_s is not None:
        end = x(min(max(normal_until_s, t0), t1))
        parts.append(f'<rect class="normal-band" x="{left}" y="{top}" width="{end - left:.1f}" height="{plot_h}" fill="#1f77b4" opacity="0.12"/>')
    for event in events:
        x0, x1 = x(event["start_s"]), x(event["end_s"])
        parts.append(f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 2):.1f}" height="{plot_h}" fill="#d62728" opacity="0.15"/>')
    parts.append(f'<line x1="{left}" y1="{y(threshold):.1f}" x2="{left + plot_w}" y2="{y(threshold):.1f}" stroke="#d62728" stroke-dasharray="5,4"/>')
    points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, scores) if np.isfinite(v))
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>')
    for tick in np.linspace(t0, t1, 6):
        parts.append(f'<text x="{x(tick):.1f}" y="{height - 8}" font-size="12" text-anchor="middle" fill="#555">{tick:.1f} s</text>')
    for value in (low + pad, threshold, high - pad):
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" font-size="11" text-anchor="end" fill="#555">{value:.1f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def event_cards(result: VideoResult, video: str | Path, normal_until_s: float | None = None) -> str:
    """HTML cards for the first `MAX_CARDS` events (one streaming pass over the video for their
    pictures). `normal_until_s`: the user declared the video normal up to there (its first
    seconds), so an event inside that part gets a warning."""
    events = result.events[:MAX_CARDS]
    strips = [_strip_frames(e.peak_frame, result.info.fps, result.info.frame_count) for e in events]
    wanted = {e.peak_frame for e in events} | {c.frame for e in events for c in e.causes} | {f for strip in strips for f in strip}
    frames = {}
    for index, frame in iter_frames(video, limits=result.info.limits) if wanted else ():
        if index in wanted:
            frames[index] = frame
        if index >= max(wanted):  # no need to decode the rest of the video
            break
    cards = []
    for number, (event, strip_frames) in enumerate(zip(events, strips), 1):
        peak = frames.get(event.peak_frame)
        # The headline first (what, and why it is unusual), then when and how strongly, then the
        # pictures, then the evidence folded for those who want it.
        title = f"{event.start_s:.1f}–{event.end_s:.1f} s · " + (headline(event.causes[0]) if event.causes else "Unusual activity, no single object")
        peak_s = result.frames["time_s"].iloc[event.peak_frame]
        parts = [
            f"<h3>{html.escape(title)}</h3>",
            f'<p class="muted when">Event {number} · strongest at {peak_s:.1f} s, score {event.peak_score:.2f} '
            f"(alerts above {result.threshold:.2f})</p>",
        ]
        if normal_until_s is not None and event.start_s < normal_until_s:
            parts.append(
                f'<div class="warn">This part was declared normal (the first {normal_until_s:g} s), yet it scored as unusual: check it, '
                "or choose a normal segment without it.</div>"
            )
        blamed = [c.track_id for c in event.causes]
        if peak is not None:
            parts.append(_img(_boxed(peak, _boxes_at(result, event.peak_frame, blamed)), 480, "the frame at the peak"))
        # The motion around the peak, for a reader who cannot play the video: a strip of frames
        # a second before to a second after, the blamed objects boxed.
        strip = [
            _img(_boxed(frames[f], _boxes_at(result, f, blamed)), STRIP_PX, f"{result.frames['time_s'].iloc[f]:.1f} s")
            + f"<span>{result.frames['time_s'].iloc[f]:.1f} s</span>"
            for f in strip_frames
            if f in frames
        ]
        if len(strip) > 1:
            parts.append('<div class="strip">' + "".join(f"<figure>{frame}</figure>" for frame in strip) + "</div>")
        for cause in event.causes:
            picture = _img(_crop(frames[cause.frame], cause.box), CAUSE_PICTURE_PX, f"object #{cause.track_id}") if cause.frame in frames else ""
            words = "".join(f"<p>{html.escape(line)}</p>" for line in cause_in_words(cause))
            parts.append(
                f'<div class="cause">{picture}<div><p class="title">#{cause.track_id} at {cause.time_s:.1f} s: {html.escape(headline(cause))}</p>'
                f"<details><summary>Evidence</summary>{words}</details></div></div>"
            )
        if not event.causes:
            parts.append("<p>No object was scored inside this event.</p>")
        cards.append(f'<div class="card">{"".join(parts)}</div>')
    if len(result.events) > MAX_CARDS:
        cards.append(f"<p class='muted'>{len(result.events) - MAX_CARDS} more event(s) are in the table above.</p>")
    return "".join(cards)


def _strip_frames(peak: int, fps: float, frame_count: int) -> list[int]:
    """The frames of an event's strip: from a second before its peak to a second after, every half second."""
    step = max(1, round(fps / 2))
    return sorted({min(max(peak + k * step, 0), frame_count - 1) for k in (-2, -1, 0, 1, 2)})


def _boxes_at(result: VideoResult, frame: int, track_ids: list[int]) -> list[tuple[int, list[float]]]:
    """(track id, box) of the given tracks where they are at `frame`."""
    rows = result.objects[(result.objects["frame"] == frame) & result.objects["track_id"].isin(track_ids)]
    return [(int(r.track_id), [r.x1, r.y1, r.x2, r.y2]) for r in rows.itertuples()]


def _boxed(frame: np.ndarray, boxes: list[tuple[int, list[float]]]) -> np.ndarray:
    image = frame.copy()
    thickness = max(2, frame.shape[0] // 160)
    for track_id, box in boxes:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), (40, 39, 214), thickness)
        cv2.putText(image, f"#{track_id}", (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 39, 214), 2, cv2.LINE_AA)
    return image


def _crop(frame: np.ndarray, box: list[float], margin: float = 0.3) -> np.ndarray:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    height, width = frame.shape[:2]
    x1, x2 = int(max(0, x1 - margin * w)), int(min(width, x2 + margin * w))
    y1, y2 = int(max(0, y1 - margin * h)), int(min(height, y2 + margin * h))
    return frame[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]


def _img(image_bgr: np.ndarray, height: int, alt: str) -> str:
    """An <img> holding a JPEG of the picture, scaled to `height` pixels (pixels stay sharp)."""
    scale = height / max(image_bgr.shape[0], 1)
    interpolation = cv2.INTER_NEAREST if scale > 2 else cv2.INTER_AREA
    resized = cv2.resize(image_bgr, (max(1, round(image_bgr.shape[1] * scale)), height), interpolation=interpolation)
    ok, jpeg = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}" alt="{html.escape(alt)}" height="{height}">' if ok else ""


def what_is_asked(labels: list[str]) -> str:
    """The selected questions as a stakeholder reads them: what a describer that cannot read
    measures ("speed; appearance"), the question itself from a vision-language model."""
    return "; ".join(re.sub(r"^.*\(measures: ([^)]+)\)$", r"\1", label) for label in labels) or "nothing"


def score_scale(threshold: float, quantile: float | None) -> str:
    """The sentence that says what a score means: scores are in standard units of the normal
    footage's scores (`vlavad.scorers.fusion.Normaliser`), and the threshold is one of their quantiles."""
    reached = f", a score only {100 * (1 - quantile):.2g}% of the normal footage's moments reached" if quantile else ""
    return f"Scores compare each moment with the normal footage, where a typical moment scores about 0; alerts start at {threshold:.2f}{reached}."


def summary_line(result: VideoResult) -> str:
    """The report's first line: how many alerts in how long, and when the biggest was."""
    events, duration = result.events, f"{result.info.duration_s:.0f} s"
    if not events:
        return f"No alert in {duration}: the anomaly score never crossed the event threshold."
    biggest = max(events, key=lambda e: e.peak_score)
    return f"{len(events)} alert{'s' if len(events) > 1 else ''} in {duration}; the biggest at {biggest.start_s:.0f}–{biggest.end_s:.0f} s."


def render_report(result: VideoResult, model_label: str, cards: str = "", normal_until_s: float | None = None) -> str:
    """The report's HTML for `result`; `model_label` says what was taken as normal; `cards` are
    the events' cards (`event_cards`); `normal_until_s`: where the part declared normal ends."""
    info, events = result.info, [e.to_dict() for e in result.events]
    rows = "".join(
        f"<tr><td>{i}</td><td>{e['start_s']:.1f} – {e['end_s']:.1f} s</td><td>{e['peak_score']:.2f}</td>"
        f"<td>{'<br>'.join(html.escape(r) for r in e['reasons']) or '—'}</td></tr>"
        for i, e in enumerate(events, 1)
    )
    table = (
        f"<table><tr><th>#</th><th>when</th><th>peak score</th><th>why</th></tr>{rows}</table>"
        if events
        else "<p>No event: the score never crossed the threshold.</p>"
    )
    svg = timeline_svg(result.frames["time_s"].to_numpy(), result.frames["fused"].to_numpy(), result.threshold, events, normal_until_s=normal_until_s)
    band = f"; blue band: the first {normal_until_s:g} s, declared normal" if normal_until_s is not None else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>VLAVAD report: {html.escape(result.name)}</title>
<style>{STYLE}</style></head><body>
<h1>Anomaly report: {html.escape(result.name)}</h1>
<p class="summary">{html.escape(summary_line(result))}</p>
<p>{info.frame_count} frames ({info.duration_s:.1f} s), {info.width}×{info.height}. Normal: {html.escape(model_label)}.<br>
Backends: {html.escape(backends_line(result.backends))}.<br>
What the model looks at in each object: {html.escape(what_is_asked(result.selected_questions))}.<br>
{html.escape(score_scale(result.threshold, result.threshold_quantile))}</p>
<h2>Timeline</h2>{svg}
<p class="muted">Blue line: the anomaly score; dashed red: the event threshold; red bands: events{band}.</p>
<h2>Events ({len(events)})</h2>{table}
{cards}
<p class="muted">Generated by vlavad.</p>
</body></html>"""


def write_report(result: VideoResult, path: str | Path, model_label: str, cards: str = "", normal_until_s: float | None = None) -> Path:
    atomic_write_text(path, render_report(result, model_label, cards, normal_until_s))
    return Path(path)
