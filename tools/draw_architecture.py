"""Draws docs/architecture.svg: the stages a video goes through, the package that holds each, and
the record each hands to the next (declared in vlavad/core/records.py).

    python tools/draw_architecture.py            # writes docs/architecture.svg

Plain SVG from the standard library, so the picture is reviewed as text and redrawn when a stage
or a record changes. Coordinates are laid out by hand on a 1120 x 1250 canvas.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 1120, 1250
SANS = "Helvetica, Arial, sans-serif"
MONO = "Menlo, Consolas, 'DejaVu Sans Mono', monospace"

# Fill and border of each layer's boxes.
COLOURS = {
    "edge": ("#f4f4f4", "#8a8a8a"),
    "io": ("#e8eef7", "#5b7db1"),
    "track": ("#e6f4ea", "#3c8d5a"),
    "describe": ("#f1e9f7", "#8a5cb0"),
    "scorers": ("#fdf0e1", "#c9822b"),
    "outputs": ("#e3f3f3", "#2f8f8f"),
    "side": ("#ffffff", "#9a9a9a"),
}

MAIN_X, MAIN_W = 370, 380  # the main column
MAIN_MID = MAIN_X + MAIN_W // 2
SPA_X, TEMPORAL_X, SPLIT_W = 330, 580, 210  # the two scorers side by side
SPA_MID, TEMPORAL_MID = SPA_X + SPLIT_W // 2, TEMPORAL_X + SPLIT_W // 2
BOX_H = 66


def text(
    x: float,
    y: float,
    content: str,
    size: float = 13,
    *,
    weight: str = "normal",
    family: str = SANS,
    fill: str = "#222",
    anchor: str = "start",
    italic: bool = False,
) -> str:
    style = ' font-style="italic"' if italic else ""
    return (
        f'<text x="{x}" y="{y}" font-family="{family}" font-size="{size}" font-weight="{weight}" fill="{fill}" '
        f'text-anchor="{anchor}"{style}>{escape(content)}</text>'
    )


def stage(x: float, y: float, w: float, title: str, package: str, detail: str, layer: str) -> str:
    """A stage: what it does, the package that holds it, and its backends or parts."""
    fill, border = COLOURS[layer]
    mid = x + w / 2
    return "\n".join(
        [
            f'<rect x="{x}" y="{y}" width="{w}" height="{BOX_H}" rx="8" fill="{fill}" stroke="{border}" stroke-width="1.6"/>',
            text(mid, y + 22, title, 15.5, weight="bold", anchor="middle"),
            text(mid, y + 41, package, 12.5, family=MONO, fill=border, anchor="middle"),
            text(mid, y + 58, detail, 12, fill="#555", anchor="middle"),
        ]
    )


def pill(mid: float, y: float, w: float, label: str, sub: str = "") -> str:
    fill, border = COLOURS["edge"]
    parts = [f'<rect x="{mid - w / 2}" y="{y}" width="{w}" height="40" rx="20" fill="{fill}" stroke="{border}" stroke-width="1.4"/>']
    if sub:
        parts += [
            text(mid, y + 17, label, 13.5, weight="bold", anchor="middle"),
            text(mid, y + 32, sub, 11.5, family=MONO, fill="#666", anchor="middle"),
        ]
    else:
        parts.append(text(mid, y + 25, label, 13.5, weight="bold", anchor="middle"))
    return "\n".join(parts)


def note(x: float, y: float, w: float, h: float, title: str, package: str, lines: list[str], *, dashed: bool = True) -> str:
    """A side box: something the stages read or write that is not itself a stage."""
    fill, border = COLOURS["side"]
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    parts = [
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{border}" stroke-width="1.4"{dash}/>',
        text(x + 14, y + 24, title, 15, weight="bold"),
        text(x + 14, y + 43, package, 12, family=MONO, fill="#666"),
    ]
    for i, line in enumerate(lines):
        indent = 12 if line.startswith(" ") else 0  # a bullet's second line, under its words
        parts.append(text(x + 14 + indent, y + 66 + 18 * i, line.strip(), 12.5, fill="#333"))
    return "\n".join(parts)


def arrow(points: list[tuple[float, float]], *, dashed: bool = False, both: bool = False, colour: str = "#444") -> str:
    path = " ".join(f"{'M' if i == 0 else 'L'} {x} {y}" for i, (x, y) in enumerate(points))
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    start = ' marker-start="url(#head-back)"' if both else ""
    return f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}{start} marker-end="url(#head)"/>'


def record(x: float, y: float, lines: list[str]) -> str:
    """The record an arrow carries, in italics beside it."""
    return "\n".join(text(x, y + 15 * i, line, 12.5, fill="#7a3d00", italic=True) for i, line in enumerate(lines))


def draw() -> str:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        "<defs>",
        '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker>',
        '<marker id="head-back" viewBox="0 0 10 10" refX="1" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M 10 0 L 0 5 L 10 10 z" fill="#444"/></marker>',
        "</defs>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]

    # The main column: one stage per package, the record each hands on beside its arrow.
    parts.append(pill(MAIN_MID, 20, 300, "a video file or a folder of frames"))
    parts.append(arrow([(MAIN_MID, 60), (MAIN_MID, 108)]))
    rows = [
        (110, "read, check and decode", "vlavad/io", "header checked against the limits · probe · working frames", "io"),
        (226, "find the objects in each frame", "vlavad/detect", "blobs · NanoDet-m + blobs · YOLO11n", "track"),
        (342, "follow them and measure their motion", "vlavad/track", "ByteTrack · optical flow", "track"),
        (458, "answer questions about each object", "vlavad/describe", "motion · appearance (ImageNet) · BLIP-2 or any VLM", "describe"),
    ]
    for y, title, package, detail, layer in rows:
        parts.append(stage(MAIN_X, y, MAIN_W, title, package, detail, layer))
    handed_on = [
        (176, ["VideoInfo: size, rate, frame count, timestamps", "+ working-size frames"]),
        (292, ["Detections per frame: boxes, confidences, classes"]),
        (408, ["the tracks table (TRACK_COLUMNS):", "frame, track, box, velocity, class"]),
    ]
    for top, lines in handed_on:
        parts.append(arrow([(MAIN_MID, top), (MAIN_MID, top + 48)]))
        parts.append(record(MAIN_MID + 12, top + 22, lines))

    # The answers go to both scorers.
    junction = 562
    parts.append(f'<path d="M {MAIN_MID} 524 L {MAIN_MID} {junction}" stroke="#444" stroke-width="1.6" fill="none"/>')
    parts.append(f'<path d="M {SPA_MID} {junction} L {TEMPORAL_MID} {junction}" stroke="#444" stroke-width="1.6" fill="none"/>')
    parts.append(arrow([(SPA_MID, junction), (SPA_MID, 608)]))
    parts.append(arrow([(TEMPORAL_MID, junction), (TEMPORAL_MID, 608)]))
    parts.append(record(MAIN_MID + 12, 545, ["the answers table (ANSWER_COLUMNS): frame, track, question, answer"]))

    # Scoring against the fitted model.
    fill, border = COLOURS["scorers"]
    parts.append(
        f'<rect x="310" y="578" width="500" height="370" rx="12" fill="#fffaf3" stroke="{border}" stroke-width="1.2" stroke-dasharray="3 3"/>'
    )
    parts.append(text(322, 597, "scored against the fitted model", 12.5, weight="bold", fill=border))
    parts.append(stage(SPA_X, 610, SPLIT_W, "how rare is each answer?", "vlavad/scorers/spa.py", "SPA: the selected questions", "scorers"))
    parts.append(stage(TEMPORAL_X, 610, SPLIT_W, "answers → vectors", "vlavad/embed", "hashing · MiniLM · CLIP", "describe"))
    parts.append(arrow([(TEMPORAL_MID, 676), (TEMPORAL_MID, 734)]))
    parts.append(record(TEMPORAL_MID + 10, 702, ["StepTable: each distinct", "embedding once"]))
    parts.append(stage(TEMPORAL_X, 736, SPLIT_W, "what comes next?", "vlavad/scorers/temporal", "S3M: predict the next answers", "scorers"))
    parts.append(arrow([(SPA_MID, 676), (SPA_MID, 858)]))
    parts.append(record(SPA_MID + 10, 820, ["static score", "per object step"]))
    parts.append(arrow([(TEMPORAL_MID, 802), (TEMPORAL_MID, 858)]))
    parts.append(record(TEMPORAL_MID + 10, 820, ["temporal score", "per object step"]))
    parts.append(
        stage(
            MAIN_X,
            860,
            MAIN_W,
            "frame scores, events and their reasons",
            "vlavad/scorers/fusion.py · explain.py",
            "per-frame max · normalise · fuse (λ) · smooth (σ) · threshold",
            "scorers",
        )
    )

    # What comes out, and who uses it.
    parts.append(arrow([(MAIN_MID, 926), (MAIN_MID, 998)]))
    parts.append(record(MAIN_MID + 12, 968, ["VideoResult: the frames and objects tables,", "events with their causes"]))
    parts.append(
        stage(
            MAIN_X,
            1000,
            MAIN_W,
            "write what a person reads",
            "vlavad/outputs",
            "frames.csv · objects.csv · result.json · annotated.mp4 · report.html",
            "outputs",
        )
    )
    parts.append(f'<path d="M {MAIN_MID} 1066 L {MAIN_MID} 1088" stroke="#444" stroke-width="1.6" fill="none"/>')
    consumers = [
        (MAIN_MID - 175, "the command line", "vlavad/cli.py"),
        (MAIN_MID, "the web app", "webapp/"),
        (MAIN_MID + 175, "benchmarks", "vlavad/bench.py"),
    ]
    parts.append(f'<path d="M {consumers[0][0]} 1088 L {consumers[-1][0]} 1088" stroke="#444" stroke-width="1.6" fill="none"/>')
    for mid, label, sub in consumers:
        parts.append(arrow([(mid, 1088), (mid, 1112)]))
        parts.append(pill(mid, 1114, 160, label, sub))

    # Beside the stages: who runs them, what they cache, what a fit leaves behind.
    parts.append(
        note(
            20,
            110,
            285,
            216,
            "orchestration",
            "vlavad/pipeline",
            [
                "settings · backends · pipeline ·",
                "model · extract (Ray)",
                "",
                "Runs these stages for fit and for",
                "score. Decoding and detection run",
                "in a thread ahead of the rest;",
                "the per-video stages can run on",
                "Ray workers (vlavad extract).",
            ],
            dashed=False,
        )
    )
    parts.append(
        note(
            845,
            342,
            255,
            182,
            "stage cache",
            "vlavad/io/cache.py",
            [
                "tracks and answers, per video,",
                "keyed by its content and the",
                "settings of every stage so far:",
                "a change to a later setting",
                "(question pool, λ, σ) reuses them.",
            ],
        )
    )
    parts.append(arrow([(752, 376), (843, 392)], dashed=True, both=True, colour="#888"))
    parts.append(arrow([(752, 492), (843, 476)], dashed=True, both=True, colour="#888"))
    parts.append(
        note(
            20,
            610,
            270,
            318,
            "the fitted model",
            "vlavad/pipeline/model.py",
            [
                "model.json + predictor.safetensors",
                "",
                "vlavad fit runs the stages above on",
                "normal videos, and on the same",
                "videos played 3× faster, then:",
                "• SPA picks the questions that tell",
                "   them apart, and counts each",
                "   question's normal answers;",
                "• the S3M learns how answers",
                "   follow each other on a track;",
                "• the normaliser and the event",
                "   threshold come from the normal",
                "   videos' scores.",
            ],
        )
    )
    parts.append(arrow([(290, 779), (308, 779)], dashed=True, colour="#888"))

    parts.append(
        text(
            WIDTH / 2,
            1192,
            "Boxes are stages, each a package. Beside each arrow, in italics, what it carries: supervision's Detections, then the records of vlavad/core/records.py.",
            13,
            fill="#444",
            anchor="middle",
        )
    )
    parts.append(
        text(
            WIDTH / 2,
            1212,
            "Each layer imports only the layers under it; from the bottom: core, io, weights, detect, track, describe and embed, scorers, outputs, pipeline, bench, cli.",
            13,
            fill="#444",
            anchor="middle",
        )
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "architecture.svg")
    args = parser.parse_args(argv)
    args.out.write_text(draw(), encoding="utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
