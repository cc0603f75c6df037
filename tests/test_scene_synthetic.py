"""The demo scene's exact integrator, and the files it writes."""
import math

import numpy as np
import torch

from autoint_cli.scene import load_blender
from autoint_cli.scene.synthetic import DEMO_SHAPES, DemoSceneSpec, Shape, demo_cameras, render_exact, render_view, write_demo_scene
from autoint_cli.volume.rays import Intrinsics, Rays


def rays_through(origins, directions, near=0.0, far=10.0):
    o = torch.as_tensor(origins, dtype=torch.float64)
    d = torch.as_tensor(directions, dtype=torch.float64)
    bound = torch.ones(o.shape[:-1] + (1,), dtype=torch.float64)
    return Rays(o, d, bound * near, bound * far)


def test_single_sphere_through_its_centre():
    """Chord 2r, length in distance ‖d‖·Δt: α = 1 − exp(−σ·2r); colour α·c; depth by hand."""
    sphere = Shape("sphere", (0.0, 0.0, 0.0), (0.5, 0.5, 0.5), 3.0, (0.2, 0.4, 0.6))
    rays = rays_through([[0.0, 0.0, 4.0]], [[0.0, 0.0, -2.0]])  # ‖d‖ = 2: t from 1.75 to 2.25
    rgb, alpha, depth = render_exact([sphere], rays)
    expected_alpha = 1 - math.exp(-3.0 * 1.0)
    torch.testing.assert_close(alpha, torch.tensor([[expected_alpha]], dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(rgb, expected_alpha * torch.tensor([[0.2, 0.4, 0.6]], dtype=torch.float64), rtol=1e-12, atol=0)
    # One section [1.75, 2.25]: depth = α·2.0 (the section midpoint).
    torch.testing.assert_close(depth, torch.tensor([[expected_alpha * 2.0]], dtype=torch.float64), rtol=1e-12, atol=0)


def test_missing_ray_is_empty():
    rgb, alpha, _ = render_exact(DEMO_SHAPES, rays_through([[5.0, 5.0, 5.0]], [[1.0, 0.0, 0.0]]))
    assert alpha.item() == 0.0 and rgb.abs().max().item() == 0.0


def test_overlapping_media_mix_by_density():
    """Two coincident boxes: σ adds and the colour is Σσc/Σσ."""
    a = Shape("box", (0.0, 0.0, 0.0), (0.5, 0.5, 0.5), 1.0, (1.0, 0.0, 0.0))
    b = Shape("box", (0.0, 0.0, 0.0), (0.5, 0.5, 0.5), 3.0, (0.0, 0.0, 1.0))
    rgb, alpha, _ = render_exact([a, b], rays_through([[0.0, 0.0, 3.0]], [[0.0, 0.0, -1.0]]))
    expected_alpha = 1 - math.exp(-4.0)
    torch.testing.assert_close(alpha.squeeze(), torch.tensor(expected_alpha, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(rgb, expected_alpha * torch.tensor([[0.25, 0.0, 0.75]], dtype=torch.float64), rtol=1e-12, atol=0)


def test_matches_fine_quadrature():
    """Against brute-force NeRF-style quadrature of the same field, 50,000 samples a ray.

    Per-sample α = 1 − exp(−σδ) is exact inside a shape; only the samples that
    straddle a boundary err, by at most σ·δ ≈ 30 · 4.5 / 50,000 ≈ 3e-3 each.
    """
    generator = torch.Generator().manual_seed(0)
    origins = torch.randn(64, 3, generator=generator, dtype=torch.float64)
    origins = 4 * origins / origins.norm(dim=-1, keepdim=True)
    targets = torch.randn(64, 3, generator=generator, dtype=torch.float64) * 0.4
    rays = rays_through(origins, targets - origins, near=0.5, far=1.5)
    rgb, alpha, _ = render_exact(DEMO_SHAPES, rays)

    n = 50000
    t = 0.5 + (torch.arange(n, dtype=torch.float64) + 0.5) / n  # [n]
    points = rays.origins[:, None] + t[None, :, None] * rays.directions[:, None]  # [64, n, 3]
    sigma = torch.zeros(64, n, dtype=torch.float64)
    emission = torch.zeros(64, n, 3, dtype=torch.float64)
    for s in DEMO_SHAPES:
        offset = (points - torch.tensor(s.center, dtype=torch.float64)).abs()
        half = torch.tensor(s.half_size, dtype=torch.float64)
        inside = (offset.norm(dim=-1) < half[0]) if s.kind == "sphere" else (offset < half).all(-1)
        sigma += inside * s.density
        emission += (inside * s.density)[..., None] * torch.tensor(s.color, dtype=torch.float64)
    delta = rays.directions.norm(dim=-1, keepdim=True) / n
    optical = torch.cumsum(sigma * delta, -1)
    transmittance = torch.exp(-(optical - sigma * delta))
    color = emission / sigma.clamp_min(1e-30)[..., None]
    reference_rgb = (transmittance * -torch.expm1(-sigma * delta))[..., None].mul(color).sum(1)
    assert alpha.max() > 0.5 and (alpha < 0.01).any()  # rays through and beside the object
    torch.testing.assert_close(rgb, reference_rgb, rtol=0, atol=2e-3)
    torch.testing.assert_close(alpha[:, 0], 1 - torch.exp(-optical[:, -1]), rtol=0, atol=2e-3)


def test_written_pngs_match_the_integrator(tmp_path):
    spec = DemoSceneSpec(size=16, n_train=2, n_val=1, n_test=2)
    write_demo_scene(tmp_path / "demo", spec)
    scene = load_blender(tmp_path / "demo")
    intrinsics = Intrinsics.from_focal(16, 16, 8 / np.tan(0.5 * spec.camera_angle_x))
    for view, c2w in enumerate(scene.c2w.double().numpy()):
        rgb, alpha = render_view(c2w, intrinsics)
        on_white = rgb + (1 - alpha)
        # 8-bit straight colour and alpha: at most half a level each, so 1/255 together.
        np.testing.assert_allclose(scene.images[view].numpy(), on_white, rtol=0, atol=1.0 / 255 + 1e-6)
    assert scene.images.min() < 0.5  # something is drawn


def test_deterministic_from_seed(tmp_path):
    spec = DemoSceneSpec(size=8, n_train=2, n_val=1, n_test=1)
    a = write_demo_scene(tmp_path / "a", spec)
    b = write_demo_scene(tmp_path / "b", spec)
    for path in sorted(a.rglob("*.*")):
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path
    other = demo_cameras(DemoSceneSpec(seed=1))["train"]
    assert not np.allclose(other, demo_cameras(DemoSceneSpec(seed=0))["train"])


def test_cameras_look_at_the_object():
    for split, poses in demo_cameras(DemoSceneSpec()).items():
        assert poses.shape[1:] == (3, 4)
        np.testing.assert_allclose(np.linalg.norm(poses[:, :, 3], axis=-1), 4.0, atol=1e-9)
        assert (poses[:, 2, 3] > 0).all(), split  # upper hemisphere
