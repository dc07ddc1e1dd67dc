"""AttnLRP for llama and Gemma 3 models, by the gradient × input trick over the HF module weights.

A functional llama forward (embeddings → blocks → final norm → LM head) that reads the
weights of a ``LlamaForCausalLM`` and computes exactly its forward values, but whose
backward pass is modified so that input × gradient at any tensor is that tensor's LRP
relevance (the trick of Achtibat et al. 2024, "AttnLRP", used by their ``lxt`` package,
which does not import with transformers 5):

- linear layers, rotary embeddings, residual sums, GQA's key/value repeats: unchanged
  (no biases in llama, so the gradient is the LRP-0/ε rule and conserves exactly);
- RMSNorm: the normaliser ``1/rms(x)`` is detached, so the norm is a linear map;
- SiLU: identity rule, ``g · sigmoid(g).detach()`` (its relevance passes through whole);
- the gate · up product and the bilinear Q·Kᵀ and A·V matmuls: uniform rule, half of the
  relevance to each factor (each factor's gradient is halved);
- softmax: the AttnLRP softmax rule R_z = z ⊙ (R_s − s Σ R_s), which is what the plain
  gradient of softmax times its input already gives, so the softmax is left as is. It is
  the one rule that does not conserve (its "bias" absorbs relevance).

``rule="cp"`` is CP-LRP instead (Ali et al. 2022, as ``lxt`` implements it): the attention
weights and the MLP gate are detached, so all relevance goes through the values and the
up projection; it conserves exactly.
``rule="none"`` is the plain forward (its gradient is ordinary gradient × input), which the
tests check against the HF forward.

Gemma 3 (``gemma3_forward``) gets the same rules on its own block: the four (1 + w) RMSNorms
around attention and MLP and the per-head q/k norms are linear maps with the normaliser
detached; its GELU (tanh) takes the identity rule, ``g · (gelu(g)/g).detach()``; sliding-window
layers attend through the window mask the scorer uses (``wif_core.models.scoring.layer_masks``),
with each layer type's own rotary embedding; the embedding scale √d is part of the input
embeddings attributed to. A final logit soft-cap, where a config has one, takes the identity
rule too (``lm_logits``), so the relevance of the capped logit passes whole.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from wif_core.models.scoring import layer_masks

Rule = Literal["attnlrp", "cp", "none"]
RULES: tuple[Rule, ...] = ("attnlrp", "cp", "none")


FAMILIES = ("llama", "gemma3_text")


def _supports_gemma3(cfg: Any) -> tuple[bool, str]:
    if getattr(cfg, "attention_bias", False):
        return False, "this Gemma 3 has attention biases, which the AttnLRP rules here do not cover"
    if getattr(cfg, "attn_logit_softcapping", None):
        return False, "this Gemma 3 soft-caps its attention logits, which the AttnLRP rules here do not cover"
    if getattr(cfg, "use_bidirectional_attention", False):
        return False, "this Gemma 3 attends bidirectionally; the rules here are for causal models"
    if getattr(cfg, "hidden_activation", None) not in _GELUS:
        return False, f"this Gemma 3's MLP activation is '{getattr(cfg, 'hidden_activation', '?')}', not GELU"
    return True, ""


def supports(model: Any) -> tuple[bool, str]:
    """Whether the AttnLRP rules here cover this model's architecture, and why not if not."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", type(model).__name__)
    if kind not in FAMILIES or not hasattr(model, "lm_head") or not hasattr(getattr(model, "model", None), "layers"):
        return False, f"AttnLRP rules exist for llama and Gemma 3 models only; this model is '{kind}'"
    if kind == "gemma3_text":
        return _supports_gemma3(cfg)
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        return False, "this llama has attention or MLP biases, which the AttnLRP rules here do not cover"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return False, f"this llama's MLP activation is '{getattr(cfg, 'hidden_act', '?')}', not SiLU"
    if getattr(cfg, "pretraining_tp", 1) > 1:
        return False, "tensor-parallel llama layers (pretraining_tp > 1) are not covered"
    return True, ""


