"""Blender (nerf_synthetic) scenes: transforms_{train,val,test}.json and RGBA PNGs."""
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..volume.rays import Intrinsics
from .images import composite, read_split, resize_area
from .poses import circle_path
from .scene import Scene, SceneError, alpha_of, as_indices, as_tensor

SPLITS = ("train", "val", "test")
# The nerf_synthetic objects sit inside a sphere of radius ~1.5 seen from radius 4.
BLENDER_NEAR, BLENDER_FAR = 2.0, 6.0
# nerf_synthetic's objects lie inside [-1.5, 1.5]^3 (instant-ngp's and nerfacc's box for them).
BLENDER_BOUND = 1.5


def read_transforms(path: Path) -> dict:
    if not path.is_file():
        raise SceneError(f"{path}: transforms file missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SceneError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise SceneError(f"{path}: expected a JSON object with a 'frames' list")
    if not meta["frames"]:
        raise SceneError(f"{path}: the split has no frames")
    for index, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict):
            raise SceneError(f"{path}: frame {index} is {type(frame).__name__}, expected a JSON object")
    return meta


def frame_intrinsics(meta: dict, frame: dict, H: int, W: int, path: Path) -> Intrinsics:
    """Per-frame keys override global ones; camera_angle_x alone gives a centred square-pixel camera."""
    def get(key: str) -> Optional[float]:
        value = frame.get(key, meta.get(key))
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SceneError(f"{path}: '{key}' is {value!r}, expected a finite number")
        return float(value)

    fx, fy = get("fl_x"), get("fl_y")
    if fx is None:
        angle = get("camera_angle_x")
        if angle is None:
            raise SceneError(f"{path}: needs 'camera_angle_x' or 'fl_x'")
        if not 0 < angle < math.pi:
            raise SceneError(f"{path}: 'camera_angle_x' is {angle:g}, expected a field of view in radians between 0 and pi")
        fx = 0.5 * W / math.tan(0.5 * angle)
    for key, value in (("fl_x", fx), ("fl_y", fy)):
        if value is not None and value <= 0:
            raise SceneError(f"{path}: '{key}' is {value:g}, expected a positive focal length in pixels")
    cx, cy = get("cx"), get("cy")
    return Intrinsics(H, W, fx, fy if fy is not None else fx, W / 2 if cx is None else cx, H / 2 if cy is None else cy)


def frame_pose(frame: dict, index: int, path: Path) -> np.ndarray:
    try:
        matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise SceneError(f"{path}: frame {index} has no 4x4 'transform_matrix'") from None
    if matrix.shape != (4, 4):
        raise SceneError(f"{path}: frame {index} 'transform_matrix' is {list(matrix.shape)}, expected 4x4")
    if not np.isfinite(matrix).all():
        raise SceneError(f"{path}: frame {index} 'transform_matrix' has NaN or inf")
    return matrix[:3, :4]


def frame_image_path(datadir: Path, frame: dict, index: int, path: Path) -> Path:
    name = frame.get("file_path")
    if not isinstance(name, str):
        raise SceneError(f"{path}: frame {index} has no 'file_path'")
    image = datadir / name
    # nerf_synthetic omits the extension; other exporters keep it.
    return image if image.suffix.lower() in (".png", ".jpg", ".jpeg") else image.with_name(image.name + ".png")


def _read_splits(datadir: Path, testskip: int) -> Tuple[np.ndarray, np.ndarray, Dict[str, int], Intrinsics]:
    """Every split's RGBA images [n, H, W, 4] and poses [n, 3, 4], in split order, the count of each, and the one camera."""
    images: List[np.ndarray] = []
    poses: List[np.ndarray] = []
    counts: Dict[str, int] = {}
    intrinsics: Optional[Intrinsics] = None
    for split in SPLITS:
        path = datadir / f"transforms_{split}.json"
        meta = read_transforms(path)
        frames = meta["frames"] if split == "train" else meta["frames"][::testskip]
        paths = [frame_image_path(datadir, frame, i, path) for i, frame in enumerate(frames)]
        # RGBA throughout: a split of RGB images (or one RGB image among RGBA ones) is made opaque.
        split_images = read_split(paths, [f"frame {i} of {path.name}" for i in range(len(frames))], rgba=True)
        H, W = split_images.shape[1:3]
        for i, frame in enumerate(frames):
            camera = frame_intrinsics(meta, frame, H, W, path)
            if intrinsics is None:
                intrinsics = camera
            elif camera != intrinsics:
                raise SceneError(f"{path}: frame {i} has camera {camera}, but the scene's first frame has {intrinsics}; one camera per scene is supported")
            poses.append(frame_pose(frame, i, path))
        images.append(split_images)
        counts[split] = len(frames)
    return np.concatenate(images), np.stack(poses), counts, intrinsics


def load_blender(
    datadir,
    half_res: bool = False,
    white_bkgd: bool = True,
    testskip: int = 1,
    near: float = BLENDER_NEAR,
    far: float = BLENDER_FAR,
) -> Scene:
    """Loads a Blender-format scene as NeRF does.

    Images are RGBA; with ``white_bkgd`` they are composited on white,
    rgb·α + (1 − α), otherwise on black. ``half_res`` halves them with an area
    filter (before compositing, as NeRF does). ``testskip`` keeps every k-th
    val and test view; train keeps all.

    Args:
        datadir: folder with transforms_{train,val,test}.json.
        near, far: ray bounds (the nerf_synthetic defaults 2 and 6).
    """
    datadir = Path(datadir)
    if not datadir.is_dir():
        raise SceneError(f"{datadir}: no such folder")
    if testskip < 1:
        raise SceneError(f"testskip must be at least 1, got {testskip}")
    rgba, poses, counts, intrinsics = _read_splits(datadir, testskip)
    if half_res:
        intrinsics = intrinsics.scaled(0.5)
        rgba = np.stack([resize_area(image, (intrinsics.H, intrinsics.W)) for image in rgba])
    background = (1.0, 1.0, 1.0) if white_bkgd else (0.0, 0.0, 0.0)
    rgb = composite(rgba, background)
    bounds = np.cumsum([0] + [counts[s] for s in SPLITS])
    return Scene(
        name=datadir.name,
        images=as_tensor(rgb),
        c2w=as_tensor(poses),
        intrinsics=intrinsics,
        near=near,
        far=far,
        i_train=as_indices(np.arange(bounds[0], bounds[1])),
        i_val=as_indices(np.arange(bounds[1], bounds[2])),
        i_test=as_indices(np.arange(bounds[2], bounds[3])),
        render_c2w=as_tensor(circle_path()),
        ndc=False,
        background=background,
        bound=BLENDER_BOUND,
        alpha=alpha_of(rgba),
    )
