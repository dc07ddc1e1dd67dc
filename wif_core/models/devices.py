"""Where a model runs and in what precision: ``--device`` and ``--dtype``, and a batch size that fits.

``resolve_device`` turns ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` / ``mps`` into a ``torch.device`` (``auto``:
a CUDA GPU when torch sees one, else Apple's MPS, else the CPU) and refuses, in one line, a device torch does not
see. ``resolve_dtype`` turns ``float32`` / ``bfloat16`` / ``float16`` into a ``torch.dtype``. ``place`` casts and
moves a loaded model as ``from_pretrained(dtype=...)`` would have built it. ``auto_max_tokens`` picks the padded
tokens per forward batch from the device's free memory. Whatever the model's precision, log-likelihoods are
computed in float32 or wider (``wif_core.models.scoring``) and activations are stored as float16.

Nothing here imports torch until a function is called, so the CLI can offer the names without it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from wif_core.errors import InputError
from wif_core.heavy import heavy_imports
from wif_core.models import DEFAULT_MAX_TOKENS

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
"""What ``--device`` accepts (and ``cuda:N`` for one GPU of several)."""
DTYPES = ("float32", "bfloat16", "float16")
"""What ``--dtype`` accepts; ``float32`` is the default, and the precision every run had before there was a choice."""
DEFAULT_DEVICE = "cpu"
DEFAULT_DTYPE = "float32"
# The share of a GPU's free memory one forward batch may plan to use: the rest absorbs the allocator's
# fragmentation and what the estimate in ``auto_max_tokens`` leaves out.
MEMORY_SHARE = 0.5
MAX_AUTO_TOKENS = 1 << 17  # beyond this, batches are not faster, and a bad estimate costs more


def _torch() -> Any:
    with heavy_imports():
        import torch
    return torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``name`` as a ``torch.device`` that torch can use here; a device it does not see is an ``InputError``.

    ``auto`` is ``cuda`` when ``torch.cuda.is_available()``, else ``mps`` when ``torch.backends.mps.is_available()``,
    else ``cpu``. A bare ``cuda`` is the current CUDA device (``cuda:0`` unless set otherwise).
    """
    torch = _torch()
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device '{name}': use auto, cpu, cuda, cuda:N (one GPU of several) or mps")
    if device.type == "cuda":
        return _cuda(torch, device, text)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(
            f"--device {text}: torch {torch.__version__} sees no Apple MPS device (it needs macOS on Apple silicon "
            "and a torch built with MPS); use --device cpu or auto"
        )
    return torch.device("cpu") if device.type == "cpu" else device


def _cuda(torch: Any, device: torch.device, text: str) -> torch.device:
    if not torch.cuda.is_available():
        why = (
            f"torch {torch.__version__} is built without CUDA (install a CUDA build of torch)"
            if torch.version.cuda is None
            else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA GPU (no device, or no driver)"
        )
        raise InputError(f"--device {text}: {why}; use --device cpu or auto")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= count:
        raise InputError(
            f"--device {text}: torch sees {count} CUDA GPU{'s' if count != 1 else ''} "
            f"(cuda:0..cuda:{count - 1}); pick one of them, or --device auto"
        )
    return torch.device("cuda", index)


