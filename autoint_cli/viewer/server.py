"""autoint-view: a trained run in the browser (viser), drawn by the integral renderer whenever the camera or a control changes.

While the camera moves, frames are drawn ``preview_scale`` times smaller; when
it has been still for ``settle_seconds``, at full size (at most
``max_height`` lines). A client's frames are JPEG-encoded and sent on a thread
of their own, so that the next frame renders meanwhile. Frames come from
:mod:`autoint_cli.viewer.frames` (viser's camera convention is described there).
"""
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..config import ConfigError
from ..scene.camera_path import vertical_fov
from ..utils.atomic import write_text
from .frames import VIEW_OUTPUTS, FrameRenderer, c2w_from_viewer, viewer_from_c2w, viewer_intrinsics

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Keyframe:
    """A camera the user kept for a path: OpenGL c2w [3, 4] and vertical field of view in degrees."""

    c2w: np.ndarray
    fov: float


def camera_path_document(keyframes: List[Keyframe], fps: float, seconds: float, width: int, height: int) -> dict:
    """``keyframes`` as a keyframe camera-path file (see :mod:`autoint_cli.scene.camera_path`), for ``autoint-render --camera_path``."""
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
    first, whether empty space is skipped at first (:mod:`autoint_cli.render.skipping`), the least time between two frames of a client
    and, when set, how often a still view is drawn again (while training, so that drawing takes little from the steps and the
    picture follows the weights)."""

    max_height: int = 800
    preview_scale: int = 4
    settle_seconds: float = 0.2
    output: str = "rgb"
    skip_empty: bool = True
    min_interval: float = 0.0
    refresh_seconds: Optional[float] = None


@dataclass(frozen=True)
class FrameTime:
    """One frame the viewer sent: its size, the milliseconds of its render (pose to image on the host) and of its JPEG
    encoding and hand-over to viser, and when it was handed over (time.perf_counter)."""

    height: int
    width: int
    render_ms: float
    encode_ms: float
    sent_at: float


class FrameLog:
    """Every frame the viewer sent, in order (for the benchmark script and the tests); safe to add to from several threads."""

    def __init__(self):
        self._frames: List[FrameTime] = []
        self._lock = threading.Lock()

    def add(self, frame: FrameTime) -> None:
        with self._lock:
            self._frames.append(frame)

    def frames(self) -> List[FrameTime]:
        with self._lock:
            return list(self._frames)


def viser_module():
    """viser, or a ConfigError whose message says how to install it."""
    try:
        import viser
    except ImportError:
        raise ConfigError("autoint-view needs viser: pip install -e '.[viewer]' (or pip install viser)") from None
    return viser


class _Controls:
    """The page's controls; ``version`` counts their changes, so that a client loop knows to draw again."""

    def __init__(self, server, frames: FrameRenderer, options: ViewerOptions):
        start = frames.n_sections
        self.version = 0
        self.n_sections = server.gui.add_slider("N sections", min=1, max=max(64, start), step=1, initial_value=start)
        self.output = server.gui.add_dropdown("show", VIEW_OUTPUTS, initial_value=options.output)
        self.kind = server.gui.add_dropdown("renderer", ("integral", "quadrature"), initial_value="integral")
        self.skip_empty = server.gui.add_checkbox("skip empty space", initial_value=options.skip_empty,
                                                  hint="render at full size only where a 4x smaller first pass sees something")
        scene = frames.run.scene
        self.fov = server.gui.add_slider("field of view (deg)", min=5, max=120, step=1,
                                         initial_value=int(round(vertical_fov(scene.intrinsics))))
        self.readout = server.gui.add_markdown("ms per frame: –")
        for handle in (self.n_sections, self.output, self.kind, self.skip_empty):
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


