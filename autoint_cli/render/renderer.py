"""A renderer built once from a model and an immutable settings value: which renderer, at what N or K, how fast.

The :class:`Renderer` owns everything its settings call for (the fused or
layer-by-layer evaluators of Φ, the compiled chunk function, the chunk size)
and never changes the model it was given: several renderers of one model,
fused and not, compiled and not, can be used side by side.
"""
import contextlib
import dataclasses
import functools
import logging
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional

import torch
from torch import Tensor

from ..autoint.fused import DEFAULT_CONFIG, available as fused_available
from ..config import ConfigError, SpeedConfig
from ..models import RadianceField, SceneModel
from ..utils.fastpath import COMPILE_MODES, GRAPHING_COMPILE_MODES, CudaGraphs, autocast, check_precision, compile_module, matmul_precision
from ..volume.rays import Rays
from ..volume.rendering import QUADRATURE_SAMPLES, REFINE_SECTIONS, RENDERERS, RenderOutput, render_integral, render_quadrature, render_refined
from .chunks import ChunkSize, check_one_ray_fits, measure_chunk

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderSettings:
    """How a :class:`Renderer` renders.

    Attributes:
        renderer: ``integral`` (Φ at the N + 1 posts) or ``quadrature`` (grad networks at K samples).
        n_sections: the integral renderer's N (None: as trained; the learned posts are resampled otherwise).
        n_samples: the quadrature renderer's K.
        precision: one of :data:`~autoint_cli.utils.fastpath.PRECISIONS`; Φ and its differences stay float32.
        compile_mode: torch.compile the whole chunk function in this mode (None: eager).
        fused_mlp: with bf16 integral renders where Triton runs, Φ's MLP as one fused kernel.
        cuda_graphs: on CUDA, each chunk shape replayed as one CUDA graph (see :class:`~autoint_cli.utils.fastpath.CudaGraphs`).
        chunk: rays rendered together (None: measured on the first view to fit half the free GPU memory).
        refine: R, the integral renderer's sections around each ray's surface cut in R each (1: not refined; see
            :func:`~autoint_cli.volume.rendering.render_refined`).
        refine_sections: how many sections around the surface are cut with ``refine`` > 1.
    """

    renderer: str = "integral"
    n_sections: Optional[int] = None
    n_samples: int = QUADRATURE_SAMPLES
    precision: str = "fp32"
    compile_mode: Optional[str] = None
    fused_mlp: bool = False
    cuda_graphs: bool = False
    chunk: Optional[int] = None
    refine: int = 1
    refine_sections: int = REFINE_SECTIONS

    def __post_init__(self):
        if self.renderer not in RENDERERS:
            raise ValueError(f"unknown renderer {self.renderer!r}; expected one of {', '.join(RENDERERS)}")
        check_precision(self.precision)
        if self.refine < 1 or self.refine_sections < 1:
            raise ValueError(f"refine and refine_sections must be at least 1, got {self.refine} and {self.refine_sections}")
        if self.refine > 1 and self.renderer != "integral":
            raise ValueError(f"refine {self.refine}: only the integral renderer's sections can be refined, not {self.renderer}'s")
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {self.compile_mode!r}; expected one of {', '.join(COMPILE_MODES)}")
        if self.cuda_graphs and self.compile_mode in GRAPHING_COMPILE_MODES:
            raise ValueError(f"cuda_graphs: compile mode {self.compile_mode} makes CUDA graphs of its own; choose one or the other")

    def replace(self, **changes) -> "RenderSettings":
        return dataclasses.replace(self, **changes)


def useful_window(kept: Optional[int], n_sections: Optional[int]) -> Optional[int]:
    """``kept`` when a window of that many sections saves work for a renderer of ``n_sections`` (an integral renderer, None
    for quadrature, of more than ``kept`` sections), else None: the one test of whether frames draw a pixel on a window."""
    return kept if kept is not None and n_sections is not None and kept < n_sections else None


@contextlib.contextmanager
def inference(precision: str) -> Iterator[None]:
    """A renderer's call: no gradients, the matrix precision of ``precision`` (:func:`~autoint_cli.utils.fastpath.matmul_precision`)."""
    with torch.no_grad(), matmul_precision(precision):
        yield


class ChunkCall:
    """A renderer's function of one chunk, run as its settings say: compiled or eager, replayed as CUDA graphs (on CUDA)
    or launched kernel by kernel, always without gradients at the settings' precision.

    ``fn(rays, *per_ray)`` renders rays [n_rays] with any per-ray tensors [n_rays] (a section window's first sections).
    A CUDA graph is captured per shape of those tensors; its output is overwritten by the next replay.
    """

    def __init__(self, fn: Callable[..., RenderOutput], settings: RenderSettings, device: torch.device):
        self.precision = settings.precision
        self.fn = fn if settings.compile_mode is None else compile_module(fn, settings.compile_mode, padding=False)
        self.graphs: Optional[CudaGraphs] = None
        if settings.cuda_graphs and device.type == "cuda":
            # Looked up at each capture, so that the graphs hold the function as it is then.
            self.graphs = CudaGraphs(lambda origins, directions, near, far, *per_ray: self.fn(Rays(origins, directions, near, far), *per_ray),
                                     device)

    def __call__(self, rays: Rays, *per_ray: Tensor) -> RenderOutput:
        with inference(self.precision):
            if self.graphs is not None:
                return self.graphs(rays.origins, rays.directions, rays.near, rays.far, *per_ray)
            return self.fn(rays, *per_ray)

    def probe(self, rays: Rays, *per_ray: Tensor) -> RenderOutput:
        """As a call, never through a CUDA graph."""
        with inference(self.precision):
            return self.fn(rays, *per_ray)


