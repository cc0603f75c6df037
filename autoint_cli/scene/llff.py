"""LLFF (forward-facing) scenes: poses_bounds.npy and images_<factor>/ as NeRF loads them."""
import logging
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np

from ..utils.atomic import replaced_folder
from ..volume.rays import Intrinsics
from .images import read_split, write_downsized
from .poses import recenter as recenter_on_average, spherify as spherify_poses, spiral_path
from .scene import Scene, SceneError, as_indices, as_tensor

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Without NDC, rays span slightly more than the scaled scene bounds.
NO_NDC_NEAR_MARGIN = 0.9


def _image_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_poses_bounds(path: Path):
    if not path.is_file():
        raise SceneError(f"{path}: poses_bounds.npy missing")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise SceneError(f"{path}: not a readable .npy array ({err})") from None
    if array.ndim != 2 or array.shape[1] != 17 or array.shape[0] == 0:
        raise SceneError(f"{path}: expected an array of shape [n_images, 17] (3x5 pose + 2 bounds), got {list(array.shape)}")
    array = array.astype(np.float64)
    bad = np.where(~np.isfinite(array).all(axis=1))[0]
    if bad.size:
        raise SceneError(f"{path}: NaN or inf in poses or bounds (rows {', '.join(map(str, bad[:5]))})")
    if (array[:, 15:] <= 0).any():
        raise SceneError(f"{path}: near/far bounds must be positive")
    return array[:, :15].reshape(-1, 3, 5), array[:, 15:]


def _downsampled_folder(datadir: Path, factor: int) -> Path:
    """images_<factor>/, made from images/ with an area filter when missing (and said so)."""
    folder = datadir / f"images_{factor}"
    if folder.is_dir():
        return folder
    source = datadir / "images"
    if factor == 1 and source.is_dir():
        return source
    if not source.is_dir():
        raise SceneError(f"{datadir}: no images_{factor}/ folder and no images/ to make it from")
    files = _image_files(source)
    if not files:
        raise SceneError(f"{source}: no images to make images_{factor}/ from")
    logger.warning("%s: images_%d/ missing; making it from images/ (area filter, 1/%d size)", datadir, factor, factor)
    # Written beside the target and renamed when complete, so a killed run leaves no partial cache.
    with replaced_folder(folder) as staging:
        for path in files:
            write_downsized(path, staging / (path.stem + ".png"), factor)
    return folder


def _normalized_poses(raw_poses: np.ndarray, bounds: np.ndarray, bd_factor: float, recenter: bool, spherify: bool):
    """NeRF's pose normalisation: (c2w [n, 3, 4] in OpenGL axes, scaled bounds [n, 2], the video path [k, 3, 4]).

    LLFF's [down, right, back] axes become [right, up, back]; positions and
    bounds are scaled by 1/(bd_factor · min bound); poses are re-centred on
    their average (``recenter``), or on a sphere (``spherify``).
    """
    c2w = np.concatenate((raw_poses[:, :, 1:2], -raw_poses[:, :, 0:1], raw_poses[:, :, 2:4]), axis=2)  # [n, 3, 4]
    scale = 1.0 / (bounds.min() * bd_factor)
    c2w[:, :3, 3] *= scale
    bounds = bounds * scale
    if recenter:
        c2w = recenter_on_average(c2w)
    if spherify:
        return spherify_poses(c2w, bounds)
    return c2w, bounds, spiral_path(c2w, bounds)


