"""The zoo's architectures: the 1-layer ReLU RNN without biases, the attention-only transformer, and
the handcrafted 2nd-argmax RNNs whose accuracy is known by construction.

RNN: ``h_0 = 0``, ``h_t = ReLU(W_hh h_{t−1} + W_hi x_t)``, ``logits = W_oh h_n`` (the
hidden state after the last step; no biases anywhere, so the map is positively homogeneous).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from wif_core.errors import InputError
from wif_core.zoo.tasks import get_task

Arch = Literal["rnn", "transformer"]


@dataclass(kw_only=True)
class ZooSpec:
    """What a zoo model is: its task, sequence length, width and architecture, plus how it was made."""

    name: str
    task: str
    n: int
    hidden: int
    arch: Arch = "rnn"
    layers: int = 1
    norm: str = "layernorm"  # transformer only: 'layernorm' or 'mlp' after each attention layer
    meta: dict[str, Any] = field(default_factory=dict)  # steps, seed, training seconds, measured accuracy …

    @property
    def n_outputs(self) -> int:
        return get_task(self.task).n_outputs(self.n)


def default_name(task: str, hidden: int, n: int) -> str:
    """The zoo's naming scheme: ``2nd_argmax_d16_n10`` is ARC's M16,10."""
    return f"{task}_d{hidden}_n{n}"


class ZooRNN(nn.Module):
    """The bias-free 1-layer ReLU RNN, batch-first: ``forward(x [B, n]) -> logits [B, out]``."""

    def __init__(self, spec: ZooSpec) -> None:
        super().__init__()
        self.spec = spec
        d, out = spec.hidden, spec.n_outputs
        bound = 1 / math.sqrt(d)  # PyTorch's nn.RNN initialisation
        self.W_hi = nn.Parameter(torch.empty(d).uniform_(-bound, bound))
        self.W_hh = nn.Parameter(torch.empty(d, d).uniform_(-bound, bound))
        self.W_oh = nn.Parameter(torch.empty(out, d).uniform_(-bound, bound))

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, n, d]``: the hidden state after every time step (``[:, t-1]`` is h_t)."""
        h = x.new_zeros(x.shape[0], self.spec.hidden)
        states = []
        for t in range(x.shape[1]):
            h = torch.relu(h @ self.W_hh.T + x[:, t, None] * self.W_hi)
            states.append(h)
        return torch.stack(states, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(x)[:, -1] @ self.W_oh.T

    def flops_per_sample(self) -> int:
        """Multiply-adds ×2 of one forward pass (the recurrence, the input, the ReLU, the readout)."""
        d, n = self.spec.hidden, self.spec.n
        return n * (2 * d * d + 3 * d) + 2 * d * self.spec.n_outputs

    def weights(self) -> dict[str, torch.Tensor]:
        return {"W_hi": self.W_hi.detach(), "W_hh": self.W_hh.detach(), "W_oh": self.W_oh.detach()}


class ZooTransformer(nn.Module):
    """Attention-only transformer: token + position embedding, 1-head attention layers without a mask,
    each followed by a LayerNorm or a residual ReLU MLP, read out at the last position."""

    def __init__(self, spec: ZooSpec) -> None:
        super().__init__()
        if spec.norm not in ("layernorm", "mlp"):
            raise InputError(f"model {spec.name}: field 'norm'={spec.norm!r}; use 'layernorm' or 'mlp'")
        self.spec = spec
        d, n = spec.hidden, spec.n
        self.embed = nn.Embedding(n, d)
        self.pos = nn.Parameter(torch.randn(n, d) / math.sqrt(d))
        self.attn = nn.ModuleList(
            [nn.MultiheadAttention(d, 1, bias=False, batch_first=True) for _ in range(spec.layers)]
        )
        if spec.norm == "layernorm":
            self.post = nn.ModuleList([nn.LayerNorm(d) for _ in range(spec.layers)])
        else:
            self.post = nn.ModuleList(
                [
                    nn.Sequential(nn.Linear(d, d, bias=False), nn.ReLU(), nn.Linear(d, d, bias=False))
                    for _ in range(spec.layers)
                ]
            )
        self.unembed = nn.Linear(d, spec.n_outputs, bias=False)

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, layers, d]``: the residual stream at the last position after every layer."""
        h = self.embed(x) + self.pos
        states = []
        for attn, post in zip(self.attn, self.post, strict=True):
            h = h + attn(h, h, h, need_weights=False)[0]
            h = post(h) if self.spec.norm == "layernorm" else h + post(h)
            states.append(h[:, -1])
        return torch.stack(states, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unembed(self.hidden_states(x)[:, -1])

    def flops_per_sample(self) -> int:
        d, n, L = self.spec.hidden, self.spec.n, self.spec.layers
        per_layer = 4 * 2 * n * d * d + 2 * 2 * n * n * d + (4 * n * d * d if self.spec.norm == "mlp" else 8 * n * d)
        return L * per_layer + 2 * d * self.spec.n_outputs

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.state_dict().items()}


ZooModel = ZooRNN | ZooTransformer


def build(spec: ZooSpec) -> ZooModel:
    """A freshly initialised model for ``spec`` (checks the task and sequence length first)."""
    task = get_task(spec.task)
    task.check(spec.n)
    if spec.hidden < 1:
        raise InputError(f"model {spec.name}: --hidden {spec.hidden} must be at least 1")
    if spec.arch == "transformer" or task.inputs == "function":
        if task.inputs != "function":
            raise InputError(f"task '{spec.task}' has real-valued inputs: use the RNN, not the transformer")
        spec.arch = "transformer"
        return ZooTransformer(spec)
    return ZooRNN(spec)


def rnn_from_weights(spec: ZooSpec, W_hi: torch.Tensor, W_hh: torch.Tensor, W_oh: torch.Tensor) -> ZooRNN:
    """An RNN with the given weights, after checking every shape against the spec."""
    d, out = spec.hidden, spec.n_outputs
    expected = {"W_hi": (d,), "W_hh": (d, d), "W_oh": (out, d)}
    for key, tensor in (
        ("W_hi", W_hi.reshape(-1) if W_hi.dim() == 2 and 1 in W_hi.shape else W_hi),
        ("W_hh", W_hh),
        ("W_oh", W_oh),
    ):
        if tuple(tensor.shape) != expected[key]:
            raise InputError(
                f"model {spec.name}: weight '{key}' has shape {tuple(tensor.shape)}, but hidden={d}, "
                f"{out} outputs need {expected[key]}; fix the weights or the metadata"
            )
    model = ZooRNN(spec)
    with torch.no_grad():
        model.W_hi.copy_(W_hi.reshape(-1))
        model.W_hh.copy_(W_hh)
        model.W_oh.copy_(W_oh)
    return model


# ---- handcrafted 2nd-argmax models ----------------------------------------------------------


def handcrafted_2nd_argmax(n: int) -> ZooRNN:
    """ARC's handcrafted 2nd-argmax RNNs: exact for n = 2 (2 neurons), the leave-one-out maximum for n = 10."""
    if n == 2:
        return _exact_n2()
    if n == 10:
        return _leave_one_out_max(10)
    raise InputError(f"no handcrafted 2nd-argmax model for --seq {n}; handcrafted ones exist for n = 2 and n = 10")


