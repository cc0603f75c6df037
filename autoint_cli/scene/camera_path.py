"""Camera paths from files: nerfstudio's exported camera paths, and keyframes of our own interpolated in time.

Both hold cameras in the scene's world coordinates with OpenGL axes (x right,
y up, looking along −z), the convention of every ``c2w`` in this package; for
an LLFF scene that is the frame after recentring and rescaling, where the
scene's own video path lives.

* nerfstudio (its viewer's export): ``{"camera_path": [{"camera_to_world": [16
  numbers, a 4×4 row by row], "fov": vertical degrees}, ...], "render_width",
  "render_height", "fps"}``: one frame per entry.
* keyframes: ``{"keyframes": [{"c2w": 3×4 or 4×4, "time": seconds, "fov":
  vertical degrees}, ...], "fps", "seconds", "width", "height"}`` with ``time``,
  ``fov``, ``width`` and ``height`` optional. Frame i is at t_i = i / fps for
  i < round(fps · seconds). Positions follow a cubic spline through the
  keyframes in time (natural ends), orientations the slerp between consecutive
  keyframes, the field of view a straight line. Keyframes without times are
  spread evenly from the first frame to the last.

Where a file gives no field of view or size, the scene's camera supplies it.
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch import Tensor

from ..volume.rays import Intrinsics
from .scene import SceneError


class CameraPathError(SceneError):
    """A camera-path file that cannot be read; the message is one line naming the file and what was expected."""


@dataclass(frozen=True)
class CameraPath:
    """Frames of a camera path.

    Attributes:
        c2w: [n_frames, 3, 4] camera-to-world poses.
        intrinsics: one camera model per frame (one size for all; the field of view may change).
        fps: frames per second of the video.
    """

    c2w: Tensor
    intrinsics: List[Intrinsics]
    fps: float

    @property
    def n_frames(self) -> int:
        return self.c2w.shape[0]


def read_camera_path(path: Path, camera: Intrinsics, fps: Optional[float] = None, seconds: Optional[float] = None) -> CameraPath:
    """The frames of the camera-path file ``path``: nerfstudio's format or keyframes (see the module).

    ``camera`` is the scene's camera (field of view and size where the file
    gives none); ``fps`` and ``seconds`` replace the file's.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CameraPathError(f"{path}: cannot read a camera path ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not ("camera_path" in data or "keyframes" in data):
        raise CameraPathError(f"{path}: expected a JSON object with camera_path (nerfstudio) or keyframes")
    reader = _Reader(path, data)
    if "camera_path" in data:
        return reader.nerfstudio(camera, fps)
    return reader.keyframes(camera, fps, seconds)


def focal_from_fov(fov_degrees: float, height: int) -> float:
    """The focal length in pixels of a vertical field of view: f = (H / 2) / tan(fov / 2)."""
    return 0.5 * height / math.tan(math.radians(fov_degrees) / 2)


def vertical_fov(camera: Intrinsics) -> float:
    """The vertical field of view of ``camera`` in degrees: 2 atan(H / (2 f_y))."""
    return math.degrees(2 * math.atan(0.5 * camera.H / camera.fy))


