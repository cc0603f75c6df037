"""autoint-view: a trained run in the browser (viser), drawn by the integral renderer whenever the camera or a control changes.

viser's cameras follow OpenCV's axes (x right, y down, looking along +z) with
a quaternion w, x, y, z; this package's ``c2w`` uses OpenGL's (y up, looking
along −z): the two differ by a half turn about x.
While the camera moves, frames are drawn ``preview_scale`` times smaller; when
it has been still for ``settle_seconds``, at full size (at most
``max_height`` lines).
"""
import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from .atomic import write_text
from .config import ConfigError
from .data.camera_path import focal_from_fov, vertical_fov
from .media import to8b, turbo_depth
from .rays import Intrinsics
from .renderer import Renderer, RenderSettings
from .run_loader import LoadedRun
from .views import timed, view_rays

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


class FrameRenderer:
    """Frames of one trained run for the viewer: a renderer per (N, renderer kind), kept once built."""

    def __init__(self, run: LoadedRun, settings: RenderSettings, device: torch.device):
        self.run, self.settings, self.device = run, settings, device
        self.background = torch.tensor(run.scene.background, device=device)
        self._renderers: Dict[Tuple[int, str], Renderer] = {}

    def renderer(self, n_sections: int, kind: str) -> Renderer:
        key = (n_sections, kind)
        if key not in self._renderers:
            self._renderers[key] = Renderer(self.run.model, self.background, replace(self.settings, n_sections=n_sections, renderer=kind))
        return self._renderers[key]

    def render(self, c2w: np.ndarray, camera: Intrinsics, output: str = "rgb", n_sections: Optional[int] = None,
               kind: str = "integral") -> Tuple[np.ndarray, float]:
        """(uint8 image [H, W, 3] of ``output``, milliseconds of the render itself) at the OpenGL pose ``c2w`` [3, 4]."""
        n = n_sections or self.run.config.model.n_sections
        renderer = self.renderer(n, kind)
        pose = torch.as_tensor(c2w, dtype=torch.float32)
        out, ms = timed(lambda: renderer.render(view_rays(self.run.scene, pose, self.device, camera)), self.device)
        if output == "depth":
            return turbo_depth([out.depth[..., 0].float().cpu().numpy()], [out.acc[..., 0].float().cpu().numpy()])[0], ms
        if output == "acc":
            return np.repeat(to8b(out.acc.float().cpu().numpy()), 3, axis=-1), ms
        return to8b(out.rgb.float().cpu().numpy()), ms


@dataclass(frozen=True)
class Keyframe:
    """A camera the user kept for a path: OpenGL c2w [3, 4] and vertical field of view in degrees."""

    c2w: np.ndarray
    fov: float


def camera_path_document(keyframes: List[Keyframe], fps: float, seconds: float, width: int, height: int) -> dict:
    """``keyframes`` as a keyframe camera-path file (see :mod:`autoint_cli.data.camera_path`), for ``autoint-render --camera_path``."""
    return {"keyframes": [{"c2w": np.asarray(k.c2w).tolist(), "fov": float(k.fov)} for k in keyframes], "fps": fps, "seconds": seconds,
            "width": width, "height": height}


def save_camera_path(path: Path, keyframes: List[Keyframe], fps: float, seconds: float, width: int, height: int) -> Path:
    """Writes the keyframes as a camera-path file, atomically."""
    if len(keyframes) < 2:
        raise ValueError("a camera path needs at least 2 keyframes")
    return write_text(Path(path), json.dumps(camera_path_document(keyframes, fps, seconds, width, height), indent=1) + "\n")


@dataclass(frozen=True)
class ViewerOptions:
    """How the viewer draws: the most lines, the preview's reduction while moving, how long still is "stopped", what it shows
    first, and the least time between two frames of a client (while training, so that drawing takes little from the steps)."""

    max_height: int = 800
    preview_scale: int = 4
    settle_seconds: float = 0.2
    output: str = "rgb"
    min_interval: float = 0.0


def viser_module():
    """viser, or a ConfigError whose message says how to install it."""
    try:
        import viser
    except ImportError:
        raise ConfigError("autoint-view needs viser: pip install -e '.[viewer]' (or pip install viser)") from None
    return viser


class _Controls:
    """The page's controls; ``version`` counts their changes, so that a client loop knows to draw again."""

    def __init__(self, server, frames: FrameRenderer, output: str = "rgb"):
        start = frames.settings.n_sections or frames.run.config.model.n_sections
        self.version = 0
        self.n_sections = server.gui.add_slider("N sections", min=1, max=max(64, start), step=1, initial_value=start)
        self.output = server.gui.add_dropdown("show", VIEW_OUTPUTS, initial_value=output)
        self.kind = server.gui.add_dropdown("renderer", ("integral", "quadrature"), initial_value="integral")
        scene = frames.run.scene
        self.fov = server.gui.add_slider("field of view (deg)", min=5, max=120, step=1,
                                         initial_value=int(round(vertical_fov(scene.intrinsics))))
        self.readout = server.gui.add_markdown("ms per frame: –")
        for handle in (self.n_sections, self.output, self.kind):
            handle.on_update(lambda _: self._changed())
        # The field of view is the browser camera's: set it there, and the loops see the camera change.
        self.fov.on_update(lambda _: [setattr(client.camera, "fov", self.fov_radians) for client in server.get_clients().values()])

    @property
    def fov_radians(self) -> float:
        return float(np.radians(self.fov.value))

    def _changed(self) -> None:
        self.version += 1


