"""A small analytic volumetric scene, rendered exactly and written in Blender format.

The object is a few shapes (spheres and boxes) of constant density σ_i and
colour c_i, some of them partly translucent. Along a ray the density is
piecewise constant between the points where the ray enters and leaves shapes,
so the volume-rendering integral has a closed form. Where shapes overlap, the
emission σ_i c_i adds, so the section has σ = Σ σ_i and colour Σ σ_i c_i / σ.
Over sections k of length δ_k (in distance, i.e. Δt·‖d‖):

    C = Σ_k T_k (1 − exp(−σ_k δ_k)) c_k,   T_k = exp(−Σ_{j<k} σ_j δ_j),   α = 1 − T_N

and the PNG stores the straight (un-premultiplied) colour C/α with alpha α, so
that Blender's white-background compositing rgb·α + (1 − α) gives C + (1 − α).
"""
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from ..utils.atomic import replaced_folder
from ..volume.rays import Intrinsics, Rays, camera_rays
from .blender import BLENDER_FAR, BLENDER_NEAR
from .poses import spherical_pose
from .scene import SceneError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    """A sphere (``half_size`` scalar radius) or an axis-aligned box, of constant density and colour."""

    kind: str
    center: Tuple[float, float, float]
    half_size: Tuple[float, float, float]
    density: float
    color: Tuple[float, float, float]


# Coloured, overlapping and partly translucent: a dense red sphere, a blue
# box it sits on, a faint green sphere and a thin, almost opaque yellow slab.
DEMO_SHAPES: Tuple[Shape, ...] = (
    Shape("sphere", (0.0, 0.0, 0.35), (0.55, 0.55, 0.55), 12.0, (0.9, 0.15, 0.1)),
    Shape("box", (0.0, 0.0, -0.35), (0.7, 0.5, 0.25), 4.0, (0.15, 0.35, 0.9)),
    Shape("sphere", (-0.55, 0.45, 0.1), (0.4, 0.4, 0.4), 1.5, (0.2, 0.85, 0.3)),
    Shape("box", (0.45, -0.55, 0.3), (0.08, 0.3, 0.4), 30.0, (0.95, 0.85, 0.2)),
)


def _entry_exit(shape: Shape, origins: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor]:
    """The t interval [t0, t1] of a ray inside the shape; t0 > t1 where it misses. Shapes [*rays]."""
    center = origins.new_tensor(shape.center)
    half = origins.new_tensor(shape.half_size)
    if shape.kind == "sphere":
        # |o + t d − c|² = r²:  a t² + 2 b t + k = 0
        oc = origins - center
        a = (directions * directions).sum(-1)
        b = (oc * directions).sum(-1)
        k = (oc * oc).sum(-1) - half[0] ** 2
        disc = b * b - a * k
        root = torch.sqrt(disc.clamp_min(0))
        t0, t1 = (-b - root) / a, (-b + root) / a
        return torch.where(disc > 0, t0, torch.full_like(t0, 1.0)), torch.where(disc > 0, t1, torch.zeros_like(t1))
    if shape.kind == "box":
        # Slab method; directions never have an exactly zero component here, but guard the division.
        safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
        lo = (center - half - origins) / safe
        hi = (center + half - origins) / safe
        return torch.minimum(lo, hi).amax(-1), torch.maximum(lo, hi).amin(-1)
    raise ValueError(f"unknown shape kind {shape.kind!r}")


