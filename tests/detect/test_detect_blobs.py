"""The weight-free motion-blob detector's own arithmetic."""

import numpy as np
import pytest

from vlavad.detect.blobs import MotionBlobDetector, _median, _median_frame


@pytest.mark.parametrize("count", [1, 2, 3, 8, 49, 50])
@pytest.mark.parametrize("levels", [2, 7, 256])  # few levels: many ties at the middle
def test_the_background_is_the_exact_per_pixel_median(count, levels):
    frames = np.random.default_rng(count * levels).integers(0, levels, size=(count, 13, 21), dtype=np.uint8)
    frames[:, 0, 0] = 255  # the top value
    frames[:, 0, 1] = 0
    background = _median_frame(frames)
    assert background.dtype == np.float32
    np.testing.assert_array_equal(background, np.median(frames, axis=0).astype(np.float32))


def test_the_noise_median_is_numpys():
    values = np.random.default_rng(1).random((31, 40), dtype=np.float32)
    assert _median(values) == np.median(values)
    assert _median(values[:, :-1]) == np.median(values[:, :-1])


def test_a_blob_on_the_median_background_is_found():
    rng = np.random.default_rng(2)
    empty = rng.integers(90, 110, size=(120, 160), dtype=np.uint8)
    samples = [empty.copy() for _ in range(9)]
    samples[3][40:80, 50:70] = 250  # an object passing in a minority of the samples: not background
    frame = empty.copy()
    frame[30:90, 100:125] = 240
    detector = MotionBlobDetector()
    detector.begin(samples)
    found = detector.detect(None, frame)
    assert len(found) == 1
    np.testing.assert_allclose(found.xyxy[0], [100, 30, 125, 90], atol=2)


@pytest.mark.parametrize("height, width", [(240, 360), (600, 800)])  # 16-bit labels, then 32-bit
def test_every_separate_blob_is_found_at_any_size(height, width):
    empty = np.full((height, width), 100, dtype=np.uint8)
    frame = empty.copy()
    corners = [(y, x) for y in range(height // 8, height - height // 4, height // 4) for x in range(width // 10, width - width // 5, width // 5)]
    box_h, box_w = height // 6, width // 12
    for y, x in corners:
        frame[y : y + box_h, x : x + box_w] = 230
    detector = MotionBlobDetector()
    detector.begin([empty] * 5)
    found = detector.detect(None, frame)
    assert len(found) == len(corners) > 8
    expected = sorted([x, y, x + box_w, y + box_h] for y, x in corners)
    np.testing.assert_allclose(sorted(found.xyxy.tolist()), expected, atol=2)
