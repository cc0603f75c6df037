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
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..autoint import Concat, Constant, IntegralNetwork, PositionalEncoding, Product, Sequential, Sum, Variable, mlp
from ..utils.fastpath import compile_module


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


def flip_rho(columns: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Each column [len(rho), ...] read at −ρ: the same line seen from the other side (p(ρ, θ + π) = p(−ρ, θ)).

    On an even detector grid, −ρ of the first bin (ρ = −1) is ρ = +1, which
    is not a bin: that line only touches the unit disc, so its reading is 0.
    """
    index = np.searchsorted(rho, -rho)
    found = (index < len(rho)) & np.isclose(rho[np.minimum(index, len(rho) - 1)], -rho, rtol=0, atol=1e-9)
    flipped = np.zeros_like(columns)
    flipped[found] = columns[index[found]]
    return flipped


def _full_turn(views: SparseViews) -> Tuple[np.ndarray, np.ndarray]:
    """The training columns over a whole turn θ ∈ [0, 2π): those of [0, π) and, π later, the same lines with ρ flipped."""
    cols = views.train_columns
    known = views.sinogram[:, cols]
    theta = views.theta[cols]
    return np.concatenate((theta, theta + np.pi)), np.concatenate((known, flip_rho(known, views.rho)), axis=1)


def _linear(theta_known: np.ndarray, known: np.ndarray, theta: np.ndarray) -> np.ndarray:
    closed_theta = np.concatenate((theta_known, [theta_known[0] + 2 * np.pi]))
    closed = np.concatenate((known, known[:, :1]), axis=1)
    k = np.searchsorted(closed_theta, theta, side="right") - 1
    w = (theta - closed_theta[k]) / (closed_theta[k + 1] - closed_theta[k])
    return (1 - w) * closed[:, k] + w * closed[:, k + 1]


def _periodic_spline(theta_known: np.ndarray, known: np.ndarray, theta: np.ndarray) -> np.ndarray:
    from scipy.interpolate import CubicSpline

    closed_theta = np.concatenate((theta_known, [theta_known[0] + 2 * np.pi]))
    closed = np.concatenate((known, known[:, :1]), axis=1)
    return CubicSpline(closed_theta, closed, axis=1, bc_type="periodic")(theta)


def _band_limited(theta_known: np.ndarray, known: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The trigonometric polynomial of degree < L/2 through L equally spaced samples of a turn (Nyquist term as a cosine)."""
    L = len(theta_known)
    step = 2 * np.pi / L
    if not np.allclose(np.diff(theta_known), step, rtol=0, atol=1e-9):
        raise ValueError("band-limited interpolation needs equally spaced angles (n_angles a multiple of the subsampling)")
    coefficients = np.fft.fft(known, axis=1) / L  # c_m of Σ c_m e^{i m (θ − θ_0)}
    m = np.fft.fftfreq(L, 1.0 / L)
    phase = np.exp(1j * np.outer(m, theta - theta_known[0]))  # [L, n_theta]
    if L % 2 == 0:
        phase[L // 2] = np.cos(L // 2 * (theta - theta_known[0]))
    return np.real(coefficients @ phase)


# Classical interpolators along θ, by the names reports use.
INTERPOLATORS: Dict[str, Callable] = {"linear": _linear, "periodic spline": _periodic_spline, "band-limited": _band_limited}


def interpolate_angles(views: SparseViews, method: str = "linear") -> np.ndarray:
    """Baselines: the held-out columns interpolated along θ from the training ones (training columns kept as they are).

    The sinogram is periodic over a whole turn with p(ρ, θ + π) = p(−ρ, θ), so
    the training columns of [0, π) and their ρ-flipped copies π later sample
    the turn: ``linear`` joins neighbours, ``periodic spline`` is the periodic
    cubic spline through them, ``band-limited`` the trigonometric polynomial
    (exact for a sinogram of degree < L/2 in θ, L the samples of the turn).
    """
    theta_known, known = _full_turn(views)
    out = views.sinogram.copy()
    held = views.test_columns
    out[:, held] = INTERPOLATORS[method](theta_known, known, views.theta[held])
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


@dataclass(frozen=True)
class FitSettings:
    """How a grad network is fitted to the training readings: the whole training set in every step.

    The defaults make a CPU run of minutes; :data:`PAPER` is the authors' protocol.
    ``cosine`` decays the rate to 1% of ``lrate`` over the steps (False: constant).
    ``log_every`` steps between entries of the history (0: the last step only).
    ``compile_mode`` compiles the loss and its backward (``reduce-overhead``: CUDA graphs).
    """

    steps: int = 1000
    hidden: int = 64
    n_layers: int = 4
    n_freqs: int = 6
    n_samples: int = 16
    lrate: float = 1e-3
    amsgrad: bool = False
    cosine: bool = True
    log_every: int = 0
    compile_mode: Optional[str] = None
    seed: int = 0


# The authors' CT protocol (reference §4.3): a 4 x 128 network with 10 frequencies, 64 stratified samples per line,
# Adam with amsgrad at a constant 1e-4, 50,000 steps.
PAPER = FitSettings(steps=50_000, hidden=128, n_layers=4, n_freqs=10, n_samples=64, lrate=1e-4, amsgrad=True, cosine=False, log_every=500)


@dataclass
class FitResult:
    """The fitted network, the loss of every step, and the history: dicts of step, loss and train_psnr (Φ at the training lines)."""

    network: IntegralNetwork
    losses: List[float]
    history: List[Dict[str, float]] = field(default_factory=list)


def integrate_lines(network: IntegralNetwork, rho: Tensor, theta: Tensor) -> Tensor:
    """Readings of lines (ρ, θ) [n] by the fundamental theorem, Φ(t_max) − Φ(t_min): [n], without gradients."""
    o, d = line_constants(rho, theta)
    half = chord(rho)[:, None]
    with torch.no_grad():
        return network.integrate(-half, half, o, d)[:, 0]


def _training_lines(views: SparseViews, device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
    """(ρ, θ, reading) of every training line, flattened detector-major: [n_lines] each."""
    cols = views.train_columns
    rho = torch.tensor(np.repeat(views.rho, len(cols)), dtype=torch.float32, device=device)
    theta = torch.tensor(np.tile(views.theta[cols], len(views.rho)), dtype=torch.float32, device=device)
    target = torch.tensor(views.sinogram[:, cols].reshape(-1), dtype=torch.float32, device=device)
    return rho, theta, target


def fit(views: SparseViews, activation: str, settings: FitSettings = FitSettings(), device: Optional[torch.device] = None) -> FitResult:
    """Trains the grad network so that L·mean(μ at M stratified samples) matches each training reading.

    The loss of a step is mean over lines of (2·half·mean_m μ(t_m) − p)², with t_m
    stratified in [−half, half]; the same formula the authors fit.
    """
    device = device or torch.device("cpu")
    s = settings
    torch.manual_seed(s.seed)
    generator = torch.Generator(device=device).manual_seed(s.seed)
    network = build_network(activation, s.hidden, s.n_layers, s.n_freqs).to(device)
    grad = network.grad_network()
    rho, theta, target = _training_lines(views, device)
    o, d = line_constants(rho, theta)
    half = chord(rho)

    def loss_of(u: Tensor) -> Tensor:
        t = -half[:, None] + 2 * half[:, None] * u  # [n_lines, n_samples]
        estimate = 2 * half * grad(t[..., None], o[:, None], d[:, None])[..., 0].mean(-1)
        return torch.mean((estimate - target) ** 2)

    loss_fn = loss_of if s.compile_mode is None else compile_module(loss_of, s.compile_mode)
    optimizer = torch.optim.Adam(grad.parameters(), lr=s.lrate, amsgrad=s.amsgrad)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, s.steps, eta_min=s.lrate * 0.01) if s.cosine else None
    strata = torch.arange(s.n_samples, device=device)
    losses: List[Tensor] = []
    history: List[Dict[str, float]] = []
    for step in range(1, s.steps + 1):
        u = (strata + torch.rand(len(rho), s.n_samples, generator=generator, device=device)) / s.n_samples  # stratified in [0, 1)
        loss = loss_fn(u)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.detach().clone())  # read at the end: no host synchronisation per step
        if step == s.steps or (s.log_every and step % s.log_every == 0):
            history.append(_history_entry(network, rho, theta, target, step, losses[-1]))
    return FitResult(network, [float(x) for x in torch.stack(losses).cpu()], history)


def _history_entry(network: IntegralNetwork, rho: Tensor, theta: Tensor, target: Tensor, step: int, loss: Tensor) -> Dict[str, float]:
    """The step, its loss and the PSNR of Φ's readings of the training lines (the truth's range as peak)."""
    readings = integrate_lines(network, rho, theta)
    return {"step": step, "loss": float(loss), "train_psnr": psnr(readings.cpu().double().numpy(), target.cpu().double().numpy())}


def predict_sinogram(network: IntegralNetwork, views: SparseViews) -> np.ndarray:
    """Every reading by the fundamental theorem: Φ(t_max) − Φ(t_min). [len(rho), len(theta)]."""
    R, T = np.meshgrid(views.rho, views.theta, indexing="ij")
    device = next(network.parameters()).device
    rho = torch.tensor(R.reshape(-1), dtype=torch.float32, device=device)
    theta = torch.tensor(T.reshape(-1), dtype=torch.float32, device=device)
    return integrate_lines(network, rho, theta).cpu().numpy().reshape(R.shape).astype(np.float64)


def filtered_back_projection(sinogram: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """scikit-image's ramp-filtered back-projection, from unit-disc line integrals (pixel units: ÷ 2/size)."""
    from skimage.transform import iradon

    size = sinogram.shape[0]
    return iradon(sinogram / (2.0 / size), theta=np.degrees(theta), circle=True, filter_name="ramp")