class Renderer:
    """Renders rays of one model with one :class:`RenderSettings`.

    Every choice is made here, once: whether Φ runs fused (logged when it
    cannot), what is compiled. Calls run without gradients at the settings'
    precision, restoring the TF32 flags afterwards.

    Args:
        model: the trained model; read, never changed.
        background: [3] colour behind the scene, on the device to render on.
        settings: how to render.
    """

    def __init__(self, model: SceneModel, background: Tensor, settings: RenderSettings = RenderSettings()):
        self.settings = settings
        self.background = background
        self.device = background.device
        self.fused = False
        chunk_fn = self._integral(model) if settings.renderer == "integral" else self._quadrature(model)
        if settings.cuda_graphs and self.device.type != "cuda":
            logger.info("CUDA graphs: not on %s; chunks are launched kernel by kernel", self.device)
        self._run = ChunkCall(chunk_fn, settings, self.device)
        self._chunk: Optional[ChunkSize] = None if settings.chunk is None else ChunkSize(settings.chunk)
        self._windows: Dict[int, SectionWindows] = {}
        self._n_sections = settings.n_sections or model.config.n_sections if settings.renderer == "integral" else None
        # Network evaluations per ray: Φ at the N + 1 posts (and the refined sections' new posts), or the grad networks at K samples.
        self.samples_per_ray = self._integral_posts() if settings.renderer == "integral" else settings.n_samples
        # A generous bound on the live float32 values of one evaluation of each field network (its input features and a few
        # layers' activations): about 4x the peak measured for the 10x256 networks on an H200.
        bytes_per_sample = 4.0 * len(model.field.networks) * (3 * model.config.netwidth + 256)
        try:
            check_one_ray_fits(self.samples_per_ray, bytes_per_sample, self.device)
        except MemoryError as err:
            option = f"n_sections {self.samples_per_ray - 1}" if settings.renderer == "integral" else f"n_samples {settings.n_samples}"
            raise ConfigError(f"{option}: {err}") from None

    def _integral_posts(self) -> int:
        """Φ's posts per ray: N + 1, and refine_sections·(refine − 1) more when refined (refine_sections ≤ N checked)."""
        s, n = self.settings, self._n_sections
        if s.refine == 1:
            return n + 1
        if s.refine_sections > n:
            raise ConfigError(f"refine_sections {s.refine_sections}: at most the {n} sections rendered")
        return n + 1 + s.refine_sections * (s.refine - 1)

    def _integral(self, model: SceneModel) -> Callable[[Rays], RenderOutput]:
        s = self.settings
        fuse = s.fused_mlp and s.precision == "bf16"
        if fuse and not fused_available(self.device):
            logger.info("fused MLP kernel: not on %s here (it needs Triton and a CUDA device); Phi runs as separate layers", self.device)
            fuse = False
        evaluators, why = model.field.integral_evaluators(DEFAULT_CONFIG if fuse else None, reduce_output=s.compile_mode is not None)
        if why:
            logger.info("fused MLP kernel: not for this model (%s); Phi runs as separate layers", why)
        self.fused = fuse and not why
        phi = functools.partial(RadianceField.evaluate, evaluators)
        kappa = model.config.colour_by_density

        def render(rays: Rays, first: Optional[Tensor] = None, kept: Optional[int] = None) -> RenderOutput:
            with autocast(s.precision, self.device):
                if s.refine > 1 and first is None:
                    return render_refined(phi, model.sections, rays, self.background, s.n_sections, s.refine, s.refine_sections, kappa)
                return render_integral(phi, model.sections, rays, self.background, s.n_sections, first, kept, kappa)

        self._integral_fn = render
        return render

    @property
    def integral_fn(self) -> Callable[..., RenderOutput]:
        """An integral renderer's eager function of one chunk: ``(rays [n_rays], first [n_rays] = None, kept = None)`` ->
        RenderOutput, on all N sections or on a window of ``kept`` from ``first`` (see
        :func:`~autoint_cli.volume.rendering.render_integral`). What a :class:`SectionWindows` compiles for itself."""
        if self.settings.renderer != "integral":
            raise ValueError(f"integral_fn: the integral renderer's, not {self.settings.renderer}'s")
        return self._integral_fn

    @property
    def n_sections(self) -> Optional[int]:
        """N of an integral renderer (None for quadrature), before any refinement."""
        return self._n_sections

    def useful_window(self, kept: Optional[int]) -> Optional[int]:
        """``kept`` when a window of that many sections saves work here, else None (see :func:`useful_window`; a refined
        renderer draws every pixel on all its sections)."""
        return None if self.settings.refine > 1 else useful_window(kept, self.n_sections)

    def _quadrature(self, model: SceneModel) -> Callable[[Rays], RenderOutput]:
        s = self.settings
        grad = functools.partial(RadianceField.evaluate, model.field.grad_networks())
        kappa = model.config.colour_by_density

        def render(rays: Rays) -> RenderOutput:
            with autocast(s.precision, self.device):
                return render_quadrature(grad, rays, self.background, s.n_samples, colour_by_density=kappa)

        return render

    def __call__(self, rays: Rays) -> RenderOutput:
        """One chunk of rays [n_rays] in one call (compiled renderers keep one shape: see :func:`~autoint_cli.render.chunks.render_chunks`).
        With CUDA graphs the output is overwritten by the next call: copy out what is kept."""
        return self._run(rays)

    def probe(self, rays: Rays) -> RenderOutput:
        """As a call, but never through a CUDA graph: measuring memory, nothing is captured."""
        return self._run.probe(rays)

    def window(self, kept: int) -> "SectionWindows":
        """This renderer on ``kept`` of each ray's N sections, from a first section given per ray (integral renderers)."""
        if self.settings.renderer != "integral" or not 0 < kept or self.settings.refine > 1:
            raise ValueError(f"section windows: the integral renderer unrefined and kept > 0, not {self.settings.renderer}, refine "
                             f"{self.settings.refine} and {kept}")
        if kept not in self._windows:
            self._windows[kept] = SectionWindows(self, kept)
        return self._windows[kept]

    @property
    def chunk(self) -> Optional[int]:
        """The chunk size in use (None until measured)."""
        return None if self._chunk is None else self._chunk.rays

    def measure_chunk(self, rays: Rays) -> int:
        """The chunk size, measured on ``rays`` when the settings leave it open and it is not known yet."""
        if self._chunk is None:
            self._chunk = ChunkSize(measure_chunk(self.probe, rays, self.device, self.samples_per_ray))
        return self._chunk.rays

    def warm_up(self, rays: Rays) -> None:
        """Renders ``rays`` [*rays] once, untimed, so that kernels are compiled and caches filled before frames are timed."""
        self.render(rays)

    def render(self, rays: Rays, keep_weights: bool = False) -> RenderOutput:
        """Rays of any shape [*rays], in chunks: measured on the first call when the settings leave it open, halved after
        out-of-memory. Weights [*rays, samples_per_ray − 1] are kept if asked for."""
        return self.render_chunked(self, rays, keep_weights=keep_weights)

    def render_chunked(self, render: Callable[..., RenderOutput], rays: Rays, **options) -> RenderOutput:
        """``render`` (this renderer, or one of its section windows) over rays [*rays] in this renderer's chunks, halved
        after out-of-memory; ``options`` as :meth:`ChunkSize.render`'s."""
        self.measure_chunk(rays.reshape(-1))
        return self._chunk.render(render, rays, **options)


