"""Chunks of rays: equal-size pieces of a batch, the chunk size that fits a GPU, and halving it after out-of-memory."""
import logging
import math
import os
from typing import Callable, Dict, List, Optional

import torch

from ..volume.rays import Rays
from ..volume.rendering import RenderOutput

logger = logging.getLogger(__name__)


def chunk_slices(n: int, chunk: int) -> List[slice]:
    """[0, n) in consecutive pieces of ``chunk`` items, the last one shorter (training's gradient sub-batches)."""
    return [slice(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def render_chunks(render: Callable[..., RenderOutput], rays: Rays, chunk: int, same_size: bool = False,
                  per_ray: Optional[torch.Tensor] = None, keep_weights: bool = False) -> RenderOutput:
    """Renders a batch of rays in chunks of at most ``chunk`` rays and joins the outputs (weights are dropped unless
    ``keep_weights``: then every ray must have as many as the others).

    n rays take ⌈n / chunk⌉ chunks of equal size ⌈n / count⌉, so that little
    is padded; the last is padded to that size by repeating its final ray, so
    that the renderer sees one shape only (compiled networks and CUDA graphs
    need a fixed shape). The padding is cut off again. ``same_size``: every
    chunk has exactly ``chunk`` rays, whatever n is, so that batches of
    varying n still meet one shape (more is padded). ``per_ray`` [*rays]: a
    value for each ray, cut into the same chunks and passed as
    ``render(rays, values)`` (a section window's first section).
    """
    flat = rays.reshape(-1)
    values = None if per_ray is None else per_ray.reshape(-1)
    n = flat.shape[0]
    size = chunk if same_size else math.ceil(n / math.ceil(n / chunk)) if n > chunk else n
    parts = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        index = torch.arange(start, start + size, device=flat.origins.device).clamp(max=n - 1)
        out = render(flat[index]) if values is None else render(flat[index], values[index])
        # Copied out at once: a CUDA-graph renderer reuses its output memory on the next chunk.
        parts.append({name: value[: stop - start].clone() for name, value in output_parts(out, keep_weights).items()})
    return join_outputs(parts, rays.shape)


# The outputs every chunk keeps (weights only when asked: a batch's rays may have different numbers of them).
JOINED = ("rgb", "acc", "depth")


def output_parts(out: RenderOutput, keep_weights: bool = False) -> Dict[str, torch.Tensor]:
    """The outputs of a piece that :func:`join_outputs` joins, by name: :data:`JOINED`, and the weights if asked for."""
    return {name: getattr(out, name) for name in JOINED + (("weights",) if keep_weights else ())}


def join_outputs(parts: List[Dict[str, torch.Tensor]], shape: torch.Size) -> RenderOutput:
    """Outputs of consecutive pieces of a flat batch, each a dict of [n_i, C] tensors (rgb, acc, depth and maybe weights),
    joined in order and reshaped to [*shape, C]; weights are empty unless every piece has them."""
    joined = {name: torch.cat([part[name] for part in parts], 0).reshape(*shape, -1) for name in parts[0]}
    return RenderOutput(joined["rgb"], joined["acc"], joined["depth"], joined.get("weights", torch.empty(0)))


class ChunkSize:
    """The chunk size a render uses, halved for good when the GPU runs out of memory."""

    def __init__(self, rays: int):
        self.rays = rays

    def render(self, render: Callable[..., RenderOutput], rays: Rays, per_ray: Optional[torch.Tensor] = None,
               keep_weights: bool = False) -> RenderOutput:
        """render_chunks (``per_ray``, ``keep_weights`` as there), retried with half the chunk after an out-of-memory error
        (said once per halving)."""
        while True:
            try:
                with torch.no_grad():
                    return render_chunks(render, rays, self.rays, per_ray=per_ray, keep_weights=keep_weights)
            except torch.cuda.OutOfMemoryError:
                if self.rays <= 1:
                    raise
                self.rays = max(1, self.rays // 2)
                torch.cuda.empty_cache()
                logger.warning("out of GPU memory while rendering; retrying with chunk %d", self.rays)


def chunk_for_memory(bytes_per_ray: float, free_bytes: float, fraction: float = 0.5, largest: int = 1 << 18) -> int:
    """The largest power of two n with n · bytes_per_ray ≤ fraction · free_bytes, at most ``largest``.

    A power of two keeps chunks a multiple of the GEMM tile sizes; the upper
    bound is where larger chunks stop paying on current GPUs. One ray that
    does not fit is refused (MemoryError with the figures).
    """
    if bytes_per_ray <= 0:
        return largest
    fits = fraction * free_bytes / bytes_per_ray
    if fits < 1:
        raise MemoryError(f"one ray needs about {bytes_per_ray / 2**30:.3g} GiB, more than the {fraction * free_bytes / 2**30:.3g} GiB "
                          f"this render may use ({fraction:.0%} of what is free)")
    n = 1 << math.floor(math.log2(fits))
    return int(min(n, largest))


def available_memory(device: torch.device) -> Optional[float]:
    """Bytes free for a render on ``device``: on CUDA what is free plus PyTorch's cached blocks; on the CPU the available
    physical memory (None where the OS does not say)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_one_ray_fits(samples_per_ray: int, bytes_per_sample: float, device: torch.device, fraction: float = 0.5) -> None:
    """Refuses (MemoryError) a render whose single ray would need more than ``fraction`` of the memory available, before any
    allocation: a huge N or K would otherwise fail deep inside a layer, or wake the OS's out-of-memory killer."""
    free = available_memory(device)
    if free is not None:
        chunk_for_memory(samples_per_ray * bytes_per_sample, free, fraction)


# Network evaluations per chunk on the CPU (32768 rays at N = 16), and in the GPU's probe (4096 rays at K = 128).
CPU_SAMPLES = 32768 * 17
PROBE_SAMPLES = 4096 * 129


def measure_chunk(render: Callable[[Rays], RenderOutput], rays: Rays, device: torch.device, samples_per_ray: int = 17,
                  probe: int = 4096, fraction: float = 0.5) -> int:
    """A chunk size for ``render`` on this device, chosen by measuring.

    On CUDA: renders a probe of ``rays`` eagerly (at most ``probe`` rays and
    :data:`PROBE_SAMPLES` evaluations; compiled networks too, so that no
    second shape is compiled), takes the peak memory it needed per ray, and
    fits the chunk in ``fraction`` of what is free (free on the device plus
    PyTorch's cached blocks). On the CPU memory is rarely the limit: chunks
    of at most :data:`CPU_SAMPLES` network evaluations (a power of two of
    rays, 32768 at N = 16). Either way a huge N or K
    gives small chunks rather than an allocation failure.
    """
    if device.type != "cuda":
        return 1 << int(math.log2(max(1, CPU_SAMPLES // samples_per_ray)))
    flat = rays.reshape(-1)
    flat = flat[torch.arange(max(1, min(probe, PROBE_SAMPLES // samples_per_ray, flat.shape[0])), device=flat.origins.device)]
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):
        render(flat)
    torch.cuda.synchronize(device)
    per_ray = (torch.cuda.max_memory_allocated(device) - before) / flat.shape[0]
    free = available_memory(device)
    chunk = chunk_for_memory(per_ray, free, fraction)
    logger.info("chunk %d rays (%.1f KiB per ray measured, %.1f GiB free)", chunk, per_ray / 1024, free / 2**30)
    return chunk