def render_exact(shapes: Sequence[Shape], rays: Rays) -> Tuple[Tensor, Tensor, Tensor]:
    """Exact emission–absorption rendering of constant-density shapes, on a black background.

    Args:
        shapes: the scene.
        rays: [*rays] with float64 tensors for an exact result.

    Returns:
        (colour [*rays, 3] premultiplied, i.e. C above; opacity α [*rays, 1];
        expected depth Σ_k w_k t̄_k [*rays, 1] in t, with w_k = T_k (1 − exp(−σ_k δ_k))).
    """
    near, far = rays.near[..., 0], rays.far[..., 0]
    starts, ends = zip(*(_entry_exit(s, rays.origins, rays.directions) for s in shapes))
    t_in = torch.stack(starts, -1).clamp(min=near[..., None], max=far[..., None])  # [*rays, n_shapes]
    t_out = torch.stack(ends, -1).clamp(min=near[..., None], max=far[..., None])
    posts = torch.sort(torch.cat((near[..., None], far[..., None], t_in, t_out), -1), dim=-1).values  # [*rays, n_posts]
    lower, upper = posts[..., :-1], posts[..., 1:]
    middle = 0.5 * (lower + upper)  # [*rays, n_sections]
    inside = (middle[..., None] > t_in[..., None, :]) & (middle[..., None] < t_out[..., None, :])  # [*rays, n_sections, n_shapes]
    densities = rays.origins.new_tensor([s.density for s in shapes])
    colors = rays.origins.new_tensor([s.color for s in shapes])  # [n_shapes, 3]
    sigma = (inside * densities).sum(-1)  # [*rays, n_sections]
    emission = (inside * densities) @ colors  # [*rays, n_sections, 3]
    color = emission / sigma.clamp_min(1e-30)[..., None]
    delta = (upper - lower) * torch.linalg.vector_norm(rays.directions, dim=-1, keepdim=True)
    optical = sigma * delta
    transmittance = torch.exp(-torch.cumsum(torch.cat((torch.zeros_like(optical[..., :1]), optical[..., :-1]), -1), -1))
    weights = transmittance * -torch.expm1(-optical)
    rgb = (weights[..., None] * color).sum(-2)
    alpha = weights.sum(-1, keepdim=True)
    depth = (weights * middle).sum(-1, keepdim=True)
    return rgb, alpha, depth


@dataclass(frozen=True)
class DemoSceneSpec:
    """What the generated scene looks like; the defaults are the README's demo."""

    size: int = 64
    n_train: int = 40
    n_val: int = 8
    n_test: int = 8
    camera_angle_x: float = 0.6911112070083618  # nerf_synthetic's field of view
    radius: float = 4.0
    seed: int = 0
    train_elevation: Tuple[float, float] = (5.0, 75.0)
    holdout_elevation: Optional[Tuple[float, float]] = None
    opaque_density: float = 0.0


def demo_shapes(spec: DemoSceneSpec) -> Tuple[Shape, ...]:
    """The demo's shapes, every one of density ``opaque_density`` when it is set (> 0): opaque, so that only their surfaces are
    ever seen, as in a Blender scene."""
    if spec.opaque_density <= 0:
        return DEMO_SHAPES
    return tuple(dataclasses.replace(shape, density=spec.opaque_density) for shape in DEMO_SHAPES)


def demo_cameras(spec: DemoSceneSpec) -> Dict[str, np.ndarray]:
    """Cameras at ``radius``, looking at the origin, uniform on a sphere cap by area.

    Training (and, by default, val) cameras lie between ``train_elevation`` degrees above the horizon; test cameras on a ring
    at 30°. With ``holdout_elevation`` the val and test cameras are drawn between those elevations instead: views unlike
    any training one (e.g. training 20–75°, held out 5–12°), where a field must extrapolate to directions it never saw.
    """
    rng = np.random.default_rng(spec.seed)

    def random_views(n: int, band: Tuple[float, float]) -> np.ndarray:
        azimuth = rng.uniform(-180, 180, n)
        elevation = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(band[0])), np.sin(np.radians(band[1])), n)))
        return np.stack([spherical_pose(a, -e, spec.radius) for a, e in zip(azimuth, elevation)])

    train = random_views(spec.n_train, spec.train_elevation)
    if spec.holdout_elevation is not None:
        held_out = spec.holdout_elevation
        return {"train": train, "val": random_views(spec.n_val, held_out), "test": random_views(spec.n_test, held_out)}
    ring = np.stack([spherical_pose(a, -30.0, spec.radius) for a in np.linspace(-180, 180, spec.n_test + 1)[:-1] + 7.5])
    return {"train": train, "val": random_views(spec.n_val, spec.train_elevation), "test": ring}


