"""Training a temporal predictor with MSE on the windows of normal tracks, with early stopping
on held-out tracks (the windows it reads: `vlavad.scorers.temporal.windows`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from vlavad.core.records import StepTable, as_step_table
from vlavad.scorers.temporal.predictors import SequencePredictor
from vlavad.scorers.temporal.windows import check_fit, window_ids, window_starts


def _split_by_track(lengths: np.ndarray, span: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A seeded random `fraction` of the tracks that have windows (at least one, and none
    when fewer than two tracks have windows), as a boolean mask over tracks.

    Whole tracks are held out, not single windows: neighbouring windows of a track share all
    but one step, so held-out windows would be near-copies of training ones.
    """
    held_out = np.zeros(len(lengths), dtype=bool)
    candidates = np.flatnonzero(lengths >= span)
    if fraction > 0 and len(candidates) >= 2:
        n = min(max(1, round(fraction * len(candidates))), len(candidates) - 1)
        held_out[rng.choice(candidates, size=n, replace=False)] = True
    return held_out


def _window_errors(model: SequencePredictor, vectors: Tensor, codes: Tensor, starts: Tensor, past: int, span: int) -> Tensor:
    """The MSE of the model's prediction for each window starting at `starts`: (n,)."""
    windows = vectors[codes[starts[:, None] + torch.arange(span, device=codes.device)]]
    return (model(windows[:, :past]) - windows[:, past:]).square().mean(dim=(1, 2))


@torch.no_grad()
def _mean_error(
    model: SequencePredictor,
    vectors: Tensor,
    codes: Tensor,
    starts: Tensor,
    counts: Tensor,
    past: int,
    span: int,
    batch_size: int = 2048,
) -> float:
    """The mean MSE over windows, each of the distinct `starts` counted `counts` times."""
    total = sum((_window_errors(model, vectors, codes, s, past, span) * c).sum() for s, c in zip(starts.split(batch_size), counts.split(batch_size)))
    return float(total) / float(counts.sum())


# A batch's windows go through the model and back this many at a time, their gradients summed:
# the same gradient (to float rounding), while the scan's saved states for backward stay small.
# A whole batch of 1024 at once held 1.7 GB more at the peak of a Ped2 fit, in the same time.
BACKWARD_WINDOWS = 128


class AdamW:
    """torch.optim.AdamW with its default settings, written out as the update PyTorch runs on
    the CPU (its single-tensor path): building any torch.optim optimizer imports torch._dynamo,
    seconds of a fit that takes ten. tests/test_s3m.py checks that both give the same weights,
    bit for bit."""

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.steps = [0] * len(self.params)  # per parameter, as PyTorch counts them
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, (param, exp_avg, exp_avg_sq) in enumerate(zip(self.params, self.exp_avgs, self.exp_avg_sqs)):
            if param.grad is None:
                continue
            self.steps[i] += 1
            grad = param.grad
            param.mul_(1 - self.lr * self.weight_decay)  # decoupled weight decay
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = self.lr / (1 - beta1 ** self.steps[i])
            denom = (exp_avg_sq.sqrt() / (1 - beta2 ** self.steps[i]) ** 0.5).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)


def train_predictor(
    model: SequencePredictor,
    sequences: StepTable | Sequence[np.ndarray],
    *,
    past: int,
    future: int,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 1024,
    seed: int = 0,
    max_windows: int = 200_000,
    progress: Callable[[int, int, float], None] | None = None,
    validation: float = 0.1,
    patience: int = 2,
    min_improvement: float = 0.01,
) -> list[float]:
    """Train `model` with MSE on every (past -> future) window of the normal `sequences`.

    Returns the mean training MSE of each epoch run; `progress(epoch, epochs, loss)` is called
    after each (epoch counts from 1).

    Early stopping: the windows of a seeded `validation` fraction of the tracks are held out
    (see `_split_by_track`; 0 trains on every track for all `epochs`). Training stops after
    `patience` epochs in a row that do not lower the best held-out MSE so far by a relative
    `min_improvement`, and the model is left with the weights of its best held-out epoch.

    A batch's loss is its mean over its windows, but a window that occurs several times in the
    batch is run once and counted as often (see `vlavad.scorers.temporal.windows.window_ids`):
    the same gradient for about half the work on captioned tracks. Batches of 1024 rather than
    256 hold more repeats, and gave as good a model in fewer CPU seconds.

    Deterministic given `seed`, in any process or thread: beyond `max_windows` windows a seeded
    random subset is used, and the split and the batch order come from seeded generators, never
    from the global ones. With no window at all (every track shorter than past + future)
    returns [] and leaves the model untouched. The model is trained on the device its
    parameters are on and is left in eval mode.
    """
    steps = as_step_table(sequences)
    span = past + future
    lengths, seq_starts = steps.lengths, steps.starts
    if not (lengths >= span).any():
        return []
    check_fit(model, steps, past, future)
    rng = np.random.default_rng(seed)
    held_out = _split_by_track(lengths, span, validation, rng)
    starts = window_starts(lengths[~held_out], seq_starts[~held_out], span)
    if len(starts) > max_windows:
        starts = np.sort(rng.choice(starts, size=max_windows, replace=False))
    val_starts = window_starts(lengths[held_out], seq_starts[held_out], span)
    val_cap = max(1, round(validation * max_windows))  # a forward pass each epoch: keep it small
    if len(val_starts) > val_cap:
        val_starts = np.sort(rng.choice(val_starts, size=val_cap, replace=False))

    device = next(model.parameters()).device
    vectors, codes = torch.from_numpy(steps.vectors).to(device), torch.from_numpy(steps.codes).to(device)
    ids, id_starts = (torch.from_numpy(a).to(device) for a in window_ids(steps, starts, span))
    if len(val_starts):
        val_ids, val_starts = window_ids(steps, val_starts, span)
        val_counts = torch.from_numpy(np.bincount(val_ids)).to(device)
        val_starts_t = torch.from_numpy(val_starts).to(device)
    shuffle = torch.Generator().manual_seed(seed)
    optimizer = AdamW(model.parameters(), lr=lr)

    history = []
    best, stale, best_state = math.inf, 0, None
    for epoch in range(1, epochs + 1):
        model.train()
        total = torch.zeros((), device=device)
        for batch in torch.randperm(len(ids), generator=shuffle).split(batch_size):
            distinct, counts = torch.unique(ids[batch.to(device)], return_counts=True)
            optimizer.zero_grad()
            loss = torch.zeros((), device=device)
            for part, part_counts in zip(distinct.split(BACKWARD_WINDOWS), counts.split(BACKWARD_WINDOWS)):
                errors = _window_errors(model, vectors, codes, id_starts[part], past, span)
                part_loss = (errors * part_counts).sum() / len(batch)
                part_loss.backward()
                loss += part_loss.detach()
            optimizer.step()
            total += loss * len(batch)  # no .item() per batch: it would sync a GPU
        history.append(total.item() / len(ids))
        if progress is not None:
            progress(epoch, epochs, history[-1])
        if not len(val_starts):
            continue
        model.eval()
        val = _mean_error(model, vectors, codes, val_starts_t, val_counts, past, span)
        stale = 0 if val < best * (1 - min_improvement) else stale + 1
        if val < best:
            best, best_state = val, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if stale >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