def resolve_dtype(name: str | torch.dtype = DEFAULT_DTYPE, device: torch.device | None = None) -> torch.dtype:
    """``name`` (``float32``, ``bfloat16`` or ``float16``) as a ``torch.dtype``, checked against ``device``.

    float16 on the CPU runs (torch 2.13), but its matrix products there are about ten times slower than
    float32's, while bfloat16's are faster: it is allowed with a warning. bfloat16 on a CUDA GPU that lacks it
    (before Ampere) is refused. float16 overflows where activations exceed 65504 (Gemma 3's sink token does):
    prefer bfloat16 for half precision.
    """
    torch = _torch()
    by_name = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if isinstance(name, torch.dtype):
        found = [k for k, v in by_name.items() if v == name]
        if not found:
            raise InputError(f"--dtype {name}: use {', '.join(DTYPES)}")
        name = found[0]
    text = str(name).strip().lower()
    if text not in by_name:
        raise InputError(f"--dtype '{name}': use {', '.join(DTYPES)}")
    dtype = by_name[text]
    if device is not None and device.type == "cpu" and dtype == torch.float16:
        log.warning(
            "--dtype float16 on the CPU is about ten times slower than float32 (its matrix products are not "
            "vectorised there); bfloat16 is the fast half precision on a CPU"
        )
    if (
        device is not None
        and device.type == "cuda"
        and dtype == torch.bfloat16
        and not torch.cuda.is_bf16_supported(including_emulation=False)
    ):
        raise InputError(
            f"--dtype bfloat16: {torch.cuda.get_device_name(device)} has no bfloat16 support; "
            "use --dtype float16 or float32"
        )
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` as ``"bfloat16"`` (the name ``--dtype`` takes and run configs record)."""
    return str(dtype).removeprefix("torch.")


def model_device(model: Any) -> torch.device:
    """The device a model's weights are on (its ``device`` attribute, else its first parameter's)."""
    torch = _torch()
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def model_dtype(model: Any) -> torch.dtype:
    """The precision of a model's weights (its ``dtype`` attribute, else its first parameter's, else float32)."""
    torch = _torch()
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    first = next(iter(model.parameters()), None)
    return first.dtype if first is not None else torch.float32


def place(model: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """``model`` cast to ``dtype`` and moved to ``device`` (in place), as ``from_pretrained(dtype=dtype)`` builds it.

    ``Module.to(dtype)`` would also cast the rotary embeddings' ``inv_freq`` buffers, which transformers keeps
    in float32 (positions far into a sequence lose their phase in bfloat16): those stay float32.
    """
    torch = _torch()
    model.to(device=device, dtype=dtype)
    if dtype != torch.float32:
        for module in model.modules():
            for name, buf in list(module.named_buffers(recurse=False)):
                if "inv_freq" in name and buf.is_floating_point():
                    setattr(module, name, buf.to(torch.float32))
    return model


def _free_bytes(torch: Any, device: torch.device) -> int | None:
    """Free memory on an accelerator, in bytes; None on the CPU or where torch cannot say."""
    try:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        if device.type == "mps":
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    except (RuntimeError, AttributeError):  # an old torch, or a driver that does not answer
        return None
    return None


def bytes_per_token(model: Any, longest: int, kept_layers: int) -> int:
    """Estimated device memory of one padded token of a packed forward batch, in bytes.

    With ``b`` bytes per element of the model's dtype, width ``d``, MLP width ``f``, ``h`` attention heads,
    vocabulary ``V``, ``c = kept_layers`` captured blocks and rows of ``L = longest`` tokens::

        b·d·(c + 4)          the residual stream, and the captured blocks' outputs kept until the batch ends
      + 3·b·f                one block's MLP intermediates (gate, up, their product), freed block by block
      + L·(8 + h·(b + 4))    the block masks (boolean, a few of them) and one layer's attention scores
                             (model dtype, then float32 softmax) where the kernel materialises them
      + V·(b + 8) / 2        logits at scored positions only (at most about half of a packed row), in the
                             model's dtype, widened to float32, and their float32 log-softmax

    The weights are not counted: they are loaded already, so the free memory excludes them.
    """
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    b = next(iter(model.parameters())).element_size()
    d = int(cfg.hidden_size)
    f = int(getattr(cfg, "intermediate_size", None) or 4 * d)
    h = int(getattr(cfg, "num_attention_heads", 1) or 1)
    vocab = int(getattr(cfg, "vocab_size", 0) or 0)
    return b * d * (kept_layers + 4) + 3 * b * f + longest * (8 + h * (b + 4)) + vocab * (b + 8) // 2


def auto_max_tokens(model: Any, longest: int, kept_layers: int) -> int:
    """Padded tokens per forward batch for ``model`` on its device when the caller gives none.

    On the CPU it is ``DEFAULT_MAX_TOKENS`` (memory is not what limits a CPU batch: larger batches spill the
    cache and run slower), so CPU runs batch as they always did. On a GPU it is ``MEMORY_SHARE`` of the free
    memory divided by ``bytes_per_token``, at least one row of ``longest`` tokens, at most ``MAX_AUTO_TOKENS``.
    """
    torch = _torch()
    device = model_device(model)
    free = _free_bytes(torch, device)
    if free is None:
        return DEFAULT_MAX_TOKENS
    per_token = bytes_per_token(model, longest, kept_layers)
    tokens = int(free * MEMORY_SHARE) // max(per_token, 1)
    chosen = max(longest, min(tokens, MAX_AUTO_TOKENS))
    log.info("%s: %.1f GiB free, ~%d bytes per token: %d tokens per batch", device, free / 2**30, per_token, chosen)
    return chosen
