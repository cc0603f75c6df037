"""Pinhole rays and the NDC transform: the one implementation used by training, rendering and evaluation.

Camera convention (Blender/NeRF, OpenGL axes): the camera looks down its −z
axis, +y is up and +x is right; ``c2w`` [3, 4] maps camera to world
coordinates, its last column being the camera centre. Pixel (row, col) sees
the camera-frame direction

    d_cam = ((col − cx) / fx, −(row − cy) / fy, −1),

with NeRF's pixel convention (no half-pixel offset; cx = W/2, cy = H/2 unless
the dataset says otherwise), so results compare with the tools users know.
Directions are not normalised: t is depth along the camera's −z axis, and a
distance along the ray is t·‖d‖.
"""
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: image size in pixels, focal lengths and principal point in pixels."""

    H: int
    W: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_focal(cls, H: int, W: int, focal: float) -> "Intrinsics":
        """Square pixels, principal point at the image centre."""
        return cls(H, W, focal, focal, W / 2, H / 2)

    def scaled(self, factor: float) -> "Intrinsics":
        """The same camera for an image resized by ``factor`` (0.5 halves it)."""
        return Intrinsics(
            int(round(self.H * factor)), int(round(self.W * factor)),
            self.fx * factor, self.fy * factor, self.cx * factor, self.cy * factor,
        )


@dataclass(frozen=True)
class Rays:
    """A batch of rays r(t) = origins + t·directions, t ∈ [near, far].

    Attributes:
        origins: [*rays, 3].
        directions: [*rays, 3], not normalised.
        near, far: [*rays, 1].
    """

    origins: Tensor
    directions: Tensor
    near: Tensor
    far: Tensor

    @property
    def shape(self) -> torch.Size:
        return self.origins.shape[:-1]

    @property
    def span(self) -> Tensor:
        """[*rays, 1] the length of [near, far] in distance: (far − near)·‖d‖."""
        return (self.far - self.near) * self.directions.norm(dim=-1, keepdim=True)

    def reshape(self, *shape: int) -> "Rays":
        return Rays(*(x.reshape(*shape, x.shape[-1]) for x in (self.origins, self.directions, self.near, self.far)))

    def __getitem__(self, index) -> "Rays":
        return Rays(self.origins[index], self.directions[index], self.near[index], self.far[index])

    def to(self, device: torch.device) -> "Rays":
        return Rays(*(x.to(device) for x in (self.origins, self.directions, self.near, self.far)))


def pixel_rays(
    c2w: Tensor, rows: Tensor, cols: Tensor, intrinsics: Intrinsics, near: float, far: float, ndc: bool = False
) -> Rays:
    """Rays through pixels (rows, cols) of cameras c2w.

    Args:
        c2w: [*rays, 3, 4] (or [3, 4], shared by all rays).
        rows, cols: [*rays] pixel indices (float for sub-pixel positions).
        intrinsics: the camera model.
        near, far: the ray bounds in t, before any NDC transform.
        ndc: map the rays to normalised device coordinates (forward-facing
            scenes), after which t ∈ [0, 1].

    Returns:
        Rays of shape [*rays].
    """
    dtype = c2w.dtype
    d_cam = torch.stack(
        (
            (cols.to(dtype) - intrinsics.cx) / intrinsics.fx,
            -(rows.to(dtype) - intrinsics.cy) / intrinsics.fy,
            -torch.ones_like(cols, dtype=dtype),
        ),
        dim=-1,
    )  # [*rays, 3]
    directions = torch.einsum("...ij,...j->...i", c2w[..., :3, :3], d_cam)
    origins = c2w[..., :3, 3].expand_as(directions)
    if ndc:
        return to_ndc(origins, directions, intrinsics, near_plane=1.0)
    bound = torch.ones(directions.shape[:-1] + (1,), dtype=dtype, device=directions.device)
    return Rays(origins, directions, bound * near, bound * far)


def camera_rays(c2w: Tensor, intrinsics: Intrinsics, near: float, far: float, ndc: bool = False) -> Rays:
    """Every pixel of one camera: Rays of shape [H, W]. ``c2w`` is [3, 4]."""
    rows, cols = torch.meshgrid(
        torch.arange(intrinsics.H, device=c2w.device), torch.arange(intrinsics.W, device=c2w.device), indexing="ij"
    )
    return pixel_rays(c2w, rows, cols, intrinsics, near, far, ndc)


def to_ndc(origins: Tensor, directions: Tensor, intrinsics: Intrinsics, near_plane: float = 1.0) -> Rays:
    """Maps camera-space-forward rays to normalised device coordinates (NeRF, appendix C).

    The origin is first moved along the ray to the plane z = −n (n = near_plane);
    then, with a_x = −2 fx / W and a_y = −2 fy / H,

        o' = (a_x o_x / o_z,  a_y o_y / o_z,  1 + 2n / o_z)
        d' = (a_x (d_x/d_z − o_x/o_z),  a_y (d_y/d_z − o_y/o_z),  −2n / o_z)

    so t' = 0 lies on the near plane (z' = −1) and t' = 1 at infinity (z' = 1).
    Valid in the frame where the scene lies in front of the cameras along −z
    (LLFF poses after recentering).

    Args:
        origins, directions: [*rays, 3].

    Returns:
        Rays in NDC with near 0 and far 1.
    """
    t_plane = -(near_plane + origins[..., 2]) / directions[..., 2]
    origins = origins + t_plane[..., None] * directions
    ox, oy, oz = origins.unbind(-1)
    dx, dy, dz = directions.unbind(-1)
    ax, ay = -2 * intrinsics.fx / intrinsics.W, -2 * intrinsics.fy / intrinsics.H
    ndc_origins = torch.stack((ax * ox / oz, ay * oy / oz, 1 + 2 * near_plane / oz), dim=-1)
    ndc_directions = torch.stack((ax * (dx / dz - ox / oz), ay * (dy / dz - oy / oz), -2 * near_plane / oz), dim=-1)
    zeros = torch.zeros_like(ox)[..., None]
    return Rays(ndc_origins, ndc_directions, zeros, zeros + 1)