class SectionWindows:
    """A :class:`Renderer`'s integral render of ``kept`` sections per ray, from a first section given per ray
    (``first`` [n_rays]; see :func:`~autoint_cli.volume.rendering.render_integral`): compiled and replayed as CUDA graphs as the
    renderer's settings say, in the renderer's chunks. Build through :meth:`Renderer.window`."""

    def __init__(self, renderer: Renderer, kept: int):
        self.renderer, self.kept = renderer, kept
        integral = renderer.integral_fn

        def render(rays: Rays, first: Tensor) -> RenderOutput:
            return integral(rays, first, kept)

        self._run = ChunkCall(render, renderer.settings, renderer.device)

    def __call__(self, rays: Rays, first: Tensor) -> RenderOutput:
        """One chunk: rays [n_rays], first [n_rays]. With CUDA graphs the output is overwritten by the next call."""
        return self._run(rays, first)

    def probe(self, rays: Rays, first: Tensor) -> RenderOutput:
        """As a call, but never through a CUDA graph (a warm-up compiles this way, capturing nothing)."""
        return self._run.probe(rays, first)

    def measure_chunk(self, rays: Rays) -> int:
        """The renderer's chunk: a window evaluates fewer posts per ray, so it fits as well."""
        return self.renderer.measure_chunk(rays)

    def render(self, rays: Rays, first: Tensor) -> RenderOutput:
        """Rays of any shape [*rays] from their first sections [*rays], in the renderer's chunks (halved after out-of-memory)."""
        return self.renderer.render_chunked(self, rays, per_ray=first)


def render_settings(speed: SpeedConfig, run_precision: str, **choice) -> RenderSettings:
    """The settings of ``autoint-render``/``autoint-eval``'s speed flags, the run's precision unless overridden.

    ``choice``: the renderer's own fields (renderer, n_sections, n_samples).
    """
    return RenderSettings(
        precision=speed.precision or run_precision,
        compile_mode=speed.compile_mode if speed.compile else None,
        fused_mlp=speed.fused_mlp,
        cuda_graphs=speed.cuda_graphs,
        chunk=speed.chunk,
        **choice,
    )
