"""Photos to an LLFF scene: structure from motion through pycolmap, or an existing COLMAP model, written as LLFF writes it.

The scene folder gets ``images/`` (undistorted onto a pinhole camera when the
model has distortion), ``images_<K>/`` for each asked factor, and
``poses_bounds.npy``: per image, by name order, the camera-to-world pose in
LLFF's column order [down, right, backwards, position], the column
[H, W, focal], and near/far as the 0.1 and 99.9 percentiles of the depths of
the 3-D points that image sees. pycolmap is an optional dependency
(``pip install -e '.[colmap]'``).
"""
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np

from ..utils.atomic import replaced_folder
from .images import read_image, write_downsized
from .scene import SceneError

CAMERA_MODELS = {"simple_radial": "SIMPLE_RADIAL", "pinhole": "PINHOLE", "opencv": "OPENCV"}
MATCHERS = ("exhaustive", "sequential")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Structure from motion needs at least this many photos.
MIN_IMAGES = 3


@dataclass(frozen=True)
class ImportSettings:
    """How ``autoint-scene import`` runs structure from motion (its flags)."""

    camera_model: str = "simple_radial"
    matcher: str = "exhaustive"
    factors: Sequence[int] = ()


def pycolmap_module():
    """pycolmap, or a SceneError saying how to install it."""
    try:
        import pycolmap
    except ImportError:
        raise SceneError("pycolmap is not installed: pip install -e '.[colmap]' (or pip install pycolmap)") from None
    return pycolmap


def photo_names(images: Path) -> List[str]:
    """The photos of ``images`` by name, each checked to be readable; too few is refused."""
    if not images.is_dir():
        raise SceneError(f"{images}: no such folder of photos")
    names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(names) < MIN_IMAGES:
        raise SceneError(f"{images}: {len(names)} photos (.png/.jpg); structure from motion needs at least {MIN_IMAGES}")
    for name in names:
        read_image(images / name, "a photo to import")
    return names


def run_sfm(images: Path, names: Sequence[str], work: Path, settings: ImportSettings):
    """Features, matches and incremental mapping with one shared camera; the single model it makes."""
    pycolmap = pycolmap_module()
    database, sparse = work / "database.db", work / "sparse"
    sparse.mkdir(parents=True, exist_ok=True)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = CAMERA_MODELS[settings.camera_model]
    pycolmap.extract_features(database, images, image_names=list(names), camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader)
    if settings.matcher == "sequential":
        pycolmap.match_sequential(database)
    else:
        pycolmap.match_exhaustive(database)
    models = pycolmap.incremental_mapping(database, images, sparse)
    return single_model(list(models.values()), images)


