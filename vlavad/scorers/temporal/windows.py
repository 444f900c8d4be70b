"""Windows over embedding sequences: what the temporal predictors read, and their per-step errors.

Every tracked object yields one embedding per step. A predictor reads a window of the last
`past` steps and predicts the next `future`. Training (`vlavad.scorers.temporal.training`) and
scoring (here, for any predictor, PyTorch or NumPy) work on a `StepTable`, every step of every
sequence as a row of a small table of distinct embeddings, and on the start indices of windows
in the concatenated steps, so a window's embeddings are gathered only when its batch needs them:
200k windows of 12x512 float32 would take 5 GB if materialised.

This module needs NumPy only, so scoring with the NumPy S3M never imports PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from vlavad.core.errors import ModelError
from vlavad.core.records import StepTable, as_step_table, concat_sequences


class WindowShape(Protocol):
    """What a predictor reads and writes: `past` steps of `dim` in, `future` steps out."""

    dim: int
    past: int
    future: int


def window_starts(lengths: np.ndarray, seq_starts: np.ndarray, span: int) -> np.ndarray:
    """Flat start index of every window of `span` steps that lies inside one sequence."""
    counts = np.maximum(lengths - span + 1, 0)
    first = np.repeat(seq_starts, counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return first + within


def make_windows(sequences: Sequence[np.ndarray], past: int, future: int) -> tuple[np.ndarray, np.ndarray]:
    """All (past -> future) training pairs: X (n, past, D), Y (n, future, D), float32.

    A sequence shorter than past + future gives no window.
    """
    if not sequences:
        return np.zeros((0, past, 0), np.float32), np.zeros((0, future, 0), np.float32)
    flat, seq_starts, lengths = concat_sequences(sequences)
    idx = window_starts(lengths, seq_starts, past + future)[:, None] + np.arange(past + future)
    windows = flat[idx]
    return windows[:, :past], windows[:, past:]


def check_fit(model: WindowShape, steps: StepTable, past: int, future: int) -> None:
    """A model trained for other embeddings or another window cannot be used (or trained)."""
    if steps.dim != model.dim:
        raise ModelError(
            f"embeddings have {steps.dim} dimensions but the temporal model expects {model.dim}; was it trained with another text encoder?"
        )
    if (past, future) != (model.past, model.future):
        raise ModelError(f"the temporal model predicts {model.past} -> {model.future} steps, not {past} -> {future}")


def window_ids(steps: StepTable, starts: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """An id per window, shared by exactly the windows whose `span` steps are identical, and
    for each id (0, 1, ...) the start of one window that has it.

    A track's caption rarely changes, so most windows are the same few embeddings repeated:
    Ped2's 15k training windows hold 2.7k distinct ones, and a random batch of 1024 about 400.
    Identical windows give identical predictions, losses and gradients, so each one is run
    through the model once and counted as often as it occurs.
    """
    keys = steps.codes[starts[:, None] + np.arange(span)]
    _, first, ids = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return ids.reshape(-1), starts[first]


def step_errors(
    predict: Callable[[np.ndarray], np.ndarray],
    model: WindowShape,
    sequences: StepTable | Sequence[np.ndarray],
    past: int,
    future: int,
    *,
    batch_size: int = 2048,
) -> list[np.ndarray]:
    """Per-step prediction errors of many tracks, all windows batched together; `predict` is
    `model`'s forward pass, from windows (n, past, D) to predictions (n, future, D), float32.

    The window ending at step t-1 predicts steps t .. t+future-1; a predicted step's error is
    the mean squared error over D, and a step predicted by several windows gets the mean of
    them. Near the end of a track a window predicts past the last step: only the steps that
    exist are compared, so the tail is scored too. Steps no window predicts (the first `past`)
    are NaN.

    Windows are taken `batch_size` at a time, across tracks and grouped by their input, and
    each distinct input in a batch is predicted once (see `window_ids`): the 15k windows of
    Ped2's training tracks have 1.9k distinct inputs.
    """
    table = as_step_table(sequences)
    if not len(table.lengths):
        return []
    lengths, seq_starts = table.lengths, table.starts
    per_step = np.full(len(table.codes), np.nan)
    # Every window whose first predicted step exists: span past + 1.
    starts = window_starts(lengths, seq_starts, past + 1)
    if len(starts):
        check_fit(model, table, past, future)
        steps = starts[:, None] + past + np.arange(future)  # (n, future) step indices
        last = np.repeat(seq_starts + lengths - 1, lengths)[starts]  # end of each one's track
        valid = steps <= last[:, None]
        targets = np.minimum(steps, last[:, None])  # masked below
        ids, id_starts = window_ids(table, starts, past)
        by_input = np.argsort(ids, kind="stable")  # equal inputs side by side
        offsets = np.arange(past)
        errors = np.empty((len(starts), future))
        for first in range(0, len(by_input), batch_size):
            rows = by_input[first : first + batch_size]
            distinct, inverse = np.unique(ids[rows], return_inverse=True)
            predicted = predict(table.rows(id_starts[distinct][:, None] + offsets))[inverse]
            if not np.isfinite(predicted).all():  # finite weights can still overflow float32 together
                raise ModelError("The temporal model predicts NaN or infinite values: its weights are out of range; fit the model again.")
            errors[rows] = np.square(predicted - table.rows(targets[rows])).mean(axis=-1)
        sums = np.bincount(steps[valid], weights=errors[valid], minlength=len(per_step))
        counts = np.bincount(steps[valid], minlength=len(per_step))
        predicted = counts > 0
        per_step[predicted] = sums[predicted] / counts[predicted]
    return table.split(per_step)
