"""The annotated frames: readable labels that never collide or leave the frame, real glyphs, and a
neutral style for objects that were not scored."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlavad.io.probe import probe
from vlavad.io.writer import BrowserVideoWriter
from vlavad.outputs.render import COLOURS, MAX_DRAWN_SIDE, NOT_SCORED, FrameAnnotator, font, render_frame, render_video, score_buckets, upscale


def crowded_frame():
    """Nine objects in a row along the right edge of a 360x240 frame, where labels must dodge."""
    rows = []
    for i in range(9):
        x = 250 + 12 * (i % 3)
        y = 20 + 24 * i
        rows.append(
            {
                "frame": 0,
                "track_id": i + 1,
                "x1": x,
                "y1": y,
                "x2": x + 30,
                "y2": y + 40,
                "caption": "moving fast (2.0× the usual speed here); looks like a wheeled vehicle (tricycle)",
                "object_score": [5.0, 1.0, -3.0, np.nan][i % 4],
            }
        )
    objects = pd.DataFrame(rows)
    frames = pd.DataFrame({"frame": [0], "time_s": [0.0], "fused": [5.0]})
    return objects, frames


def test_labels_stay_inside_the_frame_and_do_not_overlap():
    objects, frames = crowded_frame()
    image, layout = FrameAnnotator(objects, frames, threshold=2.0, scale=2).draw(np.zeros((240, 360, 3), np.uint8), 0)
    height, width = image.shape[:2]
    assert len(layout) == 9
    for label in layout:
        x1, y1, x2, y2 = label.rect
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    for a in layout:  # no two labels overlap: two would read as one blob
        for b in layout:
            if a is not b:
                assert min(a.rect[2], b.rect[2]) <= max(a.rect[0], b.rect[0]) or min(a.rect[3], b.rect[3]) <= max(a.rect[1], b.rect[1]), (a, b)
    assert {label.bucket for label in layout} == {0, 1, 2, 3}


def test_labels_with_no_free_spot_are_left_out_rather_than_merged():
    """Thirty anomalous objects on a small frame: more labels than room. Those placed are inside
    the frame and apart; the rest are left out, never drawn over another."""
    rows = [
        {
            "frame": 0,
            "track_id": i,
            "x1": 10 * i,
            "y1": 40,
            "x2": 10 * i + 8,
            "y2": 60,
            "caption": f"object {i} moving very fast",
            "object_score": 5.0,
        }
        for i in range(30)
    ]
    frames = pd.DataFrame({"frame": [0], "time_s": [0.0], "fused": [5.0]})
    image, layout = FrameAnnotator(pd.DataFrame(rows), frames, threshold=2.0).draw(np.zeros((120, 320, 3), np.uint8), 0)
    height, width = image.shape[:2]
    assert 0 < len(layout) < 30
    for a in layout:
        assert 0 <= a.rect[0] < a.rect[2] <= width and 0 <= a.rect[1] < a.rect[3] <= height
        for b in layout:
            if a is not b:
                assert min(a.rect[2], b.rect[2]) <= max(a.rect[0], b.rect[0]) or min(a.rect[3], b.rect[3]) <= max(a.rect[1], b.rect[1]), (a, b)


def test_captions_only_for_what_matters_and_a_reason_when_not_scored():
    objects, frames = crowded_frame()
    _, layout = FrameAnnotator(objects, frames, threshold=2.0).draw(np.zeros((240, 360, 3), np.uint8), 0)
    texts = {label.track_id: label.text for label in layout}
    assert texts[1].startswith("#1 moving fast (2.0×") and "…" in texts[1]  # anomalous: its caption
    assert texts[3] == "#3"  # usual: its id only
    assert texts[4] == f"#4 {NOT_SCORED}"
    assert list(score_buckets(np.array([np.nan, -5.0, 1.5, 3.0]), 2.0)) == [0, 1, 2, 3]
    assert COLOURS[0] == (150, 150, 150)


def test_the_font_has_the_glyphs_opencv_lacks():
    regular = font(14)
    question = np.asarray(regular.getmask("?"))
    for glyph in "×…":
        mask = np.asarray(regular.getmask(glyph))
        assert mask.any() and (mask.shape != question.shape or (mask != question).any())


def test_the_score_bar_says_in_words_how_far_from_the_alert_line_a_moment_is(monkeypatch):
    """A viewer has no scale for "score -0.57 (event above 1.82)": the bar's text says it."""
    from PIL import ImageDraw

    said = []
    real = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, text, *a, **k: said.append(text) or real(self, xy, text, *a, **k))
    frames = pd.DataFrame({"frame": range(4), "time_s": [0.0, 0.1, 0.2, 0.3], "fused": [-0.57, 1.5, 2.5, np.nan]})
    annotator = FrameAnnotator(pd.DataFrame(columns=["frame", "track_id", "x1", "y1", "x2", "y2", "caption", "object_score"]), frames, threshold=1.82)
    bars = []
    for index in range(4):
        said.clear()
        annotator.draw(np.zeros((240, 360, 3), np.uint8), index)
        bars.append(said[-1])
    assert bars == ["  0.0 s · as usual", "  0.1 s · close to the alert line", "  0.2 s · unusual: alert", "  0.3 s"]