def _holdout(n: int, llffhold: int, val_view: Sequence[int], datadir: Path):
    """(train, val, test) indices of n images: every ``llffhold``-th is held out for test (none for 0).

    The val split is the test split (NeRF's way), unless ``val_view`` names
    training images to hold out as the val split instead (for tuning without
    test views); (-1,) or () names none.
    """
    i_test = np.arange(n)[::llffhold] if llffhold > 0 else np.array([], dtype=np.int64)
    i_train = np.setdiff1d(np.arange(n), i_test)
    i_val = i_test
    views = [int(v) for v in val_view]
    held = bool(views) and views != [-1]
    if held:
        outside = [v for v in views if v not in i_train]
        if outside:
            raise SceneError(f"{datadir}: val_view {outside[0]} is not a training image (there are {n} images; test holds {i_test.tolist()})")
        if len(set(views)) < len(views):
            raise SceneError(f"{datadir}: val_view names an image twice ({' '.join(map(str, views))})")
        i_val, i_train = np.array(views), np.setdiff1d(i_train, views)
    if i_train.size == 0:
        besides = f" besides val_view {' '.join(map(str, views))}" if held else ""
        raise SceneError(f"{datadir}: llffhold {llffhold} leaves no training images{besides}")
    return i_train, i_val, i_test


def _read_capture(datadir: Path, factor: int):
    """poses_bounds.npy's poses [n, 3, 5] and bounds [n, 2], and the images [n, H, W, 3] at ``factor``, checked to match."""
    poses_path = datadir / "poses_bounds.npy"
    raw_poses, bounds = _read_poses_bounds(poses_path)
    folder = _downsampled_folder(datadir, factor)
    files = _image_files(folder)
    if len(files) != len(raw_poses):
        raise SceneError(f"{folder}: {len(files)} images, but {poses_path.name} has {len(raw_poses)} poses")
    return raw_poses, bounds, read_split(files, [f"image {i} of {folder.name}" for i in range(len(files))])[..., :3]


def load_llff(
    datadir,
    factor: int = 8,
    llffhold: int = 8,
    recenter: bool = True,
    bd_factor: float = 0.75,
    spherify: bool = False,
    ndc: bool = True,
    val_view: Union[int, Sequence[int]] = -1,
) -> Scene:
    """Loads an LLFF capture as NeRF does.

    Poses are re-ordered from LLFF's [down, right, back] to OpenGL's
    [right, up, back]; positions and bounds are scaled by 1/(bd_factor · min
    bound); poses are re-centred on their average. Every ``llffhold``-th image
    is held out for test and val. With ``ndc`` rays are mapped to NDC with near
    plane 1 (t ∈ [0, 1]); otherwise t spans [0.9 · min bound, max bound].

    Args:
        datadir: folder with poses_bounds.npy and images_<factor>/ (or images/).
        factor: image downsampling factor.
        recenter: re-centre on the average pose (NeRF always does).
        val_view: training images (one or several) to hold out as the val split (-1: val is the test split).
    """
    datadir = Path(datadir)
    if not datadir.is_dir():
        raise SceneError(f"{datadir}: no such folder")
    if factor < 1:
        raise SceneError(f"factor must be at least 1, got {factor}")
    if llffhold < 0:
        raise SceneError(f"llffhold must be 0 (no held-out views) or positive, got {llffhold}")
    raw_poses, bounds, images = _read_capture(datadir, factor)
    H, W = images.shape[1:3]
    # The capture's focal length is stored for full resolution; scale it with the image.
    focal = raw_poses[0, 2, 4] * H / raw_poses[0, 0, 4]

    c2w, bounds, render = _normalized_poses(raw_poses, bounds, bd_factor, recenter, spherify)
    views = (val_view,) if isinstance(val_view, int) else tuple(val_view)
    i_train, i_val, i_test = _holdout(len(images), llffhold, views, datadir)
    near, far = (0.0, 1.0) if ndc else (float(bounds.min() * NO_NDC_NEAR_MARGIN), float(bounds.max()))
    return Scene(
        name=datadir.name,
        images=as_tensor(images),
        c2w=as_tensor(c2w),
        intrinsics=Intrinsics.from_focal(H, W, float(focal)),
        near=near,
        far=far,
        i_train=as_indices(i_train),
        i_val=as_indices(i_val),
        i_test=as_indices(i_test),
        render_c2w=as_tensor(render),
        ndc=ndc,
        background=(0.0, 0.0, 0.0),
        # NDC maps the frustum into [-1, 1]^3; without it the far bound reaches every point the rays cross.
        bound=1.0 if ndc else float(far + np.abs(c2w[:, :, 3]).max()),
    )
