"""The 1-D tutorial: fit a grad network to f on an interval, then integrate with Φ.

Training supervises ∂Φ/∂t with f at stratified points of the interval; the
integral network Φ then gives any definite integral as Φ(b) − Φ(a), which is
checked against the closed-form antiderivative F of f.
"""
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from scipy.special import sici
from torch import Tensor

from ..autoint import IntegralNetwork, encoded_mlp, mlp


@dataclass(frozen=True)
class Function1D:
    """A function to integrate and its closed-form antiderivative (float64 numpy)."""

    name: str
    formula: str
    f: Callable[[np.ndarray], np.ndarray]
    antiderivative: Callable[[np.ndarray], np.ndarray]


def _sinc20(x: np.ndarray) -> np.ndarray:
    # np.sinc(y) = sin(πy)/(πy) and is 1 at y = 0, which removes the singularity.
    return np.sinc(20.0 * x / math.pi)


FUNCTIONS: Dict[str, Function1D] = {
    f.name: f
    for f in (
        Function1D("cos", "cos(10x)", lambda x: np.cos(10 * x), lambda x: np.sin(10 * x) / 10),
        Function1D(
            "polynomial",
            "0.1x^5 - 0.2x^4 + 0.2x^3 - 0.4x^2 + 0.1x",
            lambda x: 0.1 * x**5 - 0.2 * x**4 + 0.2 * x**3 - 0.4 * x**2 + 0.1 * x,
            lambda x: x**6 / 60 - 0.04 * x**5 + 0.05 * x**4 - 0.4 * x**3 / 3 + 0.05 * x**2,
        ),
        Function1D("sinc", "sin(20x)/(20x)", _sinc20, lambda x: sici(20 * x)[0] / 20),
        Function1D("linear", "x", lambda x: x, lambda x: x**2 / 2),
        Function1D("xcosx", "x cos(x)", lambda x: x * np.cos(x), lambda x: x * np.sin(x) + np.cos(x)),
    )
}


@dataclass(frozen=True)
class Fit1DConfig:
    """Settings of one fit; the defaults meet 1e-3 integral error on every function in FUNCTIONS."""

    fn: str = "cos"
    range: Tuple[float, float] = (-1.0, 1.0)
    activation: str = "sine"
    steps: int = 2000
    seed: int = 0
    hidden_features: int = 64
    n_layers: int = 4
    n_freqs: int = 4
    w0: float = 30.0
    lrate: float = 1e-3
    n_points: int = 1024


@dataclass
class Fit1DResult:
    """What a fit produced; ``summary()`` is the JSON the script prints."""

    config: Fit1DConfig
    network: IntegralNetwork
    grad_rmse: float
    integral_max_abs_error: float
    seconds: float
    losses: List[float] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "fn": self.config.fn,
            "range": list(self.config.range),
            "activation": self.config.activation,
            "steps": self.config.steps,
            "grad_rmse": self.grad_rmse,
            "integral_max_abs_error": self.integral_max_abs_error,
            "seconds": round(self.seconds, 3),
            "final_loss": self.losses[-1] if self.losses else None,
            "config": asdict(self.config),
        }


def build_network(config: Fit1DConfig) -> IntegralNetwork:
    """Φ(t): a SIREN on t for ``sine``, otherwise an MLP on the 1/f-normalised encoding of t.

    The input is rescaled to [-1, 1] inside the network so that the same
    architecture suits any range.
    """
    if config.activation == "sine":
        body = mlp(1, config.hidden_features, config.n_layers, 1, "sine", config.w0)
    else:
        body = encoded_mlp(config.n_freqs, config.hidden_features, config.n_layers, 1, config.activation)
    return IntegralNetwork(body)


def _to_unit(x: Tensor, lo: float, hi: float) -> Tensor:
    return (2 * x - (lo + hi)) / (hi - lo)