def _half(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the forward pass, half of the gradient in the backward (the uniform rule)."""
    return 0.5 * x + (0.5 * x).detach()


def _rmsnorm(norm: Any, x: torch.Tensor, rule: Rule) -> torch.Tensor:
    inv = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).to(x.dtype)
    if rule != "none":
        inv = inv.detach()
    return norm.weight * (x * inv)


def _attend(
    attn: Any,
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    rope: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
    rule: Rule,
) -> torch.Tensor:
    """Rotary embedding, grouped keys and values, masked softmax attention and the output projection of
    ``[B, heads, L, head_dim]`` queries, keys and values, with ``rule``'s treatment of the softmax (Llama and
    Gemma 3 share it; they differ before, in their norms of q and k)."""
    q, k, v = qkv
    batch, _, length, _ = q.shape
    q, k = apply_rotary_pos_emb(q, k, *rope)
    k = repeat_kv(k, attn.num_key_value_groups)
    v = repeat_kv(v, attn.num_key_value_groups)
    if rule == "attnlrp":
        q, k = _half(q), _half(k)
    logits = torch.matmul(q, k.transpose(2, 3)) * attn.scaling
    logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    weights = torch.softmax(logits, dim=-1, dtype=torch.float32).to(q.dtype)
    if rule == "cp":
        weights = weights.detach()
    elif rule == "attnlrp":
        weights, v = _half(weights), _half(v)
    out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, length, -1)
    return attn.o_proj(out)


def _attention(
    attn: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor, *, rule: Rule
) -> torch.Tensor:
    batch, length, _ = x.shape
    hd = attn.head_dim
    q = attn.q_proj(x).view(batch, length, -1, hd).transpose(1, 2)
    k = attn.k_proj(x).view(batch, length, -1, hd).transpose(1, 2)
    v = attn.v_proj(x).view(batch, length, -1, hd).transpose(1, 2)
    return _attend(attn, (q, k, v), (cos, sin), mask, rule)


def _mlp(mlp: Any, x: torch.Tensor, rule: Rule) -> torch.Tensor:
    gate, up = mlp.gate_proj(x), mlp.up_proj(x)
    if rule == "none":
        return mlp.down_proj(mlp.act_fn(gate) * up)
    if rule == "cp":  # CP-LRP treats the gate as a constant: all relevance goes through up_proj
        return mlp.down_proj(mlp.act_fn(gate).detach() * up)
    act = gate * torch.sigmoid(gate).detach()
    return mlp.down_proj(_half(act) * _half(up))


def llama_forward(
    model: Any,
    embeds: torch.Tensor,
    position_ids: torch.Tensor,
    mask: torch.Tensor,
    rule: Rule = "attnlrp",
    *,
    hidden: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Final normed hidden states ``[B, L, d]`` of a llama for input embeddings ``[B, L, d]``.

    ``mask`` is a boolean ``[B, 1, L, L]`` (True = may attend). When ``hidden`` is a list,
    the residual stream after each block is appended to it (for the layer profile).
    """
    body = model.model
    cos, sin = body.rotary_emb(embeds, position_ids)
    h = embeds
    for layer in body.layers:
        h = h + _attention(layer.self_attn, _rmsnorm(layer.input_layernorm, h, rule), cos, sin, mask, rule=rule)
        h = h + _mlp(layer.mlp, _rmsnorm(layer.post_attention_layernorm, h, rule), rule)
        if hidden is not None:
            hidden.append(h)
    return _rmsnorm(body.norm, h, rule)


_GELUS = ("gelu_pytorch_tanh", "gelu_new", "gelu", "gelu_fast")


