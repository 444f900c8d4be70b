"""Optical-flow velocity of a box: the median flow vector, or its direction with a quantile of the point speeds."""

from collections import deque

import numpy as np
import pytest

from vlavad.track.flow import _row_quantile, box_velocity


def _shifted_pair(fast_px: float, slow_px: float, split: int) -> deque:
    """Two frames of smooth texture: columns left of `split` move right by `slow_px`, the rest by
    `fast_px` (a walker and a cyclist merged into one box)."""
    rng = np.random.default_rng(0)
    texture = rng.random((120, 200))
    texture = np.real(np.fft.ifft2(np.fft.fft2(texture) * np.exp(-0.002 * np.add.outer(np.arange(120) ** 2, np.arange(200) ** 2))))
    texture = ((texture - texture.min()) / np.ptp(texture) * 255).astype(np.float32)

    def shifted(dx):
        xs = np.arange(200) - dx
        return np.stack([np.interp(xs, np.arange(200), row) for row in texture])

    earlier = texture.astype(np.uint8)
    later = np.where(np.arange(200)[None, :] < split, shifted(slow_px), shifted(fast_px)).astype(np.uint8)
    return deque([earlier, later], maxlen=2)


@pytest.mark.parametrize("quantile, expected", [(None, 1.0), (0.5, 1.0), (0.75, 4.0)])
def test_median_follows_the_majority_and_upper_quantile_the_fast_part(quantile, expected):
    history = _shifted_pair(fast_px=4.0, slow_px=1.0, split=110)  # 3 of the 5 grid columns move slowly
    box = np.array([[40.0, 30.0, 160.0, 90.0]])
    velocity = box_velocity(history, box, foreground=None, grid=5, quantile=quantile)
    assert velocity[0, 0] == pytest.approx(expected, abs=0.4)
    assert abs(velocity[0, 1]) < 0.3  # the direction stays the median's: to the right


def test_box_without_enough_history_has_unknown_velocity():
    history = deque([np.zeros((50, 50), np.uint8)], maxlen=2)
    velocity = box_velocity(history, np.array([[5.0, 5.0, 20.0, 20.0]]), None, 5, 0.75)
    assert np.isnan(velocity).all()


def test_forward_backward_check_drops_points_that_cannot_be_followed():
    """Columns right of the split are replaced by fresh noise in the later frame (an occluder,
    or a patch ruined by compression): flow there is garbage that inflates an upper quantile,
    and the forward-backward check removes it."""
    history = _shifted_pair(fast_px=1.0, slow_px=1.0, split=110)
    rng = np.random.default_rng(1)
    history[1][:, 110:] = rng.integers(0, 256, (120, 90), dtype=np.uint8)
    box = np.array([[40.0, 30.0, 160.0, 90.0]])
    checked = box_velocity(history, box, None, grid=5, quantile=0.9, fb_max_px=0.5)
    assert checked[0, 0] == pytest.approx(1.0, abs=0.3)
    unchecked = box_velocity(history, box, None, grid=5, quantile=0.9)
    assert np.hypot(*unchecked[0]) > 2.0  # what the check protects against


def test_row_quantile_matches_numpy_on_ragged_rows():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(6, 25))
    values[rng.random((6, 25)) < 0.4] = np.nan
    values[5] = np.nan  # a box with no reliable point
    for q in (0.5, 0.75, 0.9):
        expected = [np.quantile(row[np.isfinite(row)], q) if np.isfinite(row).any() else np.nan for row in values]
        np.testing.assert_allclose(_row_quantile(values, q), expected, equal_nan=True)