def _draw_training_cameras(server, scene) -> None:
    """Every training camera as a thin frustum, 3% of the cameras' spread in size (so that they do not hide the scene)."""
    poses = scene.c2w[scene.i_train].double().numpy()
    spread = float(np.ptp(poses[:, :, 3], axis=0).max()) or 1.0
    fov = np.radians(vertical_fov(scene.intrinsics))
    for i, c2w in zip(scene.i_train.tolist(), poses):
        wxyz, position = viewer_from_c2w(c2w)
        server.scene.add_camera_frustum(f"/training/{i}", fov=float(fov), aspect=scene.W / scene.H, scale=0.03 * spread,
                                        thickness=0.002 * spread, wxyz=wxyz, position=position, color=(90, 90, 200))


def _draw(client, frames: FrameRenderer, controls: _Controls, height: int) -> float:
    """Renders the client's current view at ``height`` lines and shows it; returns the render's milliseconds."""
    camera = client.camera
    c2w = c2w_from_viewer(camera.wxyz, camera.position)
    image, ms = frames.render(c2w, viewer_intrinsics(camera.fov, camera.aspect, height), controls.output.value,
                              int(controls.n_sections.value), controls.kind.value)
    client.scene.set_background_image(image, format="jpeg", jpeg_quality=90)
    return ms


def _client_loop(client, frames: FrameRenderer, controls: _Controls, options: ViewerOptions, gone: threading.Event) -> None:
    """Draws a client's view whenever its camera or a control changes: small at once, full size once the camera is still."""
    seen, changed_at, full_drawn = None, 0.0, True
    while not gone.is_set():
        camera = client.camera
        state = (tuple(np.round(camera.wxyz, 6)), tuple(np.round(camera.position, 6)), round(camera.fov, 6), round(camera.aspect, 4),
                 controls.version)
        full = min(options.max_height, int(getattr(camera, "image_height", 0) or frames.run.scene.H))
        if state != seen:
            seen, changed_at, full_drawn = state, time.perf_counter(), False
            _draw(client, frames, controls, max(16, full // options.preview_scale))
            time.sleep(options.min_interval)
        elif not full_drawn and time.perf_counter() - changed_at >= options.settle_seconds:
            ms = _draw(client, frames, controls, full)
            controls.readout.content = f"ms per frame: {ms:.1f} ({full} lines)"
            full_drawn = True
            time.sleep(options.min_interval)
        else:
            time.sleep(0.01)


def check_port(host: str, port: int) -> None:
    """Refuses a port that something already listens on (ConfigError, one line)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As a server binds: connections of an earlier run still closing (TIME_WAIT) do not hold the port, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen()
        except OSError as err:
            raise ConfigError(f"--port {port}: cannot listen on {host} ({err.strerror or err}); choose another port or host") from None


def start_viewer(frames: FrameRenderer, host: str, port: int, options: ViewerOptions, paths_dir: Path):
    """Serves the page on host:port and returns the viser server (``server.stop()`` ends it)."""
    viser = viser_module()
    server = viser.ViserServer(host=host, port=port, verbose=False)
    controls = _Controls(server, frames, options.output)
    _draw_training_cameras(server, frames.run.scene)
    _keyframe_controls(server, frames, paths_dir)
    scene = frames.run.scene
    # The first pose of the scene's own video path: a view of the scene, not from inside a training camera's frustum.
    start = scene.render_c2w[0].double().numpy()
    gone: Dict[int, threading.Event] = {}

    def connected(client) -> None:
        wxyz, position = viewer_from_c2w(start)
        client.camera.position, client.camera.wxyz = position, wxyz
        client.camera.fov = controls.fov_radians
        gone[client.client_id] = threading.Event()
        threading.Thread(target=_client_loop, args=(client, frames, controls, options, gone[client.client_id]), daemon=True).start()

    server.on_client_connect(connected)
    server.on_client_disconnect(lambda client: gone.pop(client.client_id, threading.Event()).set())
    return server


def _keyframe_controls(server, frames: FrameRenderer, paths_dir: Path) -> None:
    """Buttons that keep the current camera as a keyframe and write the keyframes as a camera-path file."""
    keyframes: List[Keyframe] = []
    add = server.gui.add_button("add keyframe")
    save = server.gui.add_button("save camera path")
    status = server.gui.add_markdown("keyframes: 0")

    @add.on_click
    def _(event) -> None:
        camera = event.client.camera
        keyframes.append(Keyframe(c2w_from_viewer(camera.wxyz, camera.position), float(np.degrees(camera.fov))))
        status.content = f"keyframes: {len(keyframes)}"

    @save.on_click
    def _(event) -> None:
        if len(keyframes) < 2:
            status.content = f"keyframes: {len(keyframes)} (a path needs 2)"
            return
        scene = frames.run.scene
        path = paths_dir / f"path_{time.strftime('%Y%m%d_%H%M%S')}.json"
        save_camera_path(path, keyframes, 30.0, 2.0 * (len(keyframes) - 1), scene.W, scene.H)
        status.content = f"keyframes: {len(keyframes)}; saved {path}"
        logger.info("saved %d keyframes to %s (render it with autoint-render --camera_path)", len(keyframes), path)