def forward(
    model: Any,
    embeds: torch.Tensor,
    position_ids: torch.Tensor,
    mask: torch.Tensor,
    rule: Rule = "attnlrp",
    *,
    hidden: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Final normed hidden states under ``rule`` for whichever family ``model`` is (see ``supports``)."""
    fn = gemma3_forward if getattr(model.config, "model_type", "") == "gemma3_text" else llama_forward
    return fn(model, embeds, position_ids, mask, rule, hidden=hidden)


def _identity(fn: Any, x: torch.Tensor, rule: Rule) -> torch.Tensor:
    """``fn(x)`` forward; under a rule, the identity rule: all of the output's relevance goes to ``x``."""
    y = fn(x)
    if rule == "none":
        return y
    ratio = torch.where(x == 0, torch.full_like(x, 0.5), y / torch.where(x == 0, torch.ones_like(x), x))
    return x * ratio.detach()


def lm_logits(model: Any, normed: torch.Tensor, rule: Rule) -> torch.Tensor:
    """The LM head's logits for final normed hidden states, soft-capped where the config says so."""
    logits = model.lm_head(normed)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = _identity(lambda z: torch.tanh(z / cap) * cap, logits, rule)
    return logits


def _gemma_norm(norm: Any, x: torch.Tensor, rule: Rule) -> torch.Tensor:
    """Gemma's RMSNorm, ``x / rms(x) · (1 + w)`` in at least float32 like the module; normaliser detached."""
    wide = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(wide)
    inv = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.eps)
    if rule != "none":
        inv = inv.detach()
    return (xf * inv * (1.0 + norm.weight.to(wide))).to(x.dtype)


def _gemma_attention(
    attn: Any, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor, *, rule: Rule
) -> torch.Tensor:
    batch, length, _ = x.shape
    hd = attn.head_dim
    q = _gemma_norm(attn.q_norm, attn.q_proj(x).view(batch, length, -1, hd).transpose(1, 2), rule)
    k = _gemma_norm(attn.k_norm, attn.k_proj(x).view(batch, length, -1, hd).transpose(1, 2), rule)
    v = attn.v_proj(x).view(batch, length, -1, hd).transpose(1, 2)
    return _attend(attn, (q, k, v), rope, mask, rule)


def _gemma_mlp(mlp: Any, x: torch.Tensor, rule: Rule) -> torch.Tensor:
    gate, up = mlp.gate_proj(x), mlp.up_proj(x)
    if rule == "none":
        return mlp.down_proj(mlp.act_fn(gate) * up)
    if rule == "cp":
        return mlp.down_proj(mlp.act_fn(gate).detach() * up)
    act = _identity(mlp.act_fn, gate, rule)
    return mlp.down_proj(_half(act) * _half(up))


def gemma3_forward(
    model: Any,
    embeds: torch.Tensor,
    position_ids: torch.Tensor,
    mask: torch.Tensor,
    rule: Rule = "attnlrp",
    *,
    hidden: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Final normed hidden states ``[B, L, d]`` of a Gemma 3 for input embeddings (already scaled by √d).

    ``mask`` is the boolean packed block mask; sliding-window layers narrow it to their window.
    """
    body = model.model
    per_type = layer_masks(model, mask, position_ids) or {"full_attention": mask, "sliding_attention": mask}
    kinds = model.config.layer_types
    ropes = {kind: body.rotary_emb(embeds, position_ids, kind) for kind in set(kinds)}
    h = embeds
    for layer, kind in zip(body.layers, kinds, strict=True):
        a = _gemma_attention(
            layer.self_attn, _gemma_norm(layer.input_layernorm, h, rule), ropes[kind], per_type[kind], rule=rule
        )
        h = h + _gemma_norm(layer.post_attention_layernorm, a, rule)
        m = _gemma_mlp(layer.mlp, _gemma_norm(layer.pre_feedforward_layernorm, h, rule), rule)
        h = h + _gemma_norm(layer.post_feedforward_layernorm, m, rule)
        if hidden is not None:
            hidden.append(h)
    return _gemma_norm(body.norm, h, rule)
