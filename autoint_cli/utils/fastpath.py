"""Matrix precision, torch.compile and CUDA graphs: the names users pick from, and how the library applies them.

Precision is applied in a context around the work that needs it, never left
behind as a global setting: :func:`precision_context` turns TF32 on or off for
CUDA matrix products and enters bf16 autocast, then restores what was there.
"""
import contextlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterator, Tuple

import torch

# fp32: exact float32 products; tf32: TF32 tensor-core products; bf16: bf16 autocast (TF32 for what autocast leaves
# in float32). In every case Φ's output layer and the section differences stay in float32.
PRECISIONS = ("fp32", "tf32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Those of them that replay CUDA graphs of their own (CudaGraphs cannot capture them).
GRAPHING_COMPILE_MODES = ("reduce-overhead", "max-autotune")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")


# The TF32 flags are process-wide, but bodies of matmul_precision can overlap on threads (training and its viewer, a
# renderer compiling while another draws). What each open body asked for, in the order they opened, and the flags from
# before the first: an ending body hands the flags to the latest one still open, and the last one restores them.
_TF32_LOCK = threading.Lock()
_TF32_OPEN: "OrderedDict[object, bool]" = OrderedDict()
_TF32_BEFORE = [(False, False)]


def _set_tf32(matmul: bool, cudnn: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """TF32 for CUDA float32 matrix products inside the body when ``precision`` is tf32 or bf16; the flags are restored once
    no body is open (bodies open on other threads at once share the flags: the latest opened sets them)."""
    check_precision(precision)
    tf32, token = precision in ("tf32", "bf16"), object()
    with _TF32_LOCK:
        if not _TF32_OPEN:
            _TF32_BEFORE[0] = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        _TF32_OPEN[token] = tf32
        _set_tf32(tf32, tf32)
    try:
        yield
    finally:
        with _TF32_LOCK:
            del _TF32_OPEN[token]
            if _TF32_OPEN:
                latest = next(reversed(_TF32_OPEN.values()))
                _set_tf32(latest, latest)
            else:
                _set_tf32(*_TF32_BEFORE[0])


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


class CudaGraphs:
    """``fn(*tensors)`` replayed as one CUDA graph per set of input shapes: the CPU launches one graph instead of every kernel.

    The first call with new shapes warms ``fn`` up on a side stream (Triton
    and torch.compile compile there, outside the capture), then captures it;
    later calls copy their inputs into the captured ones and replay. ``fn``
    must be capturable: no host synchronisation, no shapes that depend on
    values. It reads its parameters where they lie at every replay, so
    in-place updates of the weights are followed.

    All graphs share one memory pool, so memory is that of the largest, not
    the sum; in exchange **the returned tensors are overwritten by the next
    call**: copy out what is kept. At most ``max_graphs`` are kept, the
    least recently used dropped first.
    """

    def __init__(self, fn: Callable[..., Any], device: torch.device, max_graphs: int = 8, warmup: int = 2):
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {device}")
        self.fn, self.device, self.max_graphs, self.warmup = fn, device, max_graphs, warmup
        self._pool = torch.cuda.graph_pool_handle()
        self._graphs: "OrderedDict[Tuple, Tuple[torch.cuda.CUDAGraph, Tuple[torch.Tensor, ...], Any]]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._graphs)

    def __call__(self, *tensors: torch.Tensor) -> Any:
        key = tuple((t.shape, t.dtype) for t in tensors)
        if key not in self._graphs:
            self._graphs[key] = self._capture(tensors)
            if len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        graph, inputs, output = self._graphs[key]
        for static, t in zip(inputs, tensors):
            static.copy_(t)
        graph.replay()
        return output

    def _capture(self, tensors: Tuple[torch.Tensor, ...]):
        inputs = tuple(t.clone() for t in tensors)
        with torch.cuda.device(self.device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # lazy initialisation and compilation, which a capture cannot hold
                for _ in range(self.warmup):
                    self.fn(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                output = self.fn(*inputs)
        return graph, inputs, output
