"""Sequential, Concat, Sum and Product: values, tangents and what stays uncomputed."""
import pytest
import torch

from autoint_cli.autoint import (
    Concat,
    Constant,
    IntegralNetwork,
    Linear,
    PositionalEncoding,
    Product,
    Sequential,
    Sine,
    Sum,
    Swish,
    Tanh,
    Variable,
)
from autoint_cli.autoint.dual import Inputs

from helpers import assert_relative, autograd_dphi_dt, jvp_dphi_dt

REL = 1e-10


def line():
    """x(t) = o + t·d from constants 0 and 1."""
    return Sum(Constant(0), Product(Variable(), Constant(1)))


def test_line_is_o_plus_t_d_with_tangent_d():
    t = torch.rand(5, 8, 1, dtype=torch.float64)
    o, d = torch.randn(5, 1, 3, dtype=torch.float64), torch.randn(5, 1, 3, dtype=torch.float64)
    out = line()(Inputs(t, (o, d)))
    torch.testing.assert_close(out.primal, o + t * d, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(out.dense_tangent().expand(5, 8, 3), d.expand(5, 8, 3), rtol=0, atol=0)


@pytest.mark.parametrize("order", ["const_last", "const_first", "const_middle", "two_varying"])
def test_concat_tangent_span(order):
    """The tangent covers only the span of branches that depend on t."""
    varying = lambda: Sequential(Variable(), PositionalEncoding(2))  # 5 features
    constant = lambda: Sequential(Constant(0), PositionalEncoding(1))  # 2·3 = 6 features
    branches = {
        "const_last": (varying(), constant()),
        "const_first": (constant(), varying()),
        "const_middle": (varying(), constant(), varying()),
        "two_varying": (varying(), varying()),
    }[order]
    expected_offset, expected_width = {"const_last": (0, 5), "const_first": (6, 5), "const_middle": (0, 16), "two_varying": (0, 10)}[order]
    t = torch.rand(4, 1, dtype=torch.float64)
    c = torch.randn(4, 2, dtype=torch.float64)
    out = Concat(*branches)(Inputs(t, (c,)))
    assert (out.offset, out.tangent.shape[-1]) == (expected_offset, expected_width)
    width = out.n_features
    phi = IntegralNetwork(Sequential(Concat(*branches), Linear(width, 3), Tanh(), Linear(3, 2)), n_constants=1).double()
    assert_relative(phi.grad_network()(t, c), autograd_dphi_dt(phi, t, c), REL)


def test_concat_of_constants_only_has_no_tangent():
    out = Concat(Constant(0), Constant(1))(Inputs(torch.rand(3, 1), (torch.randn(3, 2), torch.randn(3, 4))))
    assert out.tangent is None and out.n_features == 6


def test_concat_broadcasts_a_per_ray_code_over_samples():
    t = torch.rand(5, 7, 1, dtype=torch.float64)
    code = torch.randn(5, 1, 4, dtype=torch.float64)
    phi = IntegralNetwork(
        Sequential(Concat(Sequential(Variable(), PositionalEncoding(3)), Constant(0)), Linear(11, 8), Swish(), Linear(8, 2)),
        n_constants=1,
    ).double()
    grad, value = phi.grad_network()(t, code, return_integral=True)
    assert grad.shape == value.shape == (5, 7, 2)
    assert_relative(grad, autograd_dphi_dt(phi, t, code), REL)
    torch.testing.assert_close(value, phi(t, code.expand(5, 7, 4)), rtol=1e-14, atol=1e-14)


def test_sum_and_product_rules():
    """Φ = sin(t)·tanh(W t) + t·c: derivative checked against autograd."""
    body = Sequential(
        Sum(
            Product(Sequential(Variable(), Sine(1.0)), Sequential(Linear(1, 3), Tanh())),
            Product(Variable(), Constant(0)),
        ),
        Linear(3, 2),
    )
    phi = IntegralNetwork(body, n_constants=1).double()
    t = torch.rand(6, 1, dtype=torch.float64)
    c = torch.randn(6, 3, dtype=torch.float64)
    assert_relative(phi.grad_network()(t, c), autograd_dphi_dt(phi, t, c), REL)
    assert_relative(phi.grad_network()(t, c), jvp_dphi_dt(phi, t, c), REL)


def test_product_of_three_branches():
    body = Product(Sequential(Variable(), Sine(2.0)), Sequential(Variable(), Swish()), Sequential(Variable(), Tanh()))
    phi = IntegralNetwork(body).double()
    t = torch.linspace(-1, 1, 11, dtype=torch.float64)[:, None]
    expected = (
        2 * torch.cos(2 * t) * torch.nn.functional.silu(t) * torch.tanh(t)
        + torch.sin(2 * t) * (torch.sigmoid(t) * (1 + t * (1 - torch.sigmoid(t)))) * torch.tanh(t)
        + torch.sin(2 * t) * torch.nn.functional.silu(t) * (1 - torch.tanh(t) ** 2)
    )
    assert_relative(phi.grad_network()(t), expected, REL)


def test_sum_of_branches_with_different_tangent_spans():
    a = Concat(Sequential(Variable(), PositionalEncoding(1)), Constant(0))  # tangent on 0..3
    b = Concat(Constant(0), Sequential(Variable(), PositionalEncoding(1)))  # tangent on 2..5
    phi = IntegralNetwork(Sequential(Sum(a, b), Linear(5, 2)), n_constants=1).double()
    t, c = torch.rand(4, 1, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    assert_relative(phi.grad_network()(t, c), autograd_dphi_dt(phi, t, c), REL)


def test_combinators_need_enough_parts():
    with pytest.raises(ValueError, match="at least two branches"):
        Concat(Variable())
    with pytest.raises(ValueError, match="at least one layer"):
        Sequential()
