"""Sparse-view computed tomography with integral networks (the AutoInt paper's second application).

A parallel-beam reading is the line integral of the attenuation μ along the
line at angle θ and signed offset ρ:

    p(ρ, θ) = ∫ μ(ρ·n + t·n⊥) dt,   n = (cos θ, sin θ), n⊥ = (−sin θ, cos θ),

with t across the unit disc, |t| ≤ √(1 − ρ²). x runs along image columns and y
up the rows (scikit-image's ``radon`` convention). Φ takes the encoded point
x(t) beside an encoded code of the line (o = ρ·n and n⊥). The code is needed: a
Φ of the point alone would make μ = ∇Φ·n⊥ a conservative field, whose line
integrals depend only on where a line enters and leaves the disc. Φ's
differences give the readings: p = Φ(t_max) − Φ(t_min).
"""
import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch
from torch import Tensor

from .autoint import Concat, Constant, IntegralNetwork, PositionalEncoding, Product, Sequential, Sum, Variable, mlp


@dataclass(frozen=True)
class Ellipse:
    """Density ``value`` inside the ellipse of semi-axes (a, b) about (x0, y0), rotated by ``angle`` degrees."""

    value: float
    a: float
    b: float
    x0: float
    y0: float
    angle: float


# The Shepp–Logan head phantom, with Toft's higher-contrast intensities (as in scikit-image).
SHEPP_LOGAN: Tuple[Ellipse, ...] = (
    Ellipse(1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    Ellipse(-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    Ellipse(-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    Ellipse(-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    Ellipse(0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    Ellipse(0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    Ellipse(0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    Ellipse(0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    Ellipse(0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    Ellipse(0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)


def grid(size: int) -> np.ndarray:
    """Coordinates of ``size`` pixels (and detector bins) across [−1, 1]: (k − size//2)·2/size.

    The centre is index size//2, scikit-image's rotation centre, so sinograms
    and reconstructions line up with its ``radon``/``iradon`` bin for bin.
    """
    return (np.arange(size) - size // 2) * 2.0 / size


def rasterize(ellipses, size: int = 64, supersample: int = 4) -> np.ndarray:
    """The phantom averaged over ``supersample``² points per pixel: [size, size], row 0 at the top (y = +1).

    Pixel (row i, col j) covers x ∈ grid[j] ± 1/size and y ∈ −grid[i] ± 1/size.
    """
    offsets = ((np.arange(supersample) + 0.5) / supersample - 0.5) * 2.0 / size
    x = (grid(size)[:, None] + offsets[None, :]).reshape(-1)
    X, Y = np.meshgrid(x, -x)
    image = np.zeros_like(X)
    for e in ellipses:
        c, s = math.cos(math.radians(e.angle)), math.sin(math.radians(e.angle))
        u = (X - e.x0) * c + (Y - e.y0) * s
        v = -(X - e.x0) * s + (Y - e.y0) * c
        image += e.value * ((u / e.a) ** 2 + (v / e.b) ** 2 <= 1.0)
    return image.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def analytic_sinogram(ellipses, rho: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Exact line integrals through the ellipses: [len(rho), len(theta)].

    For one ellipse, with s² = a² cos²(θ − φ) + b² sin²(θ − φ) and the offset
    relative to its centre τ = ρ − (x0 cos θ + y0 sin θ):

        p(ρ, θ) = 2·value·a·b·√(s² − τ²) / s²   for |τ| ≤ s, else 0.

    Args:
        rho: detector offsets in [−1, 1].
        theta: angles in radians.
    """
    R, T = np.meshgrid(rho, theta, indexing="ij")
    total = np.zeros_like(R)
    for e in ellipses:
        phi = math.radians(e.angle)
        s2 = (e.a * np.cos(T - phi)) ** 2 + (e.b * np.sin(T - phi)) ** 2
        tau = R - (e.x0 * np.cos(T) + e.y0 * np.sin(T))
        total += np.where(tau**2 <= s2, 2 * e.value * e.a * e.b * np.sqrt(np.clip(s2 - tau**2, 0, None)) / s2, 0.0)
    return total


@dataclass(frozen=True)
class SparseViews:
    """A full sinogram and the training subset of every k-th angle, with the exact angles of each column."""

    rho: np.ndarray
    theta: np.ndarray
    sinogram: np.ndarray
    subsample: int

    @property
    def train_columns(self) -> np.ndarray:
        return np.arange(0, len(self.theta), self.subsample)

    @property
    def test_columns(self) -> np.ndarray:
        return np.setdiff1d(np.arange(len(self.theta)), self.train_columns)


def make_views(size: int = 64, n_angles: int = 64, subsample: int = 4, ellipses=SHEPP_LOGAN) -> SparseViews:
    """The analytic sinogram at ``size`` detector bins and ``n_angles`` angles in [0°, 180°)."""
    theta = np.pi * np.arange(n_angles) / n_angles
    rho = grid(size)
    return SparseViews(rho, theta, analytic_sinogram(ellipses, rho, theta), subsample)


def interpolate_angles(views: SparseViews) -> np.ndarray:
    """Baseline: the held-out columns by linear interpolation along θ between training angles.

    Past the last training angle the sinogram wraps with p(ρ, θ + π) = p(−ρ, θ).
    """
    cols = views.train_columns
    known = views.sinogram[:, cols]
    theta = views.theta[cols]
    # Append the first training column shifted by π: the same line seen from the other side.
    theta_ext = np.concatenate((theta, [theta[0] + np.pi]))
    known_ext = np.concatenate((known, known[::-1, :1]), axis=1)
    out = views.sinogram.copy()
    for j in views.test_columns:
        k = np.searchsorted(theta_ext, views.theta[j]) - 1
        w = (views.theta[j] - theta_ext[k]) / (theta_ext[k + 1] - theta_ext[k])
        out[:, j] = (1 - w) * known_ext[:, k] + w * known_ext[:, k + 1]
    return out


def psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """PSNR with the truth's range as peak: 10·log10(range² / MSE)."""
    peak = truth.max() - truth.min()
    return float(10 * np.log10(peak**2 / np.mean((estimate - truth) ** 2)))


def build_network(activation: str, hidden: int = 64, n_layers: int = 4, n_freqs: int = 6, code_freqs: int = 4) -> IntegralNetwork:
    """Φ(t; o, d) of the encoded point o + t·d beside the encoded line code [o, d] (o = ρ·n, d = n⊥)."""
    point = Sequential(Sum(Constant(0), Product(Variable(), Constant(1))), PositionalEncoding(n_freqs))
    code = Sequential(Concat(Constant(0), Constant(1)), PositionalEncoding(code_freqs))
    width = PositionalEncoding(n_freqs).out_features(2) + PositionalEncoding(code_freqs).out_features(4)
    return IntegralNetwork(Sequential(Concat(point, code), mlp(width, hidden, n_layers, 1, activation, w0=10.0)), n_constants=2)


def line_constants(rho: Tensor, theta: Tensor) -> Tuple[Tensor, Tensor]:
    """(o, d) of each line: o = ρ·(cos θ, sin θ), d = (−sin θ, cos θ). Shapes [n_rays, 2]."""
    normal = torch.stack((torch.cos(theta), torch.sin(theta)), -1)
    return rho[:, None] * normal, torch.stack((-normal[:, 1], normal[:, 0]), -1)


def chord(rho: Tensor) -> Tensor:
    """Half-length √(1 − ρ²) of the line inside the unit disc."""
    return torch.sqrt(torch.clamp(1 - rho**2, min=0.0))


@dataclass
class FitResult:
    network: IntegralNetwork
    losses: List[float]


def fit(views: SparseViews, activation: str, steps: int = 1000, n_samples: int = 16, lrate: float = 1e-3, seed: int = 0, hidden: int = 64) -> FitResult:
    """Trains the grad network so that L·mean(μ at M stratified samples) matches each training reading."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    network = build_network(activation, hidden)
    grad = network.grad_network()
    cols = views.train_columns
    rho = torch.tensor(np.repeat(views.rho, len(cols)), dtype=torch.float32)
    theta = torch.tensor(np.tile(views.theta[cols], len(views.rho)), dtype=torch.float32)
    target = torch.tensor(views.sinogram[:, cols].reshape(-1), dtype=torch.float32)
    o, d = line_constants(rho, theta)
    half = chord(rho)
    optimizer = torch.optim.Adam(grad.parameters(), lr=lrate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lrate * 0.01)
    losses = []
    for _ in range(steps):
        u = (torch.arange(n_samples) + torch.rand(len(rho), n_samples, generator=generator)) / n_samples  # stratified in [0, 1)
        t = -half[:, None] + 2 * half[:, None] * u  # [n_rays, n_samples]
        mu = grad(t[..., None], o[:, None], d[:, None])[..., 0]
        estimate = 2 * half * mu.mean(-1)
        loss = torch.mean((estimate - target) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return FitResult(network, losses)


def predict_sinogram(network: IntegralNetwork, views: SparseViews) -> np.ndarray:
    """Every reading by the fundamental theorem: Φ(t_max) − Φ(t_min). [len(rho), len(theta)]."""
    R, T = np.meshgrid(views.rho, views.theta, indexing="ij")
    rho = torch.tensor(R.reshape(-1), dtype=torch.float32)
    o, d = line_constants(rho, torch.tensor(T.reshape(-1), dtype=torch.float32))
    half = chord(rho)[:, None]
    with torch.no_grad():
        return network.integrate(-half, half, o, d)[:, 0].numpy().reshape(R.shape).astype(np.float64)


def filtered_back_projection(sinogram: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """scikit-image's ramp-filtered back-projection, from unit-disc line integrals (pixel units: ÷ 2/size)."""
    from skimage.transform import iradon

    size = sinogram.shape[0]
    return iradon(sinogram / (2.0 / size), theta=np.degrees(theta), circle=True, filter_name="ramp")
