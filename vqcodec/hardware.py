"""What the machine computes fast: native bfloat16 (AVX512-BF16 or AMX on a CPU, or a GPU)."""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=8)
def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively; elsewhere it is emulated, and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