def _exact_n2() -> ZooRNN:
    """h_1 = (x_1⁺, x_1⁻); h_2 = ((x_2 − x_1)⁺, (x_1 − x_2)⁺); logits = ±(x_2 − x_1): position 0 wins iff x_1 < x_2."""
    spec = ZooSpec(name="handcrafted_2nd_argmax_n2", task="2nd_argmax", n=2, hidden=2, meta={"handcrafted": True})
    return rnn_from_weights(
        spec,
        torch.tensor([1.0, -1.0]),
        torch.tensor([[-1.0, 1.0], [1.0, -1.0]]),
        torch.tensor([[1.0, -1.0], [-1.0, 1.0]]),
    )


def _leave_one_out_max(n: int) -> ZooRNN:
    """2n + 2 neurons; the logit of position i is ``x_i⁺ + 2·L_i`` with ``L_i = max(0, x_j : j ≠ i)``.

    For the largest value that is ``M + 2s``, for the second ``s + 2M`` and for any other
    ``x⁺ + 2M``: the second wins whenever it is positive. With fewer than two positive inputs
    (probability (n + 1)/2ⁿ, 1.1% at n = 10) logits tie and the first position wins: ≈ 98.9%.

    The state after step t (input ``x_t``), every neuron one ReLU of the previous state and x_t:

    - ``delay[k] = x_{t−k}⁺`` for k = 0..n−1: a shift register of positive parts;
    - ``top = max(0, x_1..x_{t−1})`` and ``jump = (x_t − top)⁺``: the running max is ``top + jump``;
    - ``below = (top − x_t)⁺``, the running max minus x_t, so ``x_t = top + jump − below`` is linear;
    - ``loo[k] = L − x_t`` for position t − k (k = 1..n−1), L its leave-one-out max so far. It is
      never negative (L ≥ x_t), and ``max(L, x_t) − x_t = (L − x_{t−1} + x_{t−1} − x_t)⁺`` updates it
      with one ReLU while it shifts one slot; it starts as ``loo[1] = (top_{t−1} − x_t)⁺``.
    """
    d = 2 * n + 2
    delay = list(range(n))
    loo = {k: n + k - 1 for k in range(1, n)}
    top, jump, below = 2 * n - 1, 2 * n, 2 * n + 1
    W_hi, W_hh, W_oh = torch.zeros(d), torch.zeros(d, d), torch.zeros(n, d)
    running_max = {top: 1.0, jump: 1.0}  # max(0, x_1..x_t) as a readout of the state after step t
    last_input = {top: 1.0, jump: 1.0, below: -1.0}  # x_t, likewise

    W_hi[delay[0]] = 1.0
    for k in range(1, n):
        W_hh[delay[k], delay[k - 1]] = 1.0
    for row, sign in ((top, 0.0), (jump, 1.0), (below, -1.0)):
        W_hi[row] = sign
        for col, w in running_max.items():
            W_hh[row, col] = w if row != jump else -w
    W_hh[loo[1], top] = 1.0
    W_hi[loo[1]] = -1.0
    for k in range(2, n):
        W_hh[loo[k], loo[k - 1]] = 1.0
        for col, w in last_input.items():
            W_hh[loo[k], col] += w
        W_hi[loo[k]] = -1.0

    # readout: position p = n − k (output index n − 1 − k) gets x_p⁺ + 2·L_p
    W_oh[n - 1, delay[0]] = 1.0
    W_oh[n - 1, top] = 2.0  # the newest input's leave-one-out max is top
    for k in range(1, n):
        W_oh[n - 1 - k, delay[k]] = 1.0
        W_oh[n - 1 - k, loo[k]] = 2.0
        for col, w in last_input.items():
            W_oh[n - 1 - k, col] += 2.0 * w
    spec = ZooSpec(name=f"handcrafted_2nd_argmax_n{n}", task="2nd_argmax", n=n, hidden=d, meta={"handcrafted": True})
    return rnn_from_weights(spec, W_hi, W_hh, W_oh)
