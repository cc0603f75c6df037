"""nerfstudio scenes: one transforms.json (as ns-process-data writes it) and its images.

The file holds the camera (``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``,
``camera_model`` PINHOLE or OPENCV with ``k1 k2 p1 p2``; any of them may be
given per frame instead) and one ``transform_matrix`` (camera to world,
OpenGL axes) and ``file_path`` per frame. Images with distortion are
undistorted through OpenCV onto the pinhole camera of the same K.

Poses are normalised as nerfstudio's own dataparser does by default: turned
so that the cameras' mean up vector is +z, centred on the mean camera
position, and scaled so that the largest camera coordinate is 1. The content
is then taken to lie in the box [−1, 1]³ (nerfstudio's scene box); near is
``NEAR`` and far the largest distance from a camera to a corner of the box.
``applied_transform``, which records what ns-process-data already did to the
COLMAP poses, is not applied again.

Splits: ``train_filenames`` / ``val_filenames`` / ``test_filenames`` when the
file lists them (val defaults to test), else every ``holdout``-th frame is a
test (and val) view.
"""
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from ..volume.rays import Intrinsics
from .blender import frame_image_path, frame_intrinsics, frame_pose, read_transforms
from .images import composite, read_image, with_alpha
from .scene import Scene, SceneError, alpha_of, as_indices, as_tensor

# Camera models this loader reads, and the distortion keys of each.
CAMERA_MODELS = {"PINHOLE": (), "OPENCV": ("k1", "k2", "p1", "p2")}
# The near bound in the normalised frame (nerfstudio's near plane for its default methods).
NEAR = 0.05


def normalizing_transform(c2w: np.ndarray) -> Tuple[np.ndarray, float]:
    """The similarity nerfstudio applies to camera poses: (R_t [3, 4], scale s) with x' = s·(R x + t).

    R turns the mean of the cameras' up vectors (their y axes) onto +z; t then
    centres the mean camera position; s makes the largest |coordinate| of a
    camera position 1.

    Args:
        c2w: [n, 3, 4] camera-to-world poses.
    """
    up = c2w[:, :3, 1].mean(0)
    up = up / np.linalg.norm(up)
    rotation = _rotation_onto(up, np.array([0.0, 0.0, 1.0]))
    positions = c2w[:, :3, 3] @ rotation.T
    shift = -positions.mean(0)
    extent = np.abs(positions + shift).max()
    scale = 1.0 / extent if extent > 0 else 1.0
    return np.concatenate((rotation, shift[:, None]), 1), scale


def apply_transform(c2w: np.ndarray, transform: np.ndarray, scale: float) -> np.ndarray:
    """Poses in the normalised frame: rotation R·R_c2w, position s·(R p + t). [n, 3, 4] -> [n, 3, 4]."""
    rotation, shift = transform[:, :3], transform[:, 3]
    return np.concatenate((rotation @ c2w[:, :3, :3], (scale * (c2w[:, :3, 3] @ rotation.T + shift))[..., None]), -1)


def _rotation_onto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation turning unit vector a onto unit vector b (Rodrigues; a half turn about x or y when a = −b)."""
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1 + 1e-9:
        axis = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        axis = axis - a * np.dot(axis, a)
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def undistort(image: np.ndarray, camera: Intrinsics, coefficients: np.ndarray) -> np.ndarray:
    """``image`` [H, W, C] seen through OpenCV's radial-tangential model (k1, k2, p1, p2), resampled onto the pinhole
    camera of the same K (bilinear)."""
    K = np.array([[camera.fx, 0, camera.cx], [0, camera.fy, camera.cy], [0, 0, 1]])
    return cv2.undistort(image, K, coefficients.astype(np.float64), None, K)


def _distortion(meta: dict, frame: dict, path: Path, index: int) -> np.ndarray:
    model = frame.get("camera_model", meta.get("camera_model", "PINHOLE"))
    if model not in CAMERA_MODELS:
        raise SceneError(f"{path}: frame {index} has camera_model {model!r}; expected one of {', '.join(CAMERA_MODELS)}")
    values = []
    for key in CAMERA_MODELS[model]:
        value = frame.get(key, meta.get(key, 0.0))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise SceneError(f"{path}: frame {index} '{key}' is {value!r}, expected a finite number")
        values.append(float(value))
    return np.array(values + [0.0] * (4 - len(values)))


def _splits(meta: dict, names: List[str], holdout: int, path: Path):
    """(train, val, test) frame indices: the file's filename lists, or every ``holdout``-th frame held out."""
    index = {name: i for i, name in enumerate(names)}
    lists = {split: meta.get(f"{split}_filenames") for split in ("train", "val", "test")}
    if lists["train"] is None:
        test = np.arange(0, len(names), holdout) if holdout > 0 else np.zeros(0, dtype=np.int64)
        return np.setdiff1d(np.arange(len(names)), test), test, test
    chosen = {}
    for split, files in lists.items():
        missing = [f for f in files or [] if f not in index]
        if missing:
            raise SceneError(f"{path}: {split}_filenames names {missing[0]!r}, which no frame has as file_path")
        chosen[split] = np.array([index[f] for f in files or []], dtype=np.int64)
    return chosen["train"], chosen["val"] if len(chosen["val"]) else chosen["test"], chosen["test"]


def load_nerfstudio(datadir, white_bkgd: bool = False, holdout: int = 8) -> Scene:
    """Loads a nerfstudio scene (see the module). RGBA images are composited on white with ``white_bkgd``, else black."""
    datadir = Path(datadir)
    path = datadir / "transforms.json"
    meta = read_transforms(path)
    frames = meta["frames"]
    names = [frame.get("file_path") for frame in frames]
    images, poses, camera = [], [], None
    for i, frame in enumerate(frames):
        image = with_alpha(read_image(frame_image_path(datadir, frame, i, path), f"frame {i} of {path.name}"))
        H, W = int(frame.get("h", meta.get("h", image.shape[0]))), int(frame.get("w", meta.get("w", image.shape[1])))
        if image.shape[:2] != (H, W):
            raise SceneError(f"{path}: frame {i}'s image is {image.shape[1]}x{image.shape[0]}, but the file says {W}x{H}")
        this = frame_intrinsics(meta, frame, H, W, path)
        if camera is not None and this != camera:
            raise SceneError(f"{path}: frame {i} has camera {this}, but frame 0 has {camera}; one camera per scene is supported")
        camera = this
        coefficients = _distortion(meta, frame, path, i)
        images.append(undistort(image, camera, coefficients) if coefficients.any() else image)
        poses.append(frame_pose(frame, i, path))
    raw = np.stack(poses)
    transform, scale = normalizing_transform(raw)
    c2w = apply_transform(raw, transform, scale)
    background = (1.0, 1.0, 1.0) if white_bkgd else (0.0, 0.0, 0.0)
    rgba = np.stack(images)
    rgb = composite(rgba, background)
    train, val, test = _splits(meta, names, holdout, path)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    far = float(np.linalg.norm(c2w[:, None, :3, 3] - corners[None], axis=-1).max())
    return Scene(name=datadir.name, images=as_tensor(rgb), c2w=as_tensor(c2w), intrinsics=camera, near=NEAR, far=far,
                 i_train=as_indices(train), i_val=as_indices(val), i_test=as_indices(test), render_c2w=as_tensor(c2w[train]),
                 ndc=False, background=background, bound=1.0, alpha=alpha_of(rgba))