def read_model(model: Path):
    """An existing COLMAP model: a folder of cameras/images/points3D as .bin or .txt, or a folder holding one numbered model."""
    pycolmap = pycolmap_module()
    if not model.is_dir():
        raise SceneError(f"{model}: no such COLMAP model folder")
    numbered = sorted(p for p in model.iterdir() if p.is_dir() and p.name.isdigit())
    if not any((model / f"images{ext}").is_file() for ext in (".bin", ".txt")):
        if len(numbered) != 1:
            raise SceneError(f"{model}: expected one COLMAP model (cameras, images, points3D as .bin or .txt) or one numbered "
                             f"model folder, found {len(numbered)} numbered folders")
        model = numbered[0]
    try:
        return pycolmap.Reconstruction(model)
    except Exception as err:  # pycolmap raises its own types for unreadable models
        raise SceneError(f"{model}: not a readable COLMAP model ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


def single_model(models: list, images: Path):
    """The one model of a reconstruction; none or several is refused."""
    if len(models) != 1:
        raise SceneError(f"{images}: structure from motion made {len(models)} models, expected one "
                         "(more overlap between the photos, or --matcher exhaustive, may join them)")
    return models[0]


def check_registered(model, names: Sequence[str], images: Path) -> None:
    """Every photo must have a pose: the ones without are named, with the share that registered."""
    registered = {image.name for image in model.images.values() if image.has_pose}
    missing = [name for name in names if name not in registered]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SceneError(f"{images}: {len(missing)} of {len(names)} photos did not register ({shown}); "
                         f"{len(names) - len(missing)}/{len(names)} = {100 * (len(names) - len(missing)) / len(names):.0f}% did")
    if len(model.cameras) != 1:
        raise SceneError(f"{images}: the model has {len(model.cameras)} cameras; one shared camera is supported")


def poses_bounds(model, names: Sequence[str]) -> np.ndarray:
    """LLFF's [n, 17] array for the photos ``names`` (in that order) of a pinhole ``model``: see the module."""
    by_name = {image.name: image for image in model.images.values()}
    camera = next(iter(model.cameras.values()))
    hwf = np.array([camera.height, camera.width, camera.focal_length_x], dtype=np.float64)
    points = {pid: p.xyz for pid, p in model.points3D.items()}
    rows = []
    for name in names:
        image = by_name[name]
        cam_from_world = image.cam_from_world().matrix()  # [3, 4]: x_cam = R x + t
        rotation, translation = cam_from_world[:, :3], cam_from_world[:, 3]
        world_from_cam = np.concatenate((rotation.T, (-rotation.T @ translation)[:, None]), 1)
        # COLMAP's camera axes are [right, down, forward]; LLFF stores [down, right, backwards].
        llff = np.stack((world_from_cam[:, 1], world_from_cam[:, 0], -world_from_cam[:, 2], world_from_cam[:, 3], hwf), 1)
        seen = [points[p.point3D_id] for p in image.points2D if p.has_point3D()]
        if not seen:
            raise SceneError(f"{name}: sees no 3-D point of the model, so it has no depth bounds")
        depths = (np.asarray(seen) @ rotation.T + translation)[:, 2]
        near, far = np.percentile(depths, 0.1), np.percentile(depths, 99.9)
        rows.append(np.concatenate((llff.reshape(-1), [near, far])))
    return np.stack(rows)


def undistorted(model, images: Path, work: Path):
    """(pinhole model, folder of its images): the model itself when its camera has no distortion, else COLMAP's undistortion."""
    camera = next(iter(model.cameras.values()))
    if camera.model_name in ("PINHOLE", "SIMPLE_PINHOLE"):
        return model, images
    pycolmap = pycolmap_module()
    out = work / "undistorted"
    model_dir = work / "distorted_model"
    model_dir.mkdir(parents=True, exist_ok=True)
    model.write(model_dir)
    pycolmap.undistort_images(out, model_dir, images)
    return pycolmap.Reconstruction(out / "sparse"), out / "images"


def write_llff_scene(out: Path, model, images: Path, names: Sequence[str], factors: Sequence[int]) -> Path:
    """images/, images_<K>/ and poses_bounds.npy under ``out``, all staged and moved in together."""
    array = poses_bounds(model, names)
    with replaced_folder(out) as staging:
        (staging / "images").mkdir()
        for name in names:
            shutil.copyfile(images / name, staging / "images" / name)
        for factor in sorted(set(factors)):
            folder = staging / f"images_{factor}"
            folder.mkdir()
            for name in names:
                write_downsized(images / name, folder / (Path(name).stem + ".png"), factor)
        np.save(staging / "poses_bounds.npy", array)
    return out


def import_scene(images: Path, out: Path, settings: ImportSettings, colmap_model: Path = None) -> Path:
    """Photos (and optionally their COLMAP model) to an LLFF scene at ``out``; see the module."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SceneError(f"{out}: already exists and is not an empty folder; choose a new --out")
    names = photo_names(images)
    with tempfile.TemporaryDirectory(prefix="autoint-import-") as tmp:
        work = Path(tmp)
        model = read_model(colmap_model) if colmap_model is not None else run_sfm(images, names, work, settings)
        check_registered(model, names, images)
        model, pinhole_images = undistorted(model, images, work)
        return write_llff_scene(out, model, pinhole_images, names, settings.factors)


def umeyama(source: np.ndarray, target: np.ndarray):
    """The similarity (s, R, t) minimising Σ |s R a_i + t − b_i|² over point pairs a_i ∈ ``source``, b_i ∈ ``target`` [n, 3]
    (Umeyama 1991: from the SVD of the cross-covariance, with the reflection removed)."""
    mu_a, mu_b = source.mean(0), target.mean(0)
    a, b = source - mu_a, target - mu_b
    u, sigma, vt = np.linalg.svd(b.T @ a / len(a))
    flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ flip @ vt
    scale = np.trace(np.diag(sigma) @ flip) / (a ** 2).sum(1).mean()
    return scale, rotation, mu_b - scale * rotation @ mu_a


def pose_agreement(ours: np.ndarray, reference: np.ndarray) -> dict:
    """How well imported poses match reference ones (both LLFF [n, 17], same image order), after aligning the camera
    centres by a similarity.

    Returns the median and largest rotation error (degrees), the median and
    largest centre error as a share of the extent (the largest distance between
    two reference centres), and the ratio of the focal lengths, each relative to
    its image width.
    """
    ours, reference = ours[:, :15].reshape(-1, 3, 5), reference[:, :15].reshape(-1, 3, 5)
    scale, rotation, shift = umeyama(ours[:, :, 3], reference[:, :, 3])
    centres = scale * ours[:, :, 3] @ rotation.T + shift
    extent = np.linalg.norm(reference[:, None, :, 3] - reference[None, :, :, 3], axis=-1).max()
    centre_error = np.linalg.norm(centres - reference[:, :, 3], axis=-1) / extent
    relative = np.einsum("nji,njk->nik", rotation @ ours[:, :, :3], reference[:, :, :3])  # (R R_ours)^T R_ref
    angles = np.degrees(np.arccos(np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)))
    focal = (ours[0, 2, 4] / ours[0, 1, 4]) / (reference[0, 2, 4] / reference[0, 1, 4])
    return {"n_images": len(ours), "median_rotation_deg": float(np.median(angles)), "max_rotation_deg": float(angles.max()),
            "median_centre_error": float(np.median(centre_error)), "max_centre_error": float(centre_error.max()),
            "focal_ratio": float(focal), "scale": float(scale)}
