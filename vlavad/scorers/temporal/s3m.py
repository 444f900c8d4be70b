"""The temporal scorer: the Sequence State Space Module (S3M) of VLAVAD, section 3.3.2.

Every tracked object yields one text embedding E(t) per step of its track. A predictor reads a
window of the last `past` embeddings and predicts the next `future` ones (Ped2/Avenue 10 -> 2,
ShanghaiTech 20 -> 4). It is trained with MSE on normal tracks only, so at test time the
prediction error of a step is its temporal anomaly score A_t.

Three predictors share one interface (`SequencePredictor`) for the paper's ablation (Table 2):
the Mamba-based S3M, a GRU ("RNN") and a causal Transformer. `build_predictor(**p.config())`
rebuilds any of them, so a saved state_dict can be loaded back. Training runs here, in PyTorch;
a trained S3M scores in NumPy (`TemporalModel.for_scoring`, `vlavad.scorers.temporal.numpy_s3m`), so scoring
never needs PyTorch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlavad.core.errors import ConfigError, ModelError
from vlavad.core.records import StepTable, as_step_table
from vlavad.core.tensors import Expected, check_tensors, read_safetensors
from vlavad.scorers.temporal.numpy_s3m import D_CONV, D_STATE, EXPAND, NumpyS3M
from vlavad.scorers.temporal.windows import check_fit, step_errors, window_ids, window_starts

# --------------------------------------------------------------------------------------------
# Selective scan
# --------------------------------------------------------------------------------------------


@functools.cache
def _fused_scan():
    """mamba-ssm's CUDA `selective_scan_fn`, or None where mamba-ssm is not installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None) -> Tensor:
    """The Mamba selective scan as a plain recurrence, in mamba-ssm's `selective_scan_ref` layout.

    u, delta: (batch, dim, L); A: (dim, N); B, C: (batch, N, L), input-dependent; D: (dim,).
    Returns y: (batch, dim, L) with
        h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,    y_t = <h_t, C_t> + D * u_t.
    `delta` is used as given (already positive, e.g. after softplus).

    Tracks are short (L <= ~30), so this is a loop over time, vectorised over batch, dim and
    state. On the CPU it is also the fastest eager form measured (benchmarks/s3m_speed.py): the
    parallel (Hillis-Steele) and log-space cumulative-sum scans do more arithmetic over whole
    (batch, dim, L, N) tensors, and on a CPU that arithmetic, not the L sequential steps, is
    what costs.
    """
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])  # (batch, dim, N)
    ys = []
    # deltaA and deltaB_u are built one step at a time rather than as whole (batch, dim, L, N)
    # tensors as in mamba-ssm's reference: each step's slices stay in cache, which makes the
    # scan ~1.6x faster (forward + backward) on CPU. unbind, not [..., t]: in backward each of
    # the L indexing ops would allocate and fill a full-size zero gradient (~10x slower).
    for delta_t, u_t, B_t, C_t in zip(delta.unbind(2), u.unbind(2), B.unbind(2), C.unbind(2)):
        deltaA = torch.exp(delta_t[..., None] * A)  # (batch, dim, N)
        deltaB_u = (delta_t * u_t)[..., None] * B_t[:, None, :]
        h = deltaA * h + deltaB_u
        ys.append(torch.einsum("bdn,bn->bd", h, C_t))
    y = torch.stack(ys, dim=2)
    return y if D is None else y + u * D[:, None]


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None) -> Tensor:
    """The selective scan of `selective_scan_ref`, on the fastest implementation available.

    On CUDA with mamba-ssm installed that is its fused kernel, which takes exactly these
    arguments in this layout; elsewhere it is the reference recurrence.
    """
    fused = _fused_scan() if u.is_cuda else None
    if fused is not None:
        return fused(u, delta, A, B, C, D)
    return selective_scan_ref(u, delta, A, B, C, D)


# --------------------------------------------------------------------------------------------
# Mamba block
# --------------------------------------------------------------------------------------------


