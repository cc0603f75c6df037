"""Pinhole rays and the NDC transform."""
import math

import pytest
import torch

from autoint_cli.scene.poses import spherical_pose
from autoint_cli.volume.rays import Intrinsics, Rays, camera_rays, pixel_rays, to_ndc


def random_c2w(generator):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    return torch.cat((q * torch.sign(torch.det(q)), torch.randn(3, 1, generator=generator, dtype=torch.float64)), 1)


def test_pixel_direction_by_hand():
    """Pixel (row 1, col 3) of a 4x6 camera with f = 2: d_cam = ((3 − 3)/2, −(1 − 2)/2, −1) = (0, 0.5, −1)."""
    camera = Intrinsics.from_focal(4, 6, 2.0)
    c2w = torch.eye(3, 4, dtype=torch.float64)
    c2w[:, 3] = torch.tensor([1.0, 2.0, 3.0])
    rays = pixel_rays(c2w, torch.tensor([1]), torch.tensor([3]), camera, near=2.0, far=6.0)
    torch.testing.assert_close(rays.directions, torch.tensor([[0.0, 0.5, -1.0]], dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(rays.origins, torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), rtol=0, atol=0)
    assert rays.near.item() == 2.0 and rays.far.item() == 6.0


def test_camera_rays_rotate_with_the_camera():
    generator = torch.Generator().manual_seed(1)
    c2w = random_c2w(generator)
    camera = Intrinsics(5, 7, 3.0, 4.0, 3.2, 2.1)
    rays = camera_rays(c2w, camera, 1.0, 2.0)
    assert rays.shape == (5, 7)
    local = torch.einsum("ij,hwi->hwj", c2w[:, :3], rays.directions)  # back to the camera frame
    rows, cols = torch.meshgrid(torch.arange(5.0, dtype=torch.float64), torch.arange(7.0, dtype=torch.float64), indexing="ij")
    torch.testing.assert_close(local[..., 0], (cols - 3.2) / 3.0, rtol=0, atol=1e-12)
    torch.testing.assert_close(local[..., 1], -(rows - 2.1) / 4.0, rtol=0, atol=1e-12)
    torch.testing.assert_close(local[..., 2], -torch.ones(5, 7, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(rays.origins, c2w[:, 3].expand(5, 7, 3), rtol=0, atol=0)


def test_rays_of_a_batch_of_cameras():
    generator = torch.Generator().manual_seed(2)
    c2w = torch.stack([random_c2w(generator) for _ in range(3)])
    camera = Intrinsics.from_focal(8, 8, 5.0)
    rows, cols = torch.tensor([0, 4, 7]), torch.tensor([1, 4, 2])
    batch = pixel_rays(c2w, rows, cols, camera, 2.0, 6.0)
    for i in range(3):
        single = camera_rays(c2w[i], camera, 2.0, 6.0)[rows[i], cols[i]]
        torch.testing.assert_close(batch.directions[i], single.directions, rtol=0, atol=1e-14)


def test_centre_ray_points_down_minus_z_of_a_spherical_camera():
    c2w = torch.from_numpy(spherical_pose(30.0, -30.0, 4.0))
    rays = camera_rays(c2w, Intrinsics.from_focal(10, 10, 12.0), 2.0, 6.0)
    centre = rays.directions[5, 5]
    torch.testing.assert_close(centre / centre.norm(), -c2w[:, 2], rtol=0, atol=1e-12)
    # …and therefore at the origin the camera looks at: o + 4·d̂ = 0.
    torch.testing.assert_close(rays.origins[5, 5] + 4.0 * centre / centre.norm(), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)


def test_intrinsics_scaled():
    half = Intrinsics(800, 600, 1000.0, 1100.0, 300.0, 400.0).scaled(0.5)
    assert half == Intrinsics(400, 300, 500.0, 550.0, 150.0, 200.0)


def ndc_to_world(points, camera, near_plane):
    """Inverse of the NDC projection for a point (x', y', z')."""
    x, y, z = points.unbind(-1)
    world_z = 2 * near_plane / (z - 1)
    ax, ay = -2 * camera.fx / camera.W, -2 * camera.fy / camera.H
    return torch.stack((x * world_z / ax, y * world_z / ay, world_z), -1)


@pytest.mark.parametrize("near_plane", [1.0, 0.5])
def test_ndc_rays_follow_the_world_rays(near_plane):
    """Every NDC point o' + t' d' maps back to a point of the original world ray; t' = 0 is on z = −near."""
    generator = torch.Generator().manual_seed(3)
    camera = Intrinsics.from_focal(30, 40, 35.0)
    origins = torch.randn(16, 3, generator=generator, dtype=torch.float64) * 0.2
    directions = torch.randn(16, 3, generator=generator, dtype=torch.float64) * 0.3
    directions[:, 2] = -1.0  # forward-facing: every ray heads into −z
    ndc = to_ndc(origins, directions, camera, near_plane)
    assert (ndc.near == 0).all() and (ndc.far == 1).all()
    torch.testing.assert_close(ndc.origins[:, 2], -torch.ones(16, dtype=torch.float64), rtol=0, atol=1e-12)
    start = ndc_to_world(ndc.origins, camera, near_plane)
    torch.testing.assert_close(start[:, 2], torch.full((16,), -near_plane, dtype=torch.float64), rtol=0, atol=1e-12)
    for t in (0.0, 0.3, 0.9, 0.999):
        world = ndc_to_world(ndc.origins + t * ndc.directions, camera, near_plane)
        offset = world - origins
        cross = torch.linalg.cross(offset, directions)
        assert cross.abs().max() < 1e-9 * max(1.0, offset.abs().max().item())
        # Depth increases with t' and goes to infinity as t' → 1.
        assert (world[:, 2] <= start[:, 2] + 1e-12).all()
    far = ndc_to_world(ndc.origins + 0.999999 * ndc.directions, camera, near_plane)
    assert far[:, 2].max() < -1e5 * near_plane


def test_ndc_of_a_centre_ray():
    """A ray along −z from the origin: NDC x' = y' = 0, z' runs from −1 to 1 linearly in t'."""
    camera = Intrinsics.from_focal(10, 10, 10.0)
    ndc = to_ndc(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]), camera, 1.0)
    torch.testing.assert_close(ndc.origins, torch.tensor([[0.0, 0.0, -1.0]]), rtol=0, atol=0)
    torch.testing.assert_close(ndc.directions, torch.tensor([[0.0, 0.0, 2.0]]), rtol=0, atol=0)


def test_rays_reshape_and_index():
    rays = camera_rays(torch.eye(3, 4), Intrinsics.from_focal(4, 5, 3.0), 2.0, 6.0)
    flat = rays.reshape(-1)
    assert flat.shape == (20,) and flat.near.shape == (20, 1)
    assert flat[3:7].shape == (4,)
    assert math.isclose(flat.far[0].item(), 6.0)


def test_span_is_the_length_of_near_to_far_in_distance():
    """Direction (3, 4, 0) (‖d‖ = 5) over t ∈ [2, 6]: 20; (0, 0, 0.5) over [1, 3]: 1."""
    rays = Rays(torch.zeros(2, 3), torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.5]]), torch.tensor([[2.0], [1.0]]), torch.tensor([[6.0], [3.0]]))
    torch.testing.assert_close(rays.span, torch.tensor([[20.0], [1.0]]), rtol=0, atol=1e-6)
