"""Windows over embedding sequences: what the temporal predictors read, and their per-step errors.

Every tracked object yields one embedding per step. A predictor reads a window of the last
`past` steps and predicts the next `future`. Training (`vlavad.scorers.temporal.s3m`) and scoring (here, for any
predictor, PyTorch or NumPy) work on a `StepTable`, every step of every sequence as a row of a
small table of distinct embeddings, and on the start indices of windows in the concatenated
steps, so a window's embeddings are gathered only when its batch needs them: 200k windows of
12x512 float32 would take 5 GB if materialised.

This module needs NumPy only, so scoring with the NumPy S3M never imports PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vlavad.core.errors import ModelError


class WindowShape(Protocol):
    """What a predictor reads and writes: `past` steps of `dim` in, `future` steps out."""

    dim: int
    past: int
    future: int


def concat_sequences(sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All steps stacked as float32 (total, D); where each sequence starts in it; its length."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    flat = np.concatenate([np.asarray(s, dtype=np.float32) for s in sequences], axis=0)
    return flat, starts, lengths


@dataclass(frozen=True)
class StepTable:
    """Sequences of step embeddings, each distinct embedding stored once: step i of the
    sequences laid end to end is `vectors[codes[i]]`.

    A track's caption rarely changes, so a 10-minute clip's 40,770 steps have a few hundred
    distinct embeddings: 82 MB as one row per step, under a megabyte as this table. Rows are
    distinct and in the order of their bytes, so the codes do not depend on where a step comes
    from, and neither do the window ids and batches built from them.
    """

    vectors: np.ndarray  # (distinct embeddings, D) float32
    codes: np.ndarray  # (steps,) int64, the sequences one after another
    lengths: np.ndarray  # (sequences,) int64

    @classmethod
    def from_codes(cls, vectors: np.ndarray, codes: np.ndarray, lengths: np.ndarray) -> StepTable:
        """From any table of embeddings (rows may repeat) and the table row of every step."""
        distinct, row_ids = _distinct_rows(np.asarray(vectors, dtype=np.float32))
        return cls(distinct, row_ids[np.asarray(codes, dtype=np.int64)], np.asarray(lengths, dtype=np.int64))

    @classmethod
    def from_sequences(cls, sequences: Sequence[np.ndarray]) -> StepTable:
        """From one (steps, D) array per sequence."""
        if not len(sequences):
            return cls(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
        flat, _, lengths = concat_sequences(sequences)
        return cls.from_codes(flat, np.arange(len(flat)), lengths)

    @classmethod
    def concat(cls, tables: Sequence[StepTable]) -> StepTable:
        """The sequences of several tables, in order, in one table."""
        tables = [t for t in tables if len(t.lengths)]  # a table of no sequence has no width either
        if not tables:
            return cls.from_sequences([])
        offsets = np.cumsum([0] + [len(t.vectors) for t in tables[:-1]])
        return cls.from_codes(
            np.concatenate([t.vectors for t in tables]),
            np.concatenate([t.codes + offset for t, offset in zip(tables, offsets)]),
            np.concatenate([t.lengths for t in tables]),
        )

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def starts(self) -> np.ndarray:
        """Where each sequence starts among the steps."""
        return np.cumsum(self.lengths) - self.lengths

    def rows(self, steps: np.ndarray) -> np.ndarray:
        """The embeddings of the steps at `steps` (any shape of indices), float32."""
        return self.vectors[self.codes[steps]]

    def split(self, per_step: np.ndarray) -> list[np.ndarray]:
        """A value per step, cut into one array per sequence."""
        return np.split(per_step, np.cumsum(self.lengths)[:-1])


def as_step_table(sequences: StepTable | Sequence[np.ndarray]) -> StepTable:
    """A step table as it is, or made from one (steps, D) array per sequence."""
    return sequences if isinstance(sequences, StepTable) else StepTable.from_sequences(sequences)


def _distinct_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `vectors` in the order of their bytes, and each row's index among
    them. A dict of the rows' bytes finds them: np.unique(axis=0) would sort a copy of every
    row (80 MB for a 10-minute clip's steps)."""
    first_seen: dict[bytes, int] = {}
    ids = np.fromiter((first_seen.setdefault(row.tobytes(), len(first_seen)) for row in vectors), dtype=np.int64, count=len(vectors))
    keys = sorted(first_seen)
    rank = np.empty(len(keys), dtype=np.int64)
    rank[[first_seen[key] for key in keys]] = np.arange(len(keys))
    distinct = np.frombuffer(b"".join(keys), dtype=vectors.dtype).reshape(len(keys), vectors.shape[1]).copy()
    return distinct, rank[ids]


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
