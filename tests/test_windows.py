"""The step table the temporal predictors read: each distinct embedding stored once."""

import numpy as np
import pytest

from vlavad.core.records import StepTable
from vlavad.scorers.temporal.numpy_s3m import D_CONV, D_STATE, NumpyS3M
from vlavad.scorers.temporal.windows import window_ids, window_starts


def captioned_tracks(rng, lengths, vocabulary=4, dim=6):
    """Tracks whose steps repeat a few embeddings, as captioned tracks do."""
    table = rng.normal(size=(vocabulary, dim)).astype(np.float32)
    return [table[rng.integers(0, vocabulary, size=n)] for n in lengths]


def test_the_table_holds_every_step_once_per_distinct_embedding_in_byte_order():
    tracks = captioned_tracks(np.random.default_rng(0), [5, 1, 12, 0, 7])
    steps = StepTable.from_sequences(tracks)
    flat = np.concatenate(tracks)
    np.testing.assert_array_equal(steps.rows(np.arange(len(flat))), flat)
    keys = [row.tobytes() for row in steps.vectors]
    assert keys == sorted(set(keys)) and len(keys) == len(np.unique(flat, axis=0))
    assert steps.lengths.tolist() == [5, 1, 12, 0, 7] and steps.starts.tolist() == [0, 5, 6, 18, 18]
    assert [len(part) for part in steps.split(np.arange(len(flat)))] == [5, 1, 12, 0, 7]


def test_equal_rows_of_a_given_table_become_one():
    vectors = np.array([[1, 2], [0, 5], [1, 2]], dtype=np.float32)  # rows 0 and 2 are equal
    steps = StepTable.from_codes(vectors, np.array([2, 0, 1, 2]), np.array([4]))
    np.testing.assert_array_equal(steps.vectors, [[0, 5], [1, 2]])
    assert steps.codes.tolist() == [1, 1, 0, 1]


def test_concatenated_tables_equal_one_table_of_all_the_sequences():
    rng = np.random.default_rng(1)
    parts = [captioned_tracks(rng, [4, 9]), captioned_tracks(rng, [6]), []]
    joined = StepTable.concat([StepTable.from_sequences(p) for p in parts])
    whole = StepTable.from_sequences([t for p in parts for t in p])
    for field in ("vectors", "codes", "lengths"):
        np.testing.assert_array_equal(getattr(joined, field), getattr(whole, field))


def test_windows_with_the_same_steps_share_an_id():
    tracks = [np.repeat(np.eye(3, dtype=np.float32)[[0]], 6, axis=0), np.eye(3, dtype=np.float32)[[0, 0, 0, 1, 2, 2]]]
    steps = StepTable.from_sequences(tracks)
    starts = window_starts(steps.lengths, steps.starts, 3)
    ids, id_starts = window_ids(steps, starts, 3)
    windows = steps.rows(starts[:, None] + np.arange(3))
    for i in range(len(starts)):
        for j in range(len(starts)):
            assert (ids[i] == ids[j]) == np.array_equal(windows[i], windows[j])
    np.testing.assert_array_equal(steps.rows(id_starts[ids][:, None] + np.arange(3)), windows)


@pytest.mark.parametrize("batch_size", [1, 3, 512])
def test_errors_from_a_table_equal_errors_from_arrays(batch_size):
    rng = np.random.default_rng(2)
    dim, past, future, d_model = 6, 3, 2, 8
    model = NumpyS3M(
        {"kind": "s3m", "dim": dim, "past": past, "future": future, "layers": 1, "d_model": d_model},
        random_s3m_weights(rng, dim, future, d_model),
    )
    tracks = captioned_tracks(rng, [2, 9, 14, 5], dim=dim)
    from vlavad.scorers.temporal.windows import step_errors

    from_arrays = step_errors(model, model, tracks, past, future, batch_size=batch_size)
    from_table = step_errors(model, model, StepTable.from_sequences(tracks), past, future, batch_size=batch_size)
    for a, b in zip(from_arrays, from_table, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(np.concatenate(from_table)).sum() > 10


def random_s3m_weights(rng, dim, future, d_model, d_state=D_STATE, d_conv=D_CONV):  # the sizes S3MPredictor builds
    d_inner, dt_rank = 2 * d_model, -(-d_model // 16)

    def r(*shape):
        return rng.normal(scale=0.3, size=shape).astype(np.float32)

    block = {
        "norm.weight": 1 + r(d_model),
        "in_proj.weight": r(2 * d_inner, d_model),
        "conv1d.weight": r(d_inner, 1, d_conv),
        "conv1d.bias": r(d_inner),
        "x_proj.weight": r(dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": r(d_inner, dt_rank),
        "dt_proj.bias": r(d_inner),
        "out_proj.weight": r(d_model, d_inner),
        "A_log": np.log(np.tile(np.arange(1, d_state + 1, dtype=np.float32), (d_inner, 1))),
        "D": np.ones(d_inner, np.float32),
    }
    return {
        "embed.weight": r(d_model, dim),
        "embed.bias": r(d_model),
        "norm.weight": 1 + r(d_model),
        "head.weight": r(future * dim, d_model),
        "head.bias": r(future * dim),
        **{f"blocks.0.{name}": value for name, value in block.items()},
    }