def render_view(c2w: np.ndarray, intrinsics: Intrinsics, shapes: Sequence[Shape] = DEMO_SHAPES):
    """Exact RGB (premultiplied) and α images [H, W, 3] and [H, W, 1] of one camera, in float64."""
    rays = camera_rays(torch.from_numpy(np.asarray(c2w, dtype=np.float64)), intrinsics, BLENDER_NEAR, BLENDER_FAR)
    rgb, alpha, _ = render_exact(shapes, rays)
    return rgb.numpy(), alpha.numpy()


def to_rgba8(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied colour and α -> 8-bit straight-alpha RGBA, as Blender writes PNGs."""
    straight = np.where(alpha > 1e-8, rgb / np.maximum(alpha, 1e-8), 0.0)
    rgba = np.concatenate((np.clip(straight, 0, 1), alpha), -1)
    return np.round(rgba * 255).astype(np.uint8)


# Written into every generated scene, so that a folder can be told apart from a user's own before anything is written.
DEMO_MARKER = ".autoint_demo"


def _may_write(out: Path) -> bool:
    """Whether ``out`` can be (re)generated: absent, empty, or a demo scene of ours."""
    return not out.exists() or (out.is_dir() and (not any(out.iterdir()) or (out / DEMO_MARKER).is_file()))


def write_demo_scene(out, spec: DemoSceneSpec = DemoSceneSpec()) -> Path:
    """Renders and writes the demo scene (transforms_*.json, PNGs and the demo marker) into ``out``; returns it.

    The scene is written into a staging folder and moved into place whole. ``out``
    must be absent, empty or an earlier demo scene: anything else is refused
    (SceneError) before a file is written.
    """
    out = Path(out)
    if not _may_write(out):
        raise SceneError(f"{out}: exists and is not a demo scene (no {DEMO_MARKER}); refusing to write into it")
    with replaced_folder(out) as staging:
        _render_demo(staging, spec)
        (staging / DEMO_MARKER).write_text(json.dumps(dataclasses.asdict(spec)) + "\n")
    return out


def _render_demo(out: Path, spec: DemoSceneSpec) -> None:
    intrinsics = Intrinsics.from_focal(spec.size, spec.size, 0.5 * spec.size / np.tan(0.5 * spec.camera_angle_x))
    for split, poses in demo_cameras(spec).items():
        (out / split).mkdir(parents=True, exist_ok=True)
        frames: List[dict] = []
        for i, c2w in enumerate(poses):
            rgb, alpha = render_view(c2w, intrinsics, demo_shapes(spec))
            iio.imwrite(out / split / f"r_{i}.png", to_rgba8(rgb, alpha))
            matrix = np.concatenate((c2w, [[0.0, 0.0, 0.0, 1.0]]), 0)
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": matrix.tolist()})
        meta = {"camera_angle_x": spec.camera_angle_x, "frames": frames}
        (out / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2))


def ensure_demo_scene(out, spec: DemoSceneSpec = DemoSceneSpec(), write: bool = True) -> Path:
    """The demo scene at ``out``: used as it is when complete, else generated (only into an absent, empty or demo folder).

    With ``write`` False (a command that only checks) a missing scene is an error, never written.
    """
    out = Path(out)
    if all((out / f"transforms_{s}.json").is_file() for s in ("train", "val", "test")):
        return out
    if not _may_write(out):
        raise SceneError(f"{out}: generate_demo is set, but this folder holds something else than a demo scene; "
                         "refusing to write into it (point datadir elsewhere, or turn generate_demo off)")
    if not write:
        raise SceneError(f"{out}: the demo scene is not there yet; autoint-train generates it (or python -m autoint_cli demo --out {out})")
    logger.warning("%s: demo scene missing; generating it (%dx%d px, %d views)", out, spec.size, spec.size, spec.n_train + spec.n_val + spec.n_test)
    return write_demo_scene(out, spec)
