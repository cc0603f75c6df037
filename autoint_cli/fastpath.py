"""Matrix precision and torch.compile: the names users pick from, and how the library applies them.

Precision is applied in a context around the work that needs it, never left
behind as a global setting: :func:`precision_context` turns TF32 on or off for
CUDA matrix products and enters bf16 autocast, then restores what was there.
"""
import contextlib
from typing import Callable, Iterator

import torch

# fp32: exact float32 products; tf32: TF32 tensor-core products; bf16: bf16 autocast (TF32 for what autocast leaves
# in float32). In every case Φ's output layer and the section differences stay in float32.
PRECISIONS = ("fp32", "tf32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """TF32 for CUDA float32 matrix products inside the body when ``precision`` is tf32 or bf16; the flags are restored on exit."""
    check_precision(precision)
    tf32 = precision in ("tf32", "bf16")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast(precision: str, device: torch.device):
    """bf16 autocast on ``device`` for bf16, a no-op context otherwise."""
    check_precision(precision)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Runs the body at ``precision`` (one of :data:`PRECISIONS`) on ``device``: :func:`matmul_precision` and :func:`autocast`."""
    with matmul_precision(precision), autocast(precision, device):
        yield


def compile_module(fn: Callable, mode: str = "default", padding: bool = True) -> Callable:
    """torch.compile of a module or function with static shapes, in one of torch's :data:`COMPILE_MODES`.

    Returns a new callable; ``fn`` itself is left as it was. ``padding``
    False turns off Inductor's padding of tensor strides. Rendering needs
    that: with torch 2.11 on an H100, the padded strides made the one-graph
    renderer return a wrong Φ at 160,000 rays a chunk (an error of 53 where Φ
    reaches 71; features and MLP compiled apart were right).
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; expected one of {', '.join(COMPILE_MODES)}")
    if padding:
        return torch.compile(fn, mode=mode, dynamic=False)
    from torch._inductor import list_mode_options

    # torch.compile takes a mode or options, not both: the mode's own options, padding off.
    options = {**list_mode_options(mode), "comprehensive_padding": False}
    return torch.compile(fn, options=options, dynamic=False)
