"""The temporal predictors as PyTorch networks: the paper's S3M (section 3.3.2) and the GRU and
Transformer of its ablation (Table 2).

Every tracked object yields one text embedding per step of its track. A predictor reads a window
of the last `past` embeddings and predicts the next `future` ones (Ped2/Avenue 10 -> 2,
ShanghaiTech 20 -> 4); trained on normal tracks only, its prediction error at a step is that
step's temporal anomaly score.

The three share one interface (`SequencePredictor`). Each kind is declared, without PyTorch, in
`vlavad.scorers.temporal.kinds`; the network that trains it registers itself here under the
kind's name (`register_network`), and `build_predictor(**p.config())` rebuilds any of them, so a
saved state_dict can be loaded back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlavad.core.errors import ConfigError
from vlavad.scorers.temporal.kinds import PREDICTORS, GRUKind, S3MKind, TransformerKind
from vlavad.scorers.temporal.numpy_s3m import D_CONV, D_STATE, EXPAND
from vlavad.scorers.temporal.scan import selective_scan


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
        before it), written as d_conv shifted products: on the CPU, the backward pass of
        PyTorch's depthwise convolution cost more than a tenth of a training step."""
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


class SequencePredictor(nn.Module):
    """Reads (B, past, dim) embeddings, predicts the next (B, future, dim).

    Subclasses set `kind` (a registered kind's name) and implement `encode`, which turns the
    embedded window into one d_model vector (the state after the last step); the shared head
    maps it to the future.
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


NETWORKS: dict[str, type[SequencePredictor]] = {}  # kind name -> the network that trains it


def register_network(cls: type[SequencePredictor]) -> type[SequencePredictor]:
    """Class decorator: `cls` is the network that trains its `kind`, a kind registered in
    `vlavad.scorers.temporal.kinds.PREDICTORS` (so settings and model files know it)."""
    if cls.kind not in PREDICTORS.names():
        raise ValueError(f"{cls.__name__}.kind {cls.kind!r} is not a registered predictor kind; register it in vlavad.scorers.temporal.kinds")
    if cls.kind in NETWORKS:
        raise ValueError(f"two networks train the {cls.kind!r} predictor")
    NETWORKS[cls.kind] = cls
    return cls


@register_network
class S3MPredictor(SequencePredictor):
    """The paper's S3M: a stack of Mamba blocks."""

    kind = S3MKind.name

    def __init__(self, dim: int, past: int, future: int, layers: int = 3, d_model: int = 64):
        super().__init__(dim, past, future, layers, d_model)
        self.blocks = nn.ModuleList(MambaBlock(d_model) for _ in range(layers))

    def encode(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x[:, -1]


@register_network
class GRUPredictor(SequencePredictor):
    """The "RNN" of the ablation: a stacked GRU."""

    kind = GRUKind.name

    def __init__(self, dim: int, past: int, future: int, layers: int = 3, d_model: int = 64):
        super().__init__(dim, past, future, layers, d_model)
        self.gru = nn.GRU(d_model, d_model, num_layers=layers, batch_first=True)

    def encode(self, x: Tensor) -> Tensor:
        return self.gru(x)[0][:, -1]


@register_network
class TransformerPredictor(SequencePredictor):
    """The "Trans." of the ablation: a causal pre-norm TransformerEncoder.

    Causal so that, like the recurrent predictors, every position only sees its own past; the
    ablation then compares architectures rather than what each one is allowed to look at.
    """

    kind = TransformerKind.name

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
    """A fresh predictor of a registered `kind` ("s3m", "gru", "transformer"), on the CPU.

    Its initial weights are drawn from a generator seeded with `seed`, never from torch's global
    one, so a given seed gives the same model in any process and any thread, whatever else is
    drawing random numbers meanwhile.
    """
    PREDICTORS.get(kind)  # ConfigError listing the kinds
    if min(dim, past, future, layers, d_model) < 1:
        raise ConfigError(f"predictor sizes must be positive: dim={dim}, past={past}, future={future}, layers={layers}, d_model={d_model}")
    # The layers' own initialisers draw from the global RNG: its state is put back afterwards,
    # and every parameter is then drawn again, from the local generator. (Not built on the meta
    # device: its first use imports torch's decompositions, seconds on every fit and model load.)
    with torch.random.fork_rng(devices=[]):
        model = NETWORKS[kind](dim, past, future, layers=layers, d_model=d_model)
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