class _Sender:
    """Encodes and sends one client's frames on a thread of its own while the next frame renders. A frame still waiting when
    a newer one comes is dropped: the newest view is the one to show."""

    def __init__(self, client, controls: _Controls, log: Optional[FrameLog], gone: threading.Event):
        self.client, self.controls, self.log, self.gone = client, controls, log, gone
        self._pending = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, image: np.ndarray, render_ms: float, full: bool, note: str = "") -> None:
        """Hands over a frame; ``note`` is added to the readout of a full-size frame."""
        with self._lock:
            self._pending = (image, render_ms, full, note)
            self._ready.set()

    def _run(self) -> None:
        while not self.gone.is_set():
            if not self._ready.wait(0.05):
                continue
            with self._lock:
                (image, render_ms, full, note), self._pending = self._pending, None
                self._ready.clear()
            start = time.perf_counter()
            self.client.scene.set_background_image(image, format="jpeg", jpeg_quality=90)
            # Sent now: viser otherwise gathers messages in windows of 1/60 s, where a newer frame replaces an older one,
            # which holds a browser to 60 frames/s and adds up to 17 ms of latency.
            self.client.flush()
            sent = time.perf_counter()
            encode_ms = (sent - start) * 1e3
            if self.log is not None:
                self.log.add(FrameTime(image.shape[0], image.shape[1], render_ms, encode_ms, sent))
            if full:
                self.controls.readout.content = (f"ms per frame: {render_ms:.1f} render + {encode_ms:.1f} encode "
                                                 f"({image.shape[1]}x{image.shape[0]}){note}")


def _draw(client, frames: FrameRenderer, controls: _Controls, sender: _Sender, height: int, full: bool) -> None:
    """Renders the client's current view at ``height`` lines and hands it to the sender."""
    camera = client.camera
    c2w = c2w_from_viewer(camera.wxyz, camera.position)
    # Previews are small and cheap: skipping is for full-size frames (and a compiled renderer then meets fewer shapes).
    n_sections, kind = int(controls.n_sections.value), controls.kind.value
    image, ms = frames.render(c2w, viewer_intrinsics(camera.fov, camera.aspect, height), controls.output.value, n_sections, kind,
                              full and bool(controls.skip_empty.value))
    sender.submit(image, ms, full, "; eager while this N compiles" if frames.warming(n_sections, kind) else "")


def _client_loop(client, frames: FrameRenderer, controls: _Controls, options: ViewerOptions, gone: threading.Event,
                 log: Optional[FrameLog] = None) -> None:
    """Draws a client's view whenever its camera or a control changes: small at once, full size once the camera is still,
    and again every ``refresh_seconds`` when that is set."""
    sender = _Sender(client, controls, log, gone)
    previews_are_full = options.preview_scale == 1
    seen, changed_at, full_at = None, 0.0, None
    while not gone.is_set():
        camera = client.camera
        state = (tuple(np.round(camera.wxyz, 6)), tuple(np.round(camera.position, 6)), round(camera.fov, 6), round(camera.aspect, 4),
                 controls.version)
        full = min(options.max_height, int(getattr(camera, "image_height", 0) or frames.run.scene.H))
        now = time.perf_counter()
        stale = full_at is not None and options.refresh_seconds is not None and now - full_at >= options.refresh_seconds
        if state != seen:
            seen, changed_at, full_at = state, now, None
            _draw(client, frames, controls, sender, max(16, full // options.preview_scale), full=previews_are_full)
            if previews_are_full:
                full_at = time.perf_counter()
            time.sleep(options.min_interval)
        elif (full_at is None and now - changed_at >= options.settle_seconds) or stale:
            _draw(client, frames, controls, sender, full, full=True)
            full_at = time.perf_counter()
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


def start_viewer(frames: FrameRenderer, host: str, port: int, options: ViewerOptions, paths_dir: Path,
                 log: Optional[FrameLog] = None):
    """Serves the page on host:port and returns the viser server (``server.stop()`` ends it); ``log``, when given, gets
    every frame sent."""
    viser = viser_module()
    server = viser.ViserServer(host=host, port=port, verbose=False)
    controls = _Controls(server, frames, options)
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
        threading.Thread(target=_client_loop, args=(client, frames, controls, options, gone[client.client_id], log), daemon=True).start()

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
