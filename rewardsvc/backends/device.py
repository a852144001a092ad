"""Device and dtype choice shared by every backend: fp32 on CPU, bf16 on GPU unless configured."""

from __future__ import annotations

from typing import Any


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} configured but no CUDA GPU is visible; use device: cpu")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """`auto` -> float32 on CPU (bf16 matmul is ~6x slower on these CPUs), bfloat16 on GPU."""
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype {dtype!r}: use auto, float32, bfloat16 or float16") from None
