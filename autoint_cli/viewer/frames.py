"""The viewer's frames: viser's camera convention, and images of a trained run drawn by its renderer, with empty space skipped.

viser's cameras follow OpenCV's axes (x right, y down, looking along +z) with
a quaternion w, x, y, z; this package's ``c2w`` uses OpenGL's (y up, looking
along −z): the two differ by a half turn about x.

Skipping empty space and section windows: :mod:`autoint_cli.render.skipping`.
"""
import logging
import threading
import time
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ..render import skipping
from ..render.media import to8b, turbo_depth
from ..render.renderer import Renderer, RenderSettings
from ..render.skipping import render_rays, render_skipping_empty
from ..render.views import timed, view_rays
from ..runs.loader import LoadedRun
from ..scene.camera_path import focal_from_fov, vertical_fov
from ..volume.rays import Intrinsics, Rays

logger = logging.getLogger(__name__)

# What the viewer can show, by the names its dropdown uses.
VIEW_OUTPUTS = ("rgb", "depth", "acc")
# OpenCV camera axes to OpenGL ones (and back): x kept, y and z flipped.
_FLIP = np.diag([1.0, -1.0, -1.0])


def c2w_from_viewer(wxyz, position) -> np.ndarray:
    """A viser camera (quaternion w, x, y, z of camera-to-world in OpenCV axes; position) as an OpenGL c2w [3, 4]."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64)
    rotation = Rotation.from_quat([x, y, z, w]).as_matrix() @ _FLIP
    return np.concatenate((rotation, np.asarray(position, dtype=np.float64)[:, None]), 1)


def viewer_from_c2w(c2w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`c2w_from_viewer`: (wxyz, position) of an OpenGL c2w [3, 4]."""
    x, y, z, w = Rotation.from_matrix(np.asarray(c2w, dtype=np.float64)[:, :3] @ _FLIP).as_quat()
    return np.array([w, x, y, z]), np.asarray(c2w, dtype=np.float64)[:, 3].copy()


def viewer_intrinsics(fov: float, aspect: float, height: int) -> Intrinsics:
    """The pinhole camera of a vertical field of view ``fov`` (radians), width/height ``aspect``, ``height`` lines."""
    width = max(1, int(round(height * aspect)))
    return Intrinsics.from_focal(height, width, focal_from_fov(float(np.degrees(fov)), height))


class TurnLock:
    """A lock taken in the order it was asked for. threading.Lock is not fair: a draw loop that takes it again at once
    can keep a warm-up thread waiting for it frame after frame."""

    def __init__(self):
        self._changed = threading.Condition()
        self._next_ticket = self._serving = 0

    def __enter__(self) -> "TurnLock":
        with self._changed:
            ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
            self._changed.wait_for(lambda: self._serving == ticket)
        return self

    def __exit__(self, *exc) -> None:
        with self._changed:
            self._serving += 1
            self._changed.notify_all()


