"""The precision of the forward passes (``train.precision``, ``maspo eval --precision``) and
the bf16 units of this machine.

- ``fp32``: every matmul in float32.
- ``bf16``: bf16 autocast. Matmuls (and, on a GPU, attention) run in bf16; weights,
  gradients, AdamW state, the logits once computed (softmax, log-probs, entropies) and
  the loss stay fp32. On a CPU, attention over several tokens runs in fp32 even so
  (``FP32_ATTENTION``): the CPU's bf16 attention backward was 4-5x slower than fp32's.

On a CPU at either precision a decode step's attention reads the cache's key/value heads
in place (``gqa_sdpa``) instead of transformers' copy of them per query head; at fp32 so
does every masked attention (prompts, log-prob passes, updates).
- ``auto``: bf16 where the hardware multiplies bf16 natively and bf16 was measured faster
  (a CPU with AMX-BF16 units; a CUDA GPU with bf16 tensor cores), else fp32. A CPU with
  AVX512-BF16 but no AMX gets fp32: on an AMD EPYC (Zen 4) maspo's bf16 step took 0.71 of
  its fp32 step at 8 new tokens but 0.96 at 64.

Autocast caches the bf16 copy of each trainable weight until the outermost autocast
context ends. ``weight_cache`` holds one open across several passes (a training step:
sampling, old log-probs, the updates), so the weights are cast once per optimizer step,
not once per pass; code that changes the weights inside it (an optimizer step) must clear
that cache (``torch.clear_autocast_cache``), or later passes multiply by the old weights.
A copy cast in a no-grad pass (sampling) still carries the gradient to its fp32 weight in
a later pass (tested).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

CPU_ATTENTION = "maspo_cpu_sdpa"  # attention implementation on a CPU: transformers' sdpa
FP32_ATTENTION = "maspo_fp32_sdpa"  # the same under bf16, over several tokens in fp32
GQA_SDPA = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 5)
"""Whether sdpa takes fewer key/value heads than query heads (``enable_gqa``, torch 2.5)."""
NATIVE_CPU_FLAGS = ("amx_bf16",)  # CPU units for which auto picks bf16 (measured faster)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")  # CPU flags reported
CPUINFO = Path("/proc/cpuinfo")  # Linux: the flags lscpu shows


@dataclass(frozen=True)
class Bf16Units:
    """What this machine offers for bf16 matmuls on one device."""

    device: str  # "cpu", or the GPU's name
    capability: str  # torch's CPU kernel level (AVX512, AVX2, ...) or "sm_XY" on a GPU
    flags: tuple[str, ...]  # bf16 units found (CPU flags; "bf16" on a GPU that has them)
    native: bool  # auto picks bf16 here

    def describe(self) -> str:
        found = ", ".join(self.flags) if self.flags else "no bf16 units"
        verdict = "auto picks bf16" if self.native else "auto picks fp32"
        return f"{self.device}: {self.capability}, {found} ({verdict})"


def _cpuinfo_field(name: str) -> str:
    """The first ``name : value`` line's value in /proc/cpuinfo ("" where absent)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is absent)."""
    return set(_cpuinfo_field("flags").split())


def cpu_vendor() -> str:
    """The CPU's vendor (``GenuineIntel``, ``AuthenticAMD``; "" where unknown). The math
    libraries pick their kernels by vendor as well as by instruction set, so float
    results that match bit for bit on one vendor's CPU can differ in the last bits on
    another's at the same ``cpu_capability``."""
    return _cpuinfo_field("vendor_id")


def bf16_units(device: torch.device | str) -> Bf16Units:
    """The bf16 units of ``device``'s hardware, and whether ``auto`` picks bf16 there."""
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return Bf16Units(torch.cuda.get_device_name(device), f"sm_{major}{minor}",
                         ("bf16",) if native else (), native)
    flags = cpu_flags()
    found = tuple(f for f in BF16_CPU_FLAGS if f in flags)
    return Bf16Units("cpu", torch.backends.cpu.get_cpu_capability(), found,
                     all(f in flags for f in NATIVE_CPU_FLAGS))


def resolve_precision(name: str, device: torch.device | str) -> str:
    """``fp32`` or ``bf16``: ``name`` itself, or what ``auto`` picks on ``device``."""
    if name != "auto":
        return name
    return "bf16" if bf16_units(device).native else "fp32"


def autocast(precision: str, device: torch.device | str):
    """The context the forward passes run in: bf16 autocast for ``bf16``, else nothing."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def weight_cache(precision: str, device: torch.device | str):
    """The context that keeps autocast's bf16 copies of the weights from one forward pass
    (each in its own ``autocast``) to the next, until it ends or the cache is cleared.

    It is an autocast context that is itself off: the code between passes runs in fp32
    as before, but the cache outlives each pass's context. Nothing under fp32.
    """
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, enabled=False)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, precision: str) -> None:
    """On a CPU, switch the model's sdpa attention to ``CPU_ATTENTION`` (under bf16:
    ``FP32_ATTENTION``): attention reads the key/value heads in place (``gqa_sdpa``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    on_cpu = next(base.parameters()).device.type == "cpu"
    if not on_cpu or base.config._attn_implementation != "sdpa":
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    name = FP32_ATTENTION if precision == "bf16" else CPU_ATTENTION
    AttentionInterface.register(name, fp32_sdpa if precision == "bf16" else cpu_sdpa)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    base.set_attn_implementation(name)


def gqa_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
             value: torch.Tensor, attention_mask: torch.Tensor | None,
             dropout: float = 0.0, scaling: float | None = None,
             **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention with a mask, with the key/value heads as they are.

    Given a mask (the sampler and the log-prob passes always give one), transformers
    copies each key/value head to every query head it serves before calling sdpa: a copy
    of the keys and values per layer and pass (of the whole cache at each decode step),
    3x for the default model's 9 query and 3 key/value heads. sdpa's own grouped-query
    mode reads them in place. On a CPU the values are the same bit for bit, forward and
    backward (tests compare the attention function, every decode step of a decoder and the
    golden training runs). A draw of the study's 64 rows cost about 0.8x; in the prompt
    pass of 128 study prompts, attention and copies took 0.22 against 0.39 CPU-s.
    """
    if not GQA_SDPA:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        enable_gqa=groups > 1)
    return out.transpose(1, 2).contiguous(), None


def cpu_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, through ``gqa_sdpa`` where transformers would copy the
    key/value heads (a mask given) and no dropout is drawn (whose random mask might fall
    differently); with no mask transformers itself reads them in place."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    in_place = attention_mask is not None and not kwargs.get("dropout")
    attend = gqa_sdpa if in_place else sdpa_attention_forward
    return attend(module, query, key, value, attention_mask, **kwargs)


def fp32_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention with q, k, v (B, heads, T, d) in fp32, autocast off;
    the output comes back in the query's dtype.

    A single query (a decode step: no backward follows) keeps sdpa as autocast runs it
    (``gqa_sdpa``), which is faster there and reads the sampler's bf16 key/value cache
    as it is stored (``maspo.rollout.kv_cache``), with no cast of the whole cache each
    step. The choice depends on the shapes alone, so the old-policy pass and the update's
    pass over the same tokens still compute alike (the first ratio stays exactly 1).
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.shape[2] == 1:
        return gqa_sdpa(module, query, key, value, attention_mask, **kwargs)
    dtype = query.dtype
    with torch.autocast(query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(),
                                              value.float(), attention_mask, **kwargs)
    return out.to(dtype), weights
