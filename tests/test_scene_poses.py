"""Pose maths: spherical cameras, paths, recentering, spherify."""
import numpy as np
import pytest

from autoint_cli.scene.poses import (
    average_pose,
    circle_path,
    look_along,
    recenter,
    spherical_pose,
    spherify,
    spiral_path,
    to_homogeneous,
)


def assert_rotation(c2w):
    rotation = c2w[..., :3, :3]
    np.testing.assert_allclose(np.swapaxes(rotation, -1, -2) @ rotation, np.broadcast_to(np.eye(3), rotation.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-12)


@pytest.mark.parametrize("azimuth, elevation", [(0.0, -30.0), (90.0, -30.0), (-135.0, -60.0), (10.0, 20.0)])
def test_spherical_pose_looks_at_the_origin(azimuth, elevation):
    c2w = spherical_pose(azimuth, elevation, 4.0)
    assert_rotation(c2w)
    position = c2w[:, 3]
    np.testing.assert_allclose(np.linalg.norm(position), 4.0, atol=1e-12)
    np.testing.assert_allclose(-c2w[:, 2], -position / 4.0, atol=1e-12)  # looks down −z, at the origin
    # Negative "elevation" angles put the camera above the z = 0 plane: z = −r sin(elevation).
    np.testing.assert_allclose(position[2], -4.0 * np.sin(np.radians(elevation)), atol=1e-12)
    assert c2w[2, 1] >= -1e-12  # camera up has no downward world component


def test_circle_path():
    path = circle_path()
    assert path.shape == (40, 3, 4)
    np.testing.assert_allclose(path[:, 2, 3], 2.0, atol=1e-12)  # 4·sin 30°
    azimuths = np.degrees(np.arctan2(path[:, 1, 3], path[:, 0, 3]))
    assert len(np.unique(np.round(azimuths, 6))) == 40


def test_recenter_makes_the_average_pose_the_identity():
    rng = np.random.default_rng(0)
    poses = np.stack([look_along(rng.normal(size=3) + [0, 0, 3], [0, 1, 0], rng.normal(size=3)) for _ in range(6)])
    centred = recenter(poses)
    np.testing.assert_allclose(average_pose(centred), np.eye(3, 4), atol=1e-12)
    # The relative geometry is unchanged: camera-to-camera transforms are preserved.
    relative = np.linalg.inv(to_homogeneous(poses[0])) @ to_homogeneous(poses[1])
    np.testing.assert_allclose(np.linalg.inv(to_homogeneous(centred[0])) @ to_homogeneous(centred[1]), relative, atol=1e-12)


def forward_facing_rig(n=9, seed=0):
    rng = np.random.default_rng(seed)
    poses = np.stack([look_along(np.array([0, 0, 1.0]) + rng.normal(scale=0.05, size=3), [0, 1, 0], rng.normal(scale=0.3, size=3)) for _ in range(n)])
    bounds = np.stack([rng.uniform(1.0, 1.5, n), rng.uniform(5, 8, n)], -1)
    return recenter(poses), bounds


def test_spiral_path_looks_at_one_focus_point():
    poses, bounds = forward_facing_rig()
    path = spiral_path(poses, bounds)
    assert path.shape == (120, 3, 4)
    assert_rotation(path)
    close, far = bounds.min() * 0.9, bounds.max() * 5
    focus_depth = 1 / (0.25 / close + 0.75 / far)
    focus = average_pose(poses) @ np.array([0, 0, -focus_depth, 1.0])
    for c2w in path[::17]:
        to_focus = focus - c2w[:, 3]
        np.testing.assert_allclose(-c2w[:, 2], to_focus / np.linalg.norm(to_focus), atol=1e-12)


def test_spherify_puts_cameras_on_a_unit_sphere():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(12, 3))
    centres = 3.0 * centres / np.linalg.norm(centres, axis=1, keepdims=True) + [1.0, 2.0, 0.5]
    poses = np.stack([look_along(c - [1.0, 2.0, 0.5], [0, 0, 1], c) for c in centres])
    out, bounds, path = spherify(poses, np.ones((12, 2)) * [1.0, 5.0])
    np.testing.assert_allclose(np.sqrt(np.mean(np.sum(out[:, :3, 3] ** 2, -1))), 1.0, atol=1e-12)
    np.testing.assert_allclose(bounds, np.ones((12, 2)) * [1.0, 5.0] / 3.0, rtol=1e-9)
    assert path.shape == (120, 3, 4)
    np.testing.assert_allclose(np.linalg.norm(path[:, :3, 3], axis=-1), 1.0, atol=1e-9)
    assert_rotation(path)