class _Reader:
    """Checked access to the fields of one camera-path file; every complaint names the file and the field."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    def fail(self, what: str) -> CameraPathError:
        return CameraPathError(f"{self.path}: {what}")

    def number(self, holder: dict, key: str, where: str, default=None, low: float = 0.0, high: float = math.inf) -> float:
        value = holder.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
            bounds = f"between {low:g} and {high:g}" if high < math.inf else f"above {low:g}"
            raise self.fail(f"{where}{key} must be a number {bounds}, got {value!r}")
        return float(value)

    def size(self, camera: Intrinsics, width_key: str, height_key: str):
        width = int(self.number(self.data, width_key, "", camera.W))
        height = int(self.number(self.data, height_key, "", camera.H))
        return width, height

    def pose(self, value, where: str) -> np.ndarray:
        """A 3×4 pose from a nested 3×4 or 4×4 list, or 16 numbers row by row; its rotation must be orthonormal."""
        try:
            matrix = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            matrix = np.zeros(0)
        if matrix.shape == (16,):
            matrix = matrix.reshape(4, 4)
        if matrix.shape not in ((3, 4), (4, 4)) or not np.isfinite(matrix).all():
            raise self.fail(f"{where}: expected a finite 3x4 or 4x4 camera-to-world matrix (or 16 numbers), got shape {list(matrix.shape)}")
        rotation = matrix[:3, :3]
        if np.abs(rotation.T @ rotation - np.eye(3)).max() > 1e-3 or np.linalg.det(rotation) < 0:
            raise self.fail(f"{where}: its 3x3 rotation is not a rotation (orthonormal, determinant +1)")
        return matrix[:3, :4]

    def entries(self, key: str, minimum: int) -> list:
        entries = self.data[key]
        if not isinstance(entries, list) or len(entries) < minimum or not all(isinstance(e, dict) for e in entries):
            raise self.fail(f"{key} must be a list of at least {minimum} objects")
        return entries

    def nerfstudio(self, camera: Intrinsics, fps: Optional[float]) -> CameraPath:
        entries = self.entries("camera_path", 1)
        width, height = self.size(camera, "render_width", "render_height")
        poses, intrinsics = [], []
        for i, entry in enumerate(entries):
            if "camera_to_world" not in entry:
                raise self.fail(f"camera_path[{i}] has no camera_to_world")
            poses.append(self.pose(entry["camera_to_world"], f"camera_path[{i}].camera_to_world"))
            fov = self.number(entry, "fov", f"camera_path[{i}].", vertical_fov(camera), high=180.0)
            intrinsics.append(Intrinsics.from_focal(height, width, focal_from_fov(fov, height)))
        rate = fps if fps is not None else self.number(self.data, "fps", "", 30.0)
        return CameraPath(torch.from_numpy(np.stack(poses)).float(), intrinsics, rate)

    def keyframes(self, camera: Intrinsics, fps: Optional[float], seconds: Optional[float]) -> CameraPath:
        keys = self.entries("keyframes", 2)
        rate = fps if fps is not None else self.number(self.data, "fps", "", 30.0)
        length = seconds if seconds is not None else self.number(self.data, "seconds", "", None)
        n_frames = int(round(rate * length))
        if n_frames < 1:
            raise self.fail(f"fps x seconds = {rate:g} x {length:g} makes no frame")
        poses = np.stack([self.pose(key.get("c2w"), f"keyframes[{i}].c2w") for i, key in enumerate(keys)])
        fovs = np.array([self.number(key, "fov", f"keyframes[{i}].", vertical_fov(camera), high=180.0) for i, key in enumerate(keys)])
        times = self.times(keys, (n_frames - 1) / rate)
        frame_times = np.clip(np.arange(n_frames) / rate, times[0], times[-1])
        c2w = interpolate_poses(times, poses, frame_times)
        width, height = self.size(camera, "width", "height")
        intrinsics = [Intrinsics.from_focal(height, width, focal_from_fov(f, height)) for f in np.interp(frame_times, times, fovs)]
        return CameraPath(torch.from_numpy(c2w).float(), intrinsics, rate)

    def times(self, keys: list, last: float) -> np.ndarray:
        """The keyframes' times: given for all (strictly increasing), or none (equal steps from 0 to ``last``)."""
        given = ["time" in key for key in keys]
        if not any(given):
            return np.linspace(0.0, last if last > 0 else 1.0, len(keys))
        if not all(given):
            raise self.fail("give a time to every keyframe or to none")
        times = np.array([self.number(key, "time", f"keyframes[{i}].", low=-math.inf) for i, key in enumerate(keys)])
        if (np.diff(times) <= 0).any():
            raise self.fail(f"keyframe times must increase, got {times.tolist()}")
        return times


def interpolate_poses(times: np.ndarray, poses: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Poses at times ``at``: positions on a cubic spline through the keyframes (natural ends: a line through two),
    orientations by slerp between consecutive keyframes.

    Args:
        times: [k] increasing keyframe times.
        poses: [k, 3, 4] keyframe camera-to-world poses (orthonormal rotations).
        at: [n] times within [times[0], times[-1]].

    Returns:
        [n, 3, 4].
    """
    from scipy.interpolate import CubicSpline
    from scipy.spatial.transform import Rotation, Slerp

    spline = CubicSpline(times, poses[:, :, 3], axis=0, bc_type="natural")
    rotations = Slerp(times, Rotation.from_matrix(poses[:, :, :3]))(at).as_matrix()
    return np.concatenate((rotations, spline(at)[:, :, None]), -1)

