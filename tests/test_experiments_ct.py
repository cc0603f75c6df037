"""Sparse-view CT: the phantom, its exact sinogram, the angle bookkeeping, the baseline, the integral network."""
import math

import numpy as np
import pytest
import torch
from skimage.transform import radon

from autoint_cli.experiments.ct import (
    SHEPP_LOGAN,
    Ellipse,
    FitSettings,
    analytic_sinogram,
    chord,
    fit,
    flip_rho,
    grid,
    interpolate_angles,
    line_constants,
    make_views,
    predict_sinogram,
    psnr,
    rasterize,
)


def test_analytic_sinogram_is_close_to_radon_of_the_raster():
    """Close, not equal: the raster is a 64x64 approximation of the ellipses."""
    views = make_views(64, 64, 4)
    image = rasterize(SHEPP_LOGAN, 64)
    discrete = radon(image, theta=np.degrees(views.theta), circle=True) * (2 / 64)  # pixel sums -> unit-disc integrals
    relative = np.linalg.norm(discrete - views.sinogram) / np.linalg.norm(views.sinogram)
    assert relative < 0.08, relative


def test_disc_chords_by_hand():
    """A disc of radius 0.5 and value 2 at (0.2, 0): p = 2·value·√(r² − τ²)."""
    disc = [Ellipse(2.0, 0.5, 0.5, 0.2, 0.0, 0.0)]
    rho = np.array([0.2, 0.5, 0.0, -0.3, 0.75])
    p0 = analytic_sinogram(disc, rho, np.array([0.0]))[:, 0]  # τ = ρ − 0.2
    np.testing.assert_allclose(p0, [2.0, 1.6, 2 * 2 * math.sqrt(0.25 - 0.04), 0.0, 0.0], rtol=0, atol=1e-12)
    p90 = analytic_sinogram(disc, rho, np.array([math.pi / 2]))[:, 0]  # τ = ρ
    np.testing.assert_allclose(p90, [2 * 2 * math.sqrt(0.25 - 0.04), 0.0, 2.0, 1.6, 0.0], rtol=0, atol=1e-12)


def test_rotated_ellipse_against_numerical_line_integrals():
    ellipse = Ellipse(1.5, 0.4, 0.15, -0.1, 0.2, 30.0)
    rho = np.array([-0.05, 0.1, 0.2])
    theta = np.array([0.3, 1.2, 2.5])
    exact = analytic_sinogram([ellipse], rho, theta)
    t = np.linspace(-1, 1, 200001)
    dt = t[1] - t[0]
    c, s = math.cos(math.radians(30.0)), math.sin(math.radians(30.0))
    for i, r in enumerate(rho):
        for j, th in enumerate(theta):
            x = r * math.cos(th) - t * math.sin(th)
            y = r * math.sin(th) + t * math.cos(th)
            u, v = (x + 0.1) * c + (y - 0.2) * s, -(x + 0.1) * s + (y - 0.2) * c
            numeric = 1.5 * np.sum((u / 0.4) ** 2 + (v / 0.15) ** 2 <= 1) * dt
            assert abs(numeric - exact[i, j]) < 1e-4, (r, th)


def test_angle_bookkeeping_is_exact():
    """Training columns are every k-th angle, with exactly the angles of those columns; 180° is excluded."""
    views = make_views(16, 64, 4)
    assert len(views.theta) == 64 and views.theta[-1] < math.pi
    np.testing.assert_array_equal(views.theta, math.pi * np.arange(64) / 64)
    np.testing.assert_array_equal(views.train_columns, np.arange(0, 64, 4))
    np.testing.assert_array_equal(views.theta[views.train_columns], math.pi * np.arange(0, 64, 4) / 64)
    assert set(views.train_columns) | set(views.test_columns) == set(range(64))
    assert not set(views.train_columns) & set(views.test_columns)
    # Each column is the projection at its own angle: recomputing one column alone gives the same numbers.
    np.testing.assert_array_equal(views.sinogram[:, 12], analytic_sinogram(SHEPP_LOGAN, views.rho, views.theta[12:13])[:, 0])