def fit(config: Fit1DConfig) -> Fit1DResult:
    """Fits ∂Φ/∂t to f and measures the grad and integral errors.

    The network works in u = (2x − lo − hi)/(hi − lo) ∈ [-1, 1]; since
    dx = (hi − lo)/2 du, it is trained on the scaled target f(x)·(hi − lo)/2
    and ∫_a^b f dx = Φ(u(b)) − Φ(u(a)) exactly.
    """
    if config.fn not in FUNCTIONS:
        raise ValueError(f"unknown --fn {config.fn!r}; expected one of {sorted(FUNCTIONS)}")
    lo, hi = config.range
    if not hi > lo:
        raise ValueError(f"--range needs A < B, got {lo} {hi}")
    target = FUNCTIONS[config.fn]
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    network = build_network(config)
    grad_net = network.grad_network()
    optimizer = torch.optim.Adam(grad_net.parameters(), lr=config.lrate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps, eta_min=config.lrate * 1e-3)
    half_width = (hi - lo) / 2
    cells = torch.arange(config.n_points, dtype=torch.float64)[:, None]

    start = time.perf_counter()
    losses = []
    for _ in range(config.steps):
        # Stratified points: one per cell, jittered each step, so no point of the interval goes unseen.
        u = -1 + 2 * (cells + torch.rand(cells.shape, generator=generator, dtype=torch.float64)) / config.n_points
        x = lo + (u + 1) * half_width
        y = torch.from_numpy(target.f(x.numpy()) * half_width).float()
        loss = torch.mean((grad_net(u.float()) - y) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start

    with torch.no_grad():
        grid = np.linspace(lo, hi, 10001)
        u = _to_unit(torch.from_numpy(grid)[:, None], lo, hi).float()
        fitted = grad_net(u).double().squeeze(-1).numpy() / half_width
        grad_rmse = float(np.sqrt(np.mean((fitted - target.f(grid)) ** 2)))
        rng = np.random.default_rng(config.seed + 1)
        ends = np.sort(rng.uniform(lo, hi, size=(1000, 2)), axis=1)
        a, b = (torch.from_numpy(ends[:, i : i + 1]) for i in range(2))
        predicted = network.integrate(_to_unit(a, lo, hi).float(), _to_unit(b, lo, hi).float()).double().squeeze(-1).numpy()
        exact = target.antiderivative(ends[:, 1]) - target.antiderivative(ends[:, 0])
        integral_error = float(np.max(np.abs(predicted - exact)))
    return Fit1DResult(config, network, grad_rmse, integral_error, seconds, losses)


def plot_fit(result: Fit1DResult, path: Path) -> Path:
    """Draws f with the fitted grad network, and Φ beside the antiderivative F.

    Φ is shifted so that Φ(lo) = F(lo): both are antiderivatives, defined up to a constant.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config, target = result.config, FUNCTIONS[result.config.fn]
    lo, hi = config.range
    x = np.linspace(lo, hi, 1001)
    u = _to_unit(torch.from_numpy(x)[:, None], lo, hi).float()
    with torch.no_grad():
        grad = result.network.grad_network()(u).double().squeeze(-1).numpy() / ((hi - lo) / 2)
        phi = result.network(u).double().squeeze(-1).numpy()
    exact = target.antiderivative(x)
    phi = phi - phi[0] + exact[0]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(x, target.f(x), "k-", label=f"f(x) = {target.formula}")
    left.plot(x[::20], grad[::20], "r.", label="grad network dPhi/dt")
    left.set_title(f"grad network, RMSE {result.grad_rmse:.2e}")
    right.plot(x, exact, "k-", label="closed-form antiderivative F")
    right.plot(x[::20], phi[::20], "b.", label="integral network Phi (aligned at left end)")
    right.set_title(f"integral network, max |error| of integrals {result.integral_max_abs_error:.2e}")
    for ax in (left, right):
        ax.set_xlabel("x")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"AutoInt 1-D: {config.fn} on [{lo:g}, {hi:g}], {config.activation}, {config.steps} steps")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