class MambaBlock(nn.Module):
    """One pre-norm residual Mamba block (Gu & Dao 2023): x + Mamba(RMSNorm(x)).

    Input and output are (batch, L, d_model).
    """

    def __init__(self, d_model: int = 64, d_state: int = D_STATE, expand: int = EXPAND, d_conv: int = D_CONV):
        super().__init__()
        d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.norm = nn.RMSNorm(d_model)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        # Depthwise and causal: padded d_conv - 1 on both sides, the first L outputs kept
        # (`causal_conv` computes just those from its weights).
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.empty(d_inner))
        self.init_parameters()

    @torch.no_grad()
    def init_parameters(self, generator: torch.Generator | None = None) -> None:
        """Mamba's init of this block's own parameters (the Linear and Conv1d layers keep
        PyTorch's default): S4D-real A = -(1, 2, ..., N) for every channel, stored as log so A
        stays negative; D = 1; softplus(dt bias) log-uniform in [1e-3, 0.1]."""
        dt_min, dt_max = 1e-3, 0.1
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)))
        self.D.fill_(1.0)
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std, generator=generator)
        u = torch.rand(self.dt_proj.out_features, generator=generator)
        dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus

    def causal_conv(self, u: Tensor) -> Tensor:
        """`conv1d` cut to its first L outputs (each step sees itself and the d_conv - 1 steps
        before it), written as d_conv shifted products: on the CPU, PyTorch's depthwise
        convolution took 13% of a training step, nearly all of it in its backward pass."""
        kernel, length = self.conv1d.weight[:, 0, :], u.shape[-1]  # kernel: (d_inner, d_conv)
        d_conv = kernel.shape[1]
        out = u * kernel[:, -1:] + self.conv1d.bias[:, None]
        for shift in range(1, min(d_conv, length)):
            out = out + F.pad(u[..., :-shift], (shift, 0)) * kernel[:, d_conv - 1 - shift, None]
        return out

    def forward(self, x: Tensor) -> Tensor:
        u, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)
        u = F.silu(self.causal_conv(u.transpose(1, 2)))  # (batch, d_inner, L)
        dt, B, C = self.x_proj(u.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt)).transpose(1, 2)  # (batch, d_inner, L)
        A = -torch.exp(self.A_log)
        y = selective_scan(u, delta, A, B.transpose(1, 2), C.transpose(1, 2), self.D)
        return x + self.out_proj(y.transpose(1, 2) * F.silu(z))


# --------------------------------------------------------------------------------------------
# Predictors
# --------------------------------------------------------------------------------------------