def test_labels_drawn_once_and_pasted_are_the_labels_drawn_in_place(monkeypatch):
    """A label is drawn once as a tile and pasted on later frames: the same pixels as drawing its
    box and text straight on the frame, which is what happens when the text would spill out."""
    objects, frames = crowded_frame()
    objects = pd.concat([objects.assign(frame=f) for f in range(3)], ignore_index=True)
    frames = pd.DataFrame({"frame": range(3), "time_s": [0.0, 0.1, 0.2], "fused": [5.0, 4.0, 1.0]})
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240, 360, 3), dtype=np.uint8) for _ in range(3)]
    for scale in (1, 2):
        tiled = FrameAnnotator(objects, frames, threshold=2.0, scale=scale)
        drawn = [tiled.draw(image, i)[0] for i, image in enumerate(images)]
        assert tiled._tiles  # the pasted path ran
        in_place = FrameAnnotator(objects, frames, threshold=2.0, scale=scale)
        monkeypatch.setattr(in_place, "_text_box", lambda draw, text: (-1, -1, 0, 0))  # "spills over": always in place
        monkeypatch.setattr(in_place, "_place", lambda draw, text, box, placed, size, real=tiled._place: real(draw, text, box, placed, size))
        for i, image in enumerate(images):
            np.testing.assert_array_equal(in_place.draw(image, i)[0], drawn[i])


# --- how large a frame is drawn ---------------------------------------------------------------------


def test_small_frames_are_enlarged_for_their_captions_but_never_past_1920_px():
    assert (upscale(360, 240), upscale(320, 240), upscale(64, 48)) == (2, 3, 12)  # as they always were
    assert upscale(2, 2000) == 1  # was 360: 720x720,000 pixels, 1.5 GB a frame
    assert upscale(8, 256) == 7  # 56x1792
    assert upscale(3840, 2160) == upscale(1920, 1080) == 1
    for width, height in [(2, 2000), (8, 256), (100, 3000), (700, 50), (1000, 1000), (3840, 2160)]:
        assert max(width, height) * upscale(width, height) <= max(MAX_DRAWN_SIDE, width, height)


def test_a_thin_video_is_drawn_at_a_sane_size(tmp_path):
    clip = tmp_path / "thin.mp4"
    with BrowserVideoWriter(clip, 10, 8, 256) as writer:
        for i in range(3):
            writer.write(np.full((256, 8, 3), 60 * i, np.uint8))
    info = probe(clip)
    frames = pd.DataFrame({"frame": range(3), "time_s": [0.0, 0.1, 0.2], "fused": [0.0, 1.0, 3.0]})
    out = render_video(clip, tmp_path / "annotated.mp4", pd.DataFrame(), frames, 2.0, info)
    drawn = probe(out)
    assert (drawn.width, drawn.height, drawn.frame_count) == (56, 1792, 3)
    image, _ = render_frame(clip, 2, pd.DataFrame(), frames, 2.0)
    assert image.shape == (1792, 56, 3)
