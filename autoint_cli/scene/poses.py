"""Camera-pose maths shared by the loaders: the one copy of it in the project.

Poses are camera-to-world matrices ``c2w`` [3, 4] (OpenGL axes: the camera
looks down −z, +y up), in float64 numpy while loading.
"""
import math

import numpy as np


def normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def to_homogeneous(c2w: np.ndarray) -> np.ndarray:
    """[..., 3, 4] -> [..., 4, 4] with last row (0, 0, 0, 1)."""
    bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), c2w.shape[:-2] + (1, 4))
    return np.concatenate((c2w[..., :3, :4], bottom), axis=-2)


def look_along(z_axis: np.ndarray, up: np.ndarray, position: np.ndarray) -> np.ndarray:
    """The c2w [3, 4] whose +z axis is along ``z_axis`` (the camera looks down −z), +y near ``up``."""
    z = normalize(z_axis)
    x = normalize(np.cross(up, z))
    y = normalize(np.cross(z, x))
    return np.stack((x, y, z, position), axis=1)


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """Mean camera of [n, 3, 4]: mean centre, summed viewing (z) axes, summed up (y) axes."""
    return look_along(c2w[:, :3, 2].sum(0), c2w[:, :3, 1].sum(0), c2w[:, :3, 3].mean(0))


def recenter(c2w: np.ndarray) -> np.ndarray:
    """Expresses [n, 3, 4] poses in the frame of their average pose (LLFF recentering)."""
    world_from_avg = to_homogeneous(average_pose(c2w))
    return (np.linalg.inv(world_from_avg) @ to_homogeneous(c2w))[:, :3, :4]


def _rotation_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]], dtype=np.float64)


def _rotation_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, -s, 0], [0, 1, 0, 0], [s, 0, c, 0], [0, 0, 0, 1]], dtype=np.float64)


# Swaps the y and z axes and mirrors x: turns a camera built about the y axis
# into Blender's world with +z up.
_BLENDER_WORLD = np.array([[-1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def spherical_pose(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    """A camera on a sphere around the origin, looking at it, in Blender's z-up world.

    Built as translate(0, 0, radius), then rotate by the elevation about x, by
    the azimuth about y, then map to Blender's axes: the construction NeRF's
    Blender render path uses, so the same angles give the same cameras.
    """
    translate = np.eye(4)
    translate[2, 3] = radius
    c2w = _BLENDER_WORLD @ _rotation_y(math.radians(azimuth_deg)) @ _rotation_x(math.radians(elevation_deg)) @ translate
    return c2w[:3, :4]


def circle_path(n_views: int = 40, elevation_deg: float = -30.0, radius: float = 4.0) -> np.ndarray:
    """The Blender video path: ``n_views`` cameras at azimuths evenly spread over [−180°, 180°)."""
    azimuths = np.linspace(-180.0, 180.0, n_views + 1)[:-1]
    return np.stack([spherical_pose(a, elevation_deg, radius) for a in azimuths])


def spiral_path(c2w: np.ndarray, bounds: np.ndarray, n_views: int = 120, n_rotations: int = 2, z_rate: float = 0.5) -> np.ndarray:
    """The LLFF video path: a spiral around the average pose, every camera looking at a focus point.

    The focus depth is the harmonic blend 1/((1−w)/close + w/far) with w = 0.75,
    close = 0.9·min bound and far = 5·max bound; the spiral's radii are the 90th
    percentile of |camera position| per axis.

    Args:
        c2w: [n, 3, 4] recentred poses.
        bounds: [n, 2] near/far bounds, already scaled.
    """
    centre = average_pose(c2w)
    up = normalize(c2w[:, :3, 1].sum(0))
    close, far = bounds.min() * 0.9, bounds.max() * 5.0
    blend = 0.75
    focus = 1.0 / ((1.0 - blend) / close + blend / far)
    radii = np.percentile(np.abs(c2w[:, :3, 3]), 90, axis=0)
    path = []
    for theta in np.linspace(0.0, 2 * math.pi * n_rotations, n_views + 1)[:-1]:
        offset = np.array([math.cos(theta), -math.sin(theta), -math.sin(theta * z_rate)]) * radii
        position = centre[:, :3] @ offset + centre[:, 3]
        target = centre[:, :3] @ np.array([0.0, 0.0, -focus]) + centre[:, 3]
        path.append(look_along(position - target, up, position))
    return np.stack(path)


def spherify(c2w: np.ndarray, bounds: np.ndarray, n_views: int = 120):
    """Re-centres inward-facing (360°) captures on the point closest to all optical axes, at unit radius.

    Returns:
        (poses [n, 3, 4], bounds [n, 2], render path [n_views, 3, 4]).
    """
    axes, centres = c2w[:, :3, 2], c2w[:, :3, 3]
    # The point minimising the summed squared distance to every camera's optical axis.
    projectors = np.eye(3) - axes[:, :, None] * axes[:, None, :]  # [n, 3, 3]
    focus = np.linalg.solve(projectors.mean(0), (projectors @ centres[:, :, None]).mean(0))[:, 0]
    up = normalize((centres - focus).mean(0))
    x = normalize(np.cross(np.array([0.1, 0.2, 0.3]), up))
    y = normalize(np.cross(up, x))
    frame = np.stack((x, y, up, focus), axis=1)
    poses = (np.linalg.inv(to_homogeneous(frame)) @ to_homogeneous(c2w))[:, :3, :4]
    scale = 1.0 / np.sqrt(np.mean(np.sum(poses[:, :3, 3] ** 2, axis=-1)))
    poses[:, :3, 3] *= scale
    bounds = bounds * scale
    height = poses[:, 2, 3].mean()
    ring = math.sqrt(max(1.0 - height**2, 0.0))
    path = []
    for theta in np.linspace(0.0, 2 * math.pi, n_views):
        position = np.array([ring * math.cos(theta), ring * math.sin(theta), height])
        z = normalize(position)
        x_axis = normalize(np.cross(z, np.array([0.0, 0.0, -1.0])))
        y_axis = normalize(np.cross(z, x_axis))
        path.append(np.stack((x_axis, y_axis, z, position), axis=1))
    return poses, bounds, np.stack(path)
