"""The demo scene's exact integrator, and the files it writes."""
import math

import numpy as np
import torch

from autoint_cli.scene import load_blender
from autoint_cli.scene.synthetic import DEMO_SHAPES, DemoSceneSpec, Shape, demo_cameras, demo_shapes, render_exact, render_view, write_demo_scene
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


def _elevations(poses):
    return np.degrees(np.arcsin(poses[:, 2, 3] / np.linalg.norm(poses[:, :, 3], axis=-1)))


def test_held_out_views_lie_in_their_own_band_and_the_default_scene_is_unchanged():
    """holdout_elevation: val and test cameras between its elevations, training ones between train_elevation's; without it the
    cameras are those of the default spec (the README's demo scene does not change)."""
    spec = DemoSceneSpec(n_train=60, n_val=30, n_test=30, train_elevation=(20.0, 75.0), holdout_elevation=(5.0, 12.0))
    cameras = demo_cameras(spec)
    train = _elevations(cameras["train"])
    assert train.min() >= 20 - 1e-9 and train.max() <= 75 + 1e-9 and train.max() - train.min() > 30
    for split in ("val", "test"):
        held = _elevations(cameras[split])
        assert held.min() >= 5 - 1e-9 and held.max() <= 12 + 1e-9, split
    default = demo_cameras(DemoSceneSpec())
    np.testing.assert_allclose(_elevations(default["test"]), 30.0, atol=1e-9)
    assert _elevations(default["train"]).min() >= 5 - 1e-9


def test_opaque_density_makes_every_shape_opaque_and_leaves_the_rest():
    """opaque_density 300: the same shapes, colours and places at that density; the images' alpha is then 0 or 1 away from the
    silhouette (a partly translucent shape of the demo would leave values between)."""
    shapes = demo_shapes(DemoSceneSpec(opaque_density=300.0))
    assert [s.density for s in shapes] == [300.0] * len(DEMO_SHAPES)
    assert [(s.kind, s.center, s.half_size, s.color) for s in shapes] == [(s.kind, s.center, s.half_size, s.color) for s in DEMO_SHAPES]
    assert demo_shapes(DemoSceneSpec()) == DEMO_SHAPES
    from autoint_cli.volume.rays import Intrinsics

    c2w = demo_cameras(DemoSceneSpec())["test"][0]
    _, translucent = render_view(c2w, Intrinsics.from_focal(32, 32, 40.0))
    _, opaque = render_view(c2w, Intrinsics.from_focal(32, 32, 40.0), shapes)
    between = lambda alpha: ((alpha > 0.02) & (alpha < 0.98)).mean()  # noqa: E731
    assert between(opaque) < 0.5 * between(translucent)