class SequencePredictor(nn.Module):
    """Reads (B, past, dim) embeddings, predicts the next (B, future, dim).

    Subclasses set `kind` and implement `encode`, which turns the embedded window into one
    d_model vector (the state after the last step); the shared head maps it to the future.
    """

    kind: str

    def __init__(self, dim: int, past: int, future: int, layers: int, d_model: int):
        super().__init__()
        self.dim, self.past, self.future = dim, past, future
        self.layers, self.d_model = layers, d_model
        self.embed = nn.Linear(dim, d_model)
        self.norm = nn.RMSNorm(d_model)
        self.head = nn.Linear(d_model, future * dim)
        SequencePredictor.init_parameters(self)  # not an override: a subclass is not built yet

    @torch.no_grad()
    def init_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialises the parameters this class adds to its layers' defaults.

        The head predicts the change from the last observed step. A track's caption, hence
        its text embedding, rarely changes from one step to the next, so "no change" is the
        most common target: predicting the delta makes it the easy default (a zero output),
        and a zero-initialised head starts training from exactly that baseline.
        """
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def encode(self, x: Tensor) -> Tensor:
        """(B, past, d_model) -> (B, d_model)."""
        raise NotImplementedError

    def forward(self, past: Tensor) -> Tensor:
        h = self.norm(self.encode(self.embed(past)))
        change = self.head(h).view(-1, self.future, self.dim)
        return past[:, -1:, :] + change

    def config(self) -> dict:
        """JSON-able settings; `build_predictor(**config)` rebuilds the same architecture."""
        return {
            "kind": self.kind,
            "dim": self.dim,
            "past": self.past,
            "future": self.future,
            "layers": self.layers,
            "d_model": self.d_model,
        }


class S3MPredictor(SequencePredictor):
    """The paper's S3M: a stack of Mamba blocks."""

    kind = "s3m"

    def __init__(self, dim: int, past: int, future: int, layers: int = 3, d_model: int = 64):
        super().__init__(dim, past, future, layers, d_model)
        self.blocks = nn.ModuleList(MambaBlock(d_model) for _ in range(layers))

    def encode(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x[:, -1]


class GRUPredictor(SequencePredictor):
    """The "RNN" of the ablation: a stacked GRU."""

    kind = "gru"

    def __init__(self, dim: int, past: int, future: int, layers: int = 3, d_model: int = 64):
        super().__init__(dim, past, future, layers, d_model)
        self.gru = nn.GRU(d_model, d_model, num_layers=layers, batch_first=True)

    def encode(self, x: Tensor) -> Tensor:
        return self.gru(x)[0][:, -1]


class TransformerPredictor(SequencePredictor):
    """The "Trans." of the ablation: a causal pre-norm TransformerEncoder.

    Causal so that, like the recurrent predictors, every position only sees its own past; the
    ablation then compares architectures rather than what each one is allowed to look at.
    """

    kind = "transformer"

    def __init__(self, dim: int, past: int, future: int, layers: int = 3, d_model: int = 64):
        super().__init__(dim, past, future, layers, d_model)
        self.pos = nn.Parameter(torch.empty(past, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model,
            nhead=math.gcd(d_model, 4),
            dim_feedforward=4 * d_model,
            dropout=0.0,  # none of the predictors uses dropout, so train and eval agree
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.init_parameters()

    @torch.no_grad()
    def init_parameters(self, generator: torch.Generator | None = None) -> None:
        super().init_parameters(generator)
        nn.init.normal_(self.pos, std=0.02, generator=generator)

    def encode(self, x: Tensor) -> Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device)
        return self.encoder(x + self.pos, mask=mask, is_causal=True)[:, -1]


_PREDICTORS = {cls.kind: cls for cls in (S3MPredictor, GRUPredictor, TransformerPredictor)}
KINDS = tuple(_PREDICTORS)


def build_predictor(
    kind: str,
    dim: int,
    past: int,
    future: int,
    layers: int = 3,
    d_model: int = 64,
    *,
    seed: int = 0,
) -> SequencePredictor:
    """A fresh predictor of `kind` ("s3m", "gru" or "transformer"), on the CPU.

    Its initial weights are drawn from a generator seeded with `seed`, never from torch's global
    one, so a given seed gives the same model in any process and any thread, whatever else is
    drawing random numbers meanwhile.
    """
    if kind not in _PREDICTORS:
        raise ConfigError(f"unknown temporal predictor {kind!r}; choose one of {', '.join(KINDS)}")
    if min(dim, past, future, layers, d_model) < 1:
        raise ConfigError(f"predictor sizes must be positive: dim={dim}, past={past}, future={future}, layers={layers}, d_model={d_model}")
    # The layers' own initialisers draw from the global RNG: its state is put back afterwards,
    # and every parameter is then drawn again, from the local generator. (Building on the meta
    # device instead avoids those draws, but its first use imports torch's decompositions: about
    # 3 s on every fit and every model load.)
    with torch.random.fork_rng(devices=[]):
        model = _PREDICTORS[kind](dim, past, future, layers=layers, d_model=d_model)
    _initialise(model, torch.Generator().manual_seed(seed))
    return model


@torch.no_grad()
def _initialise(model: nn.Module, generator: torch.Generator) -> None:
    """Draws every parameter of `model` from `generator`, with the distributions of PyTorch's
    default initialisers (which take no generator) and of the modules' own `init_parameters`.

    Children come before their parents, so a parent's rule has the last word (the predictor's
    zero head, the Mamba block's dt projection, the attention's zero output bias).
    """
    for module in reversed(list(model.modules())):
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            # kaiming_uniform_(a=sqrt(5)) and the bias rule alike draw U(+-1/sqrt(fan_in)).
            bound = module.weight[0].numel() ** -0.5
            for p in (module.weight, module.bias):
                if p is not None:
                    p.uniform_(-bound, bound, generator=generator)
        elif isinstance(module, nn.GRU):
            bound = module.hidden_size**-0.5
            for p in module.parameters():
                p.uniform_(-bound, bound, generator=generator)
        elif isinstance(module, nn.MultiheadAttention):
            nn.init.xavier_uniform_(module.in_proj_weight, generator=generator)
            module.in_proj_bias.zero_()
            module.out_proj.bias.zero_()
        elif isinstance(module, nn.TransformerEncoder):
            # PyTorch builds the stack from deep copies of one layer, so all layers start equal.
            for layer in module.layers[1:]:
                layer.load_state_dict(module.layers[0].state_dict())
        elif isinstance(module, (nn.RMSNorm, nn.LayerNorm)):
            module.reset_parameters()  # ones and zeros: nothing random
        elif hasattr(module, "init_parameters"):
            module.init_parameters(generator)
        elif next(module.parameters(recurse=False), None) is not None:
            raise TypeError(f"no initialisation rule for {type(module).__name__}")


# --------------------------------------------------------------------------------------------
# Training and scoring (the windows they read: vlavad.scorers.temporal.windows)
# --------------------------------------------------------------------------------------------


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


class AdamW:
    """torch.optim.AdamW with its default settings, written out as the update PyTorch runs on
    the CPU (its single-tensor path). Building any torch.optim optimizer imports torch._dynamo,
    which took 2 s on two cores, where a whole fit of a one-minute clip takes 7-14 s.
    tests/test_s3m.py checks that both give the same weights, bit for bit."""

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
    batch is run once and counted as often (see `vlavad.scorers.temporal.windows.window_ids`): the same gradient for about
    half the work on captioned tracks. Batches of 1024 rather than 256 hold more repeats and
    gave as good a model in fewer CPU seconds (benchmarks/s3m_speed.py).

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
            errors = _window_errors(model, vectors, codes, id_starts[distinct], past, span)
            loss = (errors * counts).sum() / len(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(batch)  # no .item() per batch: it would sync a GPU
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


def temporal_errors(model: SequencePredictor, sequence: np.ndarray, *, past: int, future: int) -> np.ndarray:
    """Per-step prediction error of one track (T, D) -> (T,); see `temporal_errors_batch`."""
    return temporal_errors_batch(model, [sequence], past, future)[0]


def temporal_errors_batch(
    model: SequencePredictor,
    sequences: StepTable | Sequence[np.ndarray],
    past: int,
    future: int,
    *,
    batch_size: int = 2048,
) -> list[np.ndarray]:
    """Per-step prediction errors of many tracks (see `vlavad.scorers.temporal.windows.step_errors`), predicted
    on the device the model's parameters are on."""
    device = next(model.parameters()).device
    model.eval()

    @torch.no_grad()
    def predict(windows: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(windows).to(device)).cpu().numpy()

    return step_errors(predict, model, sequences, past, future, batch_size=batch_size)


# --------------------------------------------------------------------------------------------
# The temporal scorer as the pipeline uses it
# --------------------------------------------------------------------------------------------


def _tensors_of(predictor: SequencePredictor) -> dict[str, Expected]:
    return {name: Expected(tuple(value.shape)) for name, value in predictor.state_dict().items()}


class TemporalModel:
    """A predictor with its training and its per-step errors: what `fit` trains and a model
    folder stores (`config()` in model.json, `weights()` as safetensors). A trained S3M scores
    as `for_scoring()`, in NumPy."""

    def __init__(self, predictor: SequencePredictor):
        self.predictor = predictor

    @classmethod
    def create(cls, kind: str, dim: int, past: int, future: int, layers: int, d_model: int, seed: int = 0) -> TemporalModel:
        return cls(build_predictor(kind, dim, past, future, layers, d_model, seed=seed))

    @classmethod
    def from_weights(cls, config: dict, weights: dict[str, np.ndarray], where: str = "the predictor's weights") -> TemporalModel:
        """The predictor of `config` with `weights`, each checked against the built predictor's
        own tensors first (one ModelError naming `where` and the tensor)."""
        predictor = build_predictor(**config)
        check_tensors(where, weights, _tensors_of(predictor), ModelError)
        return cls._loaded(predictor, weights)

    @classmethod
    def read(cls, config: dict, path: Path) -> TemporalModel:
        """The predictor of `config` with the weights of the safetensors file `path`, every tensor
        checked against the built predictor's own (from the file's header, then its values)
        before any is loaded."""
        predictor = build_predictor(**config)
        return cls._loaded(predictor, read_safetensors(path, _tensors_of(predictor), ModelError))

    @classmethod
    def _loaded(cls, predictor: SequencePredictor, weights: dict[str, np.ndarray]) -> TemporalModel:
        predictor.load_state_dict({name: torch.from_numpy(value) for name, value in weights.items()})
        predictor.eval()
        return cls(predictor)

    def fit(
        self,
        sequences: StepTable | Sequence[np.ndarray],
        *,
        epochs: int,
        lr: float,
        seed: int,
        max_windows: int,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> list[float]:
        """Trains on normal sequences; returns each epoch's loss ([] when no track is long enough)."""
        p = self.predictor
        return train_predictor(
            p, sequences, past=p.past, future=p.future, epochs=epochs, lr=lr, seed=seed, max_windows=max_windows, progress=progress
        )

    def errors(self, sequences: StepTable | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-step prediction error of each sequence (NaN where no window predicts the step)."""
        return temporal_errors_batch(self.predictor, sequences, self.predictor.past, self.predictor.future)

    def config(self) -> dict:
        return self.predictor.config()

    def weights(self) -> dict[str, np.ndarray]:
        return {name: value.detach().cpu().numpy() for name, value in self.predictor.state_dict().items()}

    def for_scoring(self) -> TemporalModel | NumpyS3M:
        """What scores with this trained predictor: the NumPy S3M for an S3M (the same errors to
        float32 rounding, without PyTorch), the predictor itself for the others."""
        return NumpyS3M(self.config(), self.weights()) if self.predictor.kind == NumpyS3M.kind else self