class FrameRenderer:
    """Frames of one trained run for the viewer: a renderer per (N, renderer kind), kept once built."""

    def __init__(self, run: LoadedRun, settings: RenderSettings, device: torch.device, skip_block: int = 4,
                 warm_in_background: bool = False, window: Optional[int] = None):
        """``warm_in_background``: a compiled or CUDA-graph renderer for an (N, kind) not drawn before is compiled and
        captured on a thread of its own while an eager renderer draws the frames (see :meth:`warming`); otherwise the
        first frame waits for it. ``window`` K: frames that skip empty space render a pixel on K sections where that is
        enough (see :func:`render_skipping_empty`)."""
        self.run, self.settings, self.device, self.skip_block, self.window = run, settings, device, skip_block, window
        self.background = torch.tensor(run.scene.background, device=device)
        self.pieces = skipping.takes_pieces(settings)
        self.warm_in_background = warm_in_background and self.pieces
        self._renderers: Dict[Tuple[int, str], Renderer] = {}
        self._stand_ins: Dict[Tuple[int, str], Renderer] = {}
        self._warming: Dict[Tuple[int, str], threading.Thread] = {}
        # One frame at a time, whichever browser asks: a CUDA-graph renderer replays from one set of input buffers. Taken
        # in turn, so that a warm-up waiting to capture between two frames gets its turn while frames keep coming.
        self._lock = TurnLock()

    @property
    def n_sections(self) -> int:
        """The N a frame has unless told otherwise: the settings' (autoint-view --n_sections), else the trained one."""
        return self.settings.n_sections or self.run.config.model.n_sections

    def renderer(self, n_sections: int, kind: str) -> Renderer:
        """The renderer of the settings for (N, kind), built now if need be (compiled, if so, by its first frame)."""
        key = (n_sections, kind)
        if key not in self._renderers:
            self._renderers[key] = self._build(key)
        return self._renderers[key]

    def _build(self, key: Tuple[int, str], **changes) -> Renderer:
        # The settings' refinement is the integral renderer's: the quadrature reference has no sections to cut.
        refine = {} if key[1] == "integral" else {"refine": 1}
        return Renderer(self.run.model, self.background, replace(self.settings, n_sections=key[0], renderer=key[1], **refine, **changes))

    def warming(self, n_sections: int, kind: str = "integral") -> bool:
        """Whether frames at (N, kind) are drawn by an eager stand-in while the settings' renderer is compiled and captured."""
        thread = self._warming.get((n_sections, kind))
        return thread is not None and thread.is_alive()

    def _drawing(self, key: Tuple[int, str]) -> Tuple[Renderer, bool]:
        """(the renderer that draws a frame at ``key`` now, whether it takes rays in pieces): with ``warm_in_background``,
        an eager stand-in until the settings' renderer is ready (its warm-up is started on first use)."""
        if not self.warm_in_background or key in self._renderers:
            return self.renderer(*key), self.pieces
        if key not in self._warming:
            self._warming[key] = threading.Thread(target=self._warm, args=(key,), daemon=True, name=f"warm-up N={key[0]} {key[1]}")
            self._warming[key].start()
        if key not in self._stand_ins:
            self._stand_ins[key] = self._build(key, compile_mode=None, cuda_graphs=False)
        return self._stand_ins[key], False

    def _warm(self, key: Tuple[int, str]) -> None:
        """Compiles the settings' renderer for ``key`` at both piece sizes while frames go on, then captures its CUDA graphs
        between two frames (nothing else may use the GPU during a capture) and hands it over. A failure leaves the stand-in."""
        start = time.perf_counter()
        try:
            renderer = self._build(key)
            with self._lock:  # measured between frames: their memory would count in its peak
                pieces = self._warm_up_pieces(renderer)
            self._call_pieces(renderer, pieces, capture=False)  # compiles; captures nothing
            with self._lock:
                self._call_pieces(renderer, pieces, capture=True)
                self._renderers[key] = renderer
        except Exception:  # the viewer keeps drawing with the eager stand-in
            logger.exception("N=%d (%s): the compiled renderer failed to warm up; frames stay eager", *key)
            return
        logger.info("N=%d (%s): compiled renderer ready in %.0f s", key[0], key[1], time.perf_counter() - start)

    def _first_view(self, height: int) -> Tuple[np.ndarray, Intrinsics]:
        """(c2w [3, 4], camera ``height`` lines high) of the scene's first path view at the scene's field of view."""
        scene = self.run.scene
        return scene.render_c2w[0].double().numpy(), viewer_intrinsics(np.radians(vertical_fov(scene.intrinsics)), scene.W / scene.H, height)

    def _warm_up_pieces(self, renderer: Renderer) -> List[Rays]:
        """Rays of the first path view at the scene's size, repeated to fill a piece of each size ``renderer`` takes."""
        c2w, camera = self._first_view(self.run.scene.H)
        return skipping.filled_pieces(renderer, view_rays(self.run.scene, torch.as_tensor(c2w, dtype=torch.float32), self.device, camera))

    def _window_of(self, renderer: Renderer) -> Optional[int]:
        """The section window frames of ``renderer`` use (None: all N sections)."""
        return renderer.useful_window(self.window)

    def _call_pieces(self, renderer: Renderer, pieces: List[Rays], capture: bool) -> None:
        """``renderer``, and its section window if frames use one, once on each piece (:func:`skipping.call_pieces`; with
        ``capture`` between frames: nothing else may use the GPU during a capture)."""
        skipping.call_pieces(renderer, pieces, self._window_of(renderer), capture)

    def warm_up(self, height: int) -> float:
        """Renders the scene's first path view, ``height`` lines high, once with and once without skipping, so that a
        compiled or CUDA-graph renderer at the settings' N has compiled and captured its pieces (both sizes, if the view has
        a large piece's rays) before anyone waits for a frame; returns the seconds taken."""
        c2w, camera = self._first_view(height)
        start = time.perf_counter()
        renderer = self.renderer(self.n_sections, "integral")  # built here, so these frames wait for it (no stand-in)
        for skip_empty in (True, False):
            self.render(c2w, camera, skip_empty=skip_empty)
        with self._lock:  # both piece sizes, section windows included, whatever this view needed
            self._call_pieces(renderer, self._warm_up_pieces(renderer), capture=True)
        return time.perf_counter() - start

    def render(self, c2w: np.ndarray, camera: Intrinsics, output: str = "rgb", n_sections: Optional[int] = None,
               kind: str = "integral", skip_empty: bool = False) -> Tuple[np.ndarray, float]:
        """(uint8 image [H, W, 3] of ``output``, milliseconds from the pose to the image on the host) at the OpenGL pose
        ``c2w`` [3, 4]; with ``skip_empty``, empty space is skipped (see the module's docstring)."""
        with self._lock:
            return timed(lambda: self._image(c2w, camera, output, n_sections, kind, skip_empty), self.device)

    def _image(self, c2w: np.ndarray, camera: Intrinsics, output: str, n_sections: Optional[int], kind: str,
               skip_empty: bool) -> np.ndarray:
        renderer, pieces = self._drawing((n_sections or self.n_sections, kind))
        rays = view_rays(self.run.scene, torch.as_tensor(c2w, dtype=torch.float32), self.device, camera)
        if skip_empty:  # the colour view skips haze of the background's colour; the opacity and depth views show it
            out = render_skipping_empty(renderer, rays, self.skip_block, by="rgb" if output == "rgb" else "acc", pieces=pieces,
                                        window=self._window_of(renderer))
        else:
            out = render_rays(renderer, rays, pieces)
        if output == "depth":
            return turbo_depth([out.depth[..., 0].float().cpu().numpy()], [out.acc[..., 0].float().cpu().numpy()])[0]
        if output == "acc":
            return np.repeat(to8b(out.acc), 3, axis=-1)
        return to8b(out.rgb)
