"""The 1-D demo: closed forms, and the default fits meeting their error bound."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from autoint_cli.experiments.fit1d import FUNCTIONS, Fit1DConfig, fit, plot_fit


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_antiderivative_differentiates_to_f(name):
    """Central differences of the closed-form F give f (guards the formulas the demo is judged by)."""
    target = FUNCTIONS[name]
    x = np.linspace(-1.9, 1.9, 401)
    h = 1e-5
    numeric = (target.antiderivative(x + h) - target.antiderivative(x - h)) / (2 * h)
    np.testing.assert_allclose(numeric, target.f(x), rtol=0, atol=1e-8)


def test_sinc_singularity_is_removed():
    assert FUNCTIONS["sinc"].f(np.array([0.0]))[0] == 1.0
    assert FUNCTIONS["sinc"].antiderivative(np.array([0.0]))[0] == 0.0


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_default_fit_integrates_to_1e_3(name):
    result = fit(Fit1DConfig(fn=name))
    assert result.integral_max_abs_error <= 1e-3, result.summary()
    assert result.grad_rmse <= 1e-2, result.summary()
    assert result.losses[-1] < result.losses[0] * 1e-3


def test_untrained_network_fails_the_bound():
    """The error measure can fail: one step leaves the integral far off."""
    result = fit(Fit1DConfig(fn="cos", steps=1))
    assert result.integral_max_abs_error > 1e-2


def test_fit_on_another_range_and_activation():
    result = fit(Fit1DConfig(fn="polynomial", range=(-1.0, 2.0), activation="swish", steps=600))
    assert result.integral_max_abs_error < 2e-2
    assert result.summary()["range"] == [-1.0, 2.0]


def test_same_seed_same_result():
    a = fit(Fit1DConfig(fn="linear", steps=30, seed=3))
    b = fit(Fit1DConfig(fn="linear", steps=30, seed=3))
    assert a.losses == b.losses
    for pa, pb in zip(a.network.parameters(), b.network.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_summary_and_plot(tmp_path):
    result = fit(Fit1DConfig(fn="xcosx", steps=20))
    summary = result.summary()
    for key in ("fn", "range", "activation", "steps", "grad_rmse", "integral_max_abs_error", "seconds"):
        assert key in summary
    assert summary["steps"] == 20 and summary["fn"] == "xcosx"
    path = plot_fit(result, tmp_path / "sub" / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="unknown --fn 'tan'"):
        fit(replace(Fit1DConfig(), fn="tan"))
    with pytest.raises(ValueError, match="--range needs A < B"):
        fit(replace(Fit1DConfig(), range=(1.0, -1.0)))