def test_baseline_interpolation_and_wrap():
    views = make_views(16, 16, 4)  # training angles 0, 45, 90, 135 degrees
    out = interpolate_angles(views)
    np.testing.assert_array_equal(out[:, views.train_columns], views.sinogram[:, views.train_columns])
    # 22.5° lies halfway between 0° and 45°.
    np.testing.assert_allclose(out[:, 2], 0.5 * (views.sinogram[:, 0] + views.sinogram[:, 4]), rtol=0, atol=1e-12)
    # 157.5° lies halfway between 135° and 180°, and 180° is 0° seen from the other side: ρ flipped.
    np.testing.assert_allclose(out[:, 14], 0.5 * (views.sinogram[:, 12] + flip_rho(views.sinogram[:, 0], views.rho)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [16, 15])
def test_flipping_rho_is_the_line_seen_from_the_other_side(size):
    """p(ρ, θ + π) = p(−ρ, θ) on the exact sinogram, on even grids (where ρ = +1 is no bin: its line only touches the disc) and odd ones."""
    rho = (np.arange(size) - size // 2) * 2.0 / size
    theta = np.array([0.2, 1.0, 2.9])
    turned = analytic_sinogram(SHEPP_LOGAN, rho, theta + np.pi)
    np.testing.assert_allclose(flip_rho(analytic_sinogram(SHEPP_LOGAN, rho, theta), rho), turned, rtol=0, atol=1e-12)


def smooth_views(size=17, n_angles=64, subsample=4):
    """A sinogram that is a trigonometric polynomial of degree 3 in θ and keeps p(ρ, θ + π) = p(−ρ, θ)."""
    views = make_views(size, n_angles, subsample)
    R, T = np.meshgrid(views.rho, views.theta, indexing="ij")
    smooth = 0.3 + R * np.cos(T) + R**2 * np.cos(2 * T) + 0.5 * R * np.sin(3 * T)
    return type(views)(views.rho, views.theta, smooth, subsample)


def test_band_limited_interpolation_is_exact_for_a_band_limited_sinogram():
    """32 samples of the turn determine a trigonometric polynomial of degree 3 exactly; the spline and linear ones are close, in that order."""
    views = smooth_views()
    held = views.test_columns
    errors = {}
    for method in ("band-limited", "periodic spline", "linear"):
        out = interpolate_angles(views, method)
        np.testing.assert_array_equal(out[:, views.train_columns], views.sinogram[:, views.train_columns])
        errors[method] = np.abs(out[:, held] - views.sinogram[:, held]).max()
    assert errors["band-limited"] < 1e-12
    assert errors["band-limited"] < errors["periodic spline"] < 1e-3 < errors["linear"] < 0.05, errors


def test_band_limited_interpolation_needs_equal_spacing():
    views = make_views(16, 30, 4)  # 30 angles, every 4th: the turn's samples are not equally spaced
    with pytest.raises(ValueError, match="equally spaced angles"):
        interpolate_angles(views, "band-limited")
    interpolate_angles(views, "periodic spline")  # the spline takes any spacing


def test_lines_and_chords():
    rho = torch.tensor([0.0, 0.6, -1.0])
    o, d = line_constants(rho, torch.tensor([0.0, math.pi / 2, math.pi / 4]))
    torch.testing.assert_close(o, torch.tensor([[0.0, 0.0], [0.0, 0.6], [-math.sqrt(0.5), -math.sqrt(0.5)]]), rtol=0, atol=1e-6)
    torch.testing.assert_close((o * d).sum(-1), torch.zeros(3), rtol=0, atol=1e-6)  # d ⊥ n
    torch.testing.assert_close(chord(rho), torch.tensor([1.0, 0.8, 0.0]), rtol=0, atol=1e-6)


def test_training_loss_falls_and_integral_matches_monte_carlo():
    views = make_views(16, 16, 2)
    result = fit(views, "swish", FitSettings(steps=60, n_samples=8, log_every=20))
    assert result.losses[-1] < 0.5 * result.losses[0]
    # The history: every 20 steps, the step's loss and the PSNR of Φ's readings of the training angles.
    assert [h["step"] for h in result.history] == [20, 40, 60]
    assert result.history[-1]["loss"] == pytest.approx(result.losses[-1])
    train = views.train_columns
    assert result.history[-1]["train_psnr"] == pytest.approx(psnr(predict_sinogram(result.network, views)[:, train], views.sinogram[:, train]), abs=1e-4)
    predicted = predict_sinogram(result.network, views)
    # Φ(t_max) − Φ(t_min) against a fine midpoint sum of the grad network along each line.
    grad = result.network.grad_network()
    R, T = np.meshgrid(views.rho, views.theta, indexing="ij")
    rho = torch.tensor(R.reshape(-1), dtype=torch.float32)
    o, d = line_constants(rho, torch.tensor(T.reshape(-1), dtype=torch.float32))
    half = chord(rho)
    n = 4000
    t = -half[:, None] + 2 * half[:, None] * (torch.arange(n) + 0.5) / n
    with torch.no_grad():
        quadrature = (2 * half * grad(t[..., None], o[:, None], d[:, None])[..., 0].mean(-1)).numpy().reshape(R.shape)
    np.testing.assert_allclose(predicted, quadrature, rtol=0, atol=2e-3)


def test_psnr_uses_the_truth_range():
    truth = np.array([0.0, 1.0, 0.5, 0.25])
    assert psnr(truth + 0.1, truth) == pytest.approx(20.0)
    assert grid(4).tolist() == [-1.0, -0.5, 0.0, 0.5]


def test_trained_integral_network_reproduces_the_training_readings():
    """Φ(t_max) − Φ(t_min) at the training angles after a short fit: well above 25 dB (about 35 dB at 300 steps)."""
    views = make_views(16, 16, 2)
    result = fit(views, "sine", FitSettings(steps=200))
    predicted = predict_sinogram(result.network, views)
    assert psnr(predicted[:, views.train_columns], views.sinogram[:, views.train_columns]) > 25.0
