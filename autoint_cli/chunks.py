"""Chunks of rays: equal-size pieces of a batch, the chunk size that fits a GPU, and halving it after out-of-memory."""
import logging
import math
from typing import Callable, List

import torch

from .rays import Rays
from .render import RenderOutput

logger = logging.getLogger(__name__)


def chunk_slices(n: int, chunk: int) -> List[slice]:
    """[0, n) in consecutive pieces of ``chunk`` items, the last one shorter (training's gradient sub-batches)."""
    return [slice(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def render_chunks(render: Callable[[Rays], RenderOutput], rays: Rays, chunk: int) -> RenderOutput:
    """Renders a batch of rays in chunks of at most ``chunk`` rays and joins the outputs (weights are dropped).

    n rays take ⌈n / chunk⌉ chunks of equal size ⌈n / count⌉, so that little
    is padded; the last is padded to that size by repeating its final ray, so
    that the renderer sees one shape only (compiled networks and CUDA graphs
    need a fixed shape). The padding is cut off again.
    """
    flat = rays.reshape(-1)
    n = flat.shape[0]
    size = math.ceil(n / math.ceil(n / chunk)) if n > chunk else n
    parts = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        index = torch.arange(start, start + size, device=flat.origins.device).clamp(max=n - 1)
        out = render(flat[index])
        # Copied out at once: a CUDA-graph renderer reuses its output memory on the next chunk.
        parts.append([getattr(out, name)[: stop - start].clone() for name in ("rgb", "acc", "depth")])
    joined = [torch.cat([p[i] for p in parts], 0) for i in range(3)]
    shape = rays.shape
    return RenderOutput(*(x.reshape(*shape, x.shape[-1]) for x in joined), weights=torch.empty(0))


class ChunkSize:
    """The chunk size a render uses, halved for good when the GPU runs out of memory."""

    def __init__(self, rays: int):
        self.rays = rays

    def render(self, render: Callable[[Rays], RenderOutput], rays: Rays) -> RenderOutput:
        """render_chunks, retried with half the chunk after an out-of-memory error (said once per halving)."""
        while True:
            try:
                with torch.no_grad():
                    return render_chunks(render, rays, self.rays)
            except torch.cuda.OutOfMemoryError:
                if self.rays <= 1:
                    raise
                self.rays = max(1, self.rays // 2)
                torch.cuda.empty_cache()
                logger.warning("out of GPU memory while rendering; retrying with chunk %d", self.rays)


def chunk_for_memory(bytes_per_ray: float, free_bytes: float, fraction: float = 0.5, smallest: int = 1024, largest: int = 1 << 18) -> int:
    """The largest power of two n with n · bytes_per_ray ≤ fraction · free_bytes, clamped to [smallest, largest].

    A power of two keeps chunks a multiple of the GEMM tile sizes; the upper
    bound is where larger chunks stop paying on current GPUs.
    """
    if bytes_per_ray <= 0:
        return largest
    fits = fraction * free_bytes / bytes_per_ray
    n = 1 << max(0, math.floor(math.log2(fits))) if fits >= 1 else 1
    return int(min(max(n, smallest), largest))


CPU_CHUNK = 32768


def measure_chunk(render: Callable[[Rays], RenderOutput], rays: Rays, device: torch.device, probe: int = 4096, fraction: float = 0.5) -> int:
    """A chunk size for ``render`` on this device, chosen by measuring.

    On CUDA: renders ``probe`` of ``rays`` eagerly (compiled networks too, so
    that no second shape is compiled), takes the peak memory it needed per
    ray, and fits the chunk in ``fraction`` of what is free (free on the
    device plus PyTorch's cached blocks). On the CPU memory is rarely the
    limit: :data:`CPU_CHUNK`.
    """
    if device.type != "cuda":
        return CPU_CHUNK
    flat = rays.reshape(-1)
    flat = flat[torch.arange(min(probe, flat.shape[0]), device=flat.origins.device)]
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):
        render(flat)
    torch.cuda.synchronize(device)
    per_ray = (torch.cuda.max_memory_allocated(device) - before) / flat.shape[0]
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    chunk = chunk_for_memory(per_ray, free + cached, fraction)
    logger.info("chunk %d rays (%.1f KiB per ray measured, %.1f GiB free)", chunk, per_ray / 1024, (free + cached) / 2**30)
    return chunk
