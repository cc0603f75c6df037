"""Integral and grad networks: exactness on random architectures, shared parameters, integrals."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given, strategies as st

from autoint_cli.autoint import (
    ACTIVATIONS,
    Concat,
    Constant,
    IntegralNetwork,
    Linear,
    PositionalEncoding,
    Product,
    Sequential,
    Sum,
    Variable,
    encoded_mlp,
    make_activation,
    mlp,
)

from helpers import assert_relative, autograd_dphi_dt, jvp_dphi_dt

REL = 1e-10


@st.composite
def architectures(draw):
    """A random integral network Φ(t; c) and the width of its constant input c.

    Fronts: t alone, an encoding of t, the line o + t·d, a constant code
    concatenated before or after, or sum/product branches; then an MLP of random
    depth, widths and activations (one per layer).
    """
    const_width = draw(st.integers(1, 3))
    front_kind = draw(st.sampled_from(["t", "encoded", "line", "code_after", "code_before", "sum", "product"]))
    n_freqs = draw(st.integers(0, 3))
    encode = PositionalEncoding(n_freqs, include_input=draw(st.booleans()) or n_freqs == 0, normalize=draw(st.booleans()))
    if front_kind == "t":
        front, width = Variable(), 1
    elif front_kind == "encoded":
        front, width = Sequential(Variable(), encode), encode.out_features(1)
    elif front_kind == "line":
        front = Sequential(Sum(Constant(0), Product(Variable(), Constant(1))), encode)
        width = encode.out_features(const_width)
    elif front_kind in ("code_after", "code_before"):
        parts = [Sequential(Variable(), encode), Constant(0)]
        front = Concat(*(parts if front_kind == "code_after" else parts[::-1]))
        width = encode.out_features(1) + const_width
    else:
        hidden = draw(st.integers(1, 4))
        left = Sequential(Variable(), Linear(1, hidden), make_activation(draw(st.sampled_from(sorted(ACTIVATIONS))), 2.0))
        right = Sequential(Constant(0), Linear(const_width, hidden))
        front = (Sum if front_kind == "sum" else Product)(left, right)
        width = hidden
    layers = [front]
    for _ in range(draw(st.integers(0, 4))):
        out = draw(st.integers(1, 7))
        layers += [Linear(width, out, init="xavier"), make_activation(draw(st.sampled_from(sorted(ACTIVATIONS))), draw(st.sampled_from([1.0, 3.0])))]
        width = out
    layers.append(Linear(width, draw(st.integers(1, 3)), init="xavier"))
    return IntegralNetwork(Sequential(*layers), n_constants=2).double(), const_width


@given(architectures(), st.integers(0, 2**31 - 1), st.sampled_from([(9,), (2, 5), (3, 1, 4)]))
def test_random_architectures_match_autograd(arch, seed, batch):
    phi, const_width = arch
    generator = torch.Generator().manual_seed(seed)
    t = torch.rand(batch + (1,), generator=generator, dtype=torch.float64) * 2 - 1
    o = torch.randn(batch + (const_width,), generator=generator, dtype=torch.float64)
    d = torch.randn(batch + (const_width,), generator=generator, dtype=torch.float64)
    reference = autograd_dphi_dt(phi, t, o, d)
    assume(torch.isfinite(reference).all() and reference.abs().max() < 1e8)
    grad, value = phi.grad_network()(t, o, d, return_integral=True)
    assert_relative(grad, reference, REL)
    # Φ from the grad pass may round differently (swish as z·s against F.silu).
    assert_relative(value, phi(t, o, d), 1e-13)


def paper_sized(depth=4, width=32, out=3):
    """Φ(t; o, d, q): encoded o + t·d beside an encoded per-ray code q, a Swish MLP."""
    point = Sequential(Sum(Constant(0), Product(Variable(), Constant(1))), PositionalEncoding(6))
    code = Sequential(Constant(2), PositionalEncoding(2))
    return IntegralNetwork(Sequential(Concat(point, code), mlp(39 + 30, width, depth, out, "swish")), n_constants=3).double()


def ray_inputs(n_rays=4, n_samples=6):
    t = torch.rand(n_rays, n_samples, 1, dtype=torch.float64) * 4 + 2
    o = torch.randn(n_rays, 1, 3, dtype=torch.float64)
    d = torch.randn(n_rays, 1, 3, dtype=torch.float64)
    q = torch.randn(n_rays, 1, 6, dtype=torch.float64)
    return t, o, d, q


def test_paper_shaped_network_matches_jvp():
    phi = paper_sized()
    inputs = ray_inputs()
    assert_relative(phi.grad_network()(*inputs), jvp_dphi_dt(phi, *inputs), REL)


def test_parameter_gradients_match_double_backprop():
    """The grad network is differentiable in its weights: same gradients as reverse-over-reverse."""
    phi = paper_sized()
    inputs = ray_inputs()
    target = torch.randn(4, 6, 3, dtype=torch.float64)
    params = list(phi.parameters())

    loss = torch.mean((phi.grad_network()(*inputs) - target) ** 2)
    ours = torch.autograd.grad(loss, params, allow_unused=True)
    loss_ref = torch.mean((autograd_dphi_dt(phi, *inputs) - target) ** 2)
    reference = torch.autograd.grad(loss_ref, params, allow_unused=True)
    for mine, ref, p in zip(ours, reference, params):
        if ref is None:  # the output bias: ∂Φ/∂t does not depend on it
            assert mine is None, p.shape
            continue
        assert_relative(mine, ref, 1e-10)


def test_grad_network_shares_the_very_same_parameters():
    phi = paper_sized()
    grad = phi.grad_network()
    assert [id(p) for p in phi.parameters()] == [id(p) for p in grad.parameters()]
    assert list(phi.state_dict()) == list(grad.state_dict())
    # An optimizer over the grad network changes Φ.
    inputs = ray_inputs()
    before = phi(*inputs).detach().clone()
    optimizer = torch.optim.SGD(grad.parameters(), lr=0.1)
    torch.mean(grad(*inputs) ** 2).backward()
    optimizer.step()
    assert (phi(*inputs) - before).abs().max() > 1e-6


def test_one_state_dict_serves_both():
    """Weights trained through the grad network reassemble into an identical Φ elsewhere."""
    phi = paper_sized()
    grad = phi.grad_network()
    fresh = paper_sized()
    inputs = ray_inputs()
    assert (fresh(*inputs) - phi(*inputs)).abs().max() > 1e-3
    fresh.load_state_dict(grad.state_dict())
    torch.testing.assert_close(fresh(*inputs), phi(*inputs), rtol=0, atol=0)
    reassembled = fresh.grad_network().integral_network()
    torch.testing.assert_close(reassembled(*inputs), phi(*inputs), rtol=0, atol=0)
    assert not any(torch.is_tensor(v) and v.dtype == torch.float64 and "freqs" in k for k, v in phi.state_dict().items())


def gauss_legendre(grad, a, b, *constants, order=64):
    """∫_a^b grad dt by Gauss–Legendre quadrature of the given order, per batch entry."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    nodes = torch.from_numpy(nodes)
    weights = torch.from_numpy(weights)
    half, mid = (b - a) / 2, (b + a) / 2  # [*batch, 1]
    t = mid[..., None, :] + half[..., None, :] * nodes[:, None]  # [*batch, order, 1]
    values = grad(t, *(c[..., None, :] for c in constants))  # [*batch, order, n_out]
    return half * torch.einsum("...kc,k->...c", values, weights)


def test_definite_integral_matches_quadrature_of_grad_network():
    phi = paper_sized()
    _, o, d, q = ray_inputs(n_rays=12)
    a = torch.rand(12, 1, dtype=torch.float64) * 2 + 2
    b = a + torch.rand(12, 1, dtype=torch.float64) * 0.5
    o, d, q = o[:, 0], d[:, 0], q[:, 0]
    integral = phi.integrate(a, b, o, d, q)
    assert integral.shape == (12, 3)
    quadrature = gauss_legendre(phi.grad_network(), a, b, o, d, q)
    assert_relative(integral, quadrature, 1e-9)


def test_definite_integral_of_a_sine_network():
    """A SIREN on t (high frequency): Φ(b) − Φ(a) against 128-point quadrature."""
    phi = IntegralNetwork(mlp(1, 32, 3, 2, "sine", w0=30.0)).double()
    a = torch.rand(20, 1, dtype=torch.float64) - 0.5
    b = a + torch.rand(20, 1, dtype=torch.float64) * 0.3
    assert_relative(phi.integrate(a, b), gauss_legendre(phi.grad_network(), a, b, order=128), 1e-9)


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_any_batch_shape(batch):
    phi = IntegralNetwork(encoded_mlp(3, 8, 3, 2, "swish")).double()
    t = torch.rand(batch + (1,), dtype=torch.float64)
    grad, value = phi.grad_network()(t, return_integral=True)
    assert grad.shape == value.shape == batch + (2,)
    assert_relative(grad, jvp_dphi_dt(phi, t), REL)
    assert phi.integrate(t, t + 0.1).shape == batch + (2,)


def test_constant_only_network_has_zero_derivative():
    phi = IntegralNetwork(Sequential(Constant(0), Linear(2, 3)), n_constants=1).double()
    t, c = torch.rand(4, 1, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(phi.grad_network()(t, c), torch.zeros(4, 3, dtype=torch.float64), rtol=0, atol=0)


def test_parameters_unused_by_grad_are_exactly_those_that_shift_phi_by_a_constant():
    t, c = torch.rand(3, 1), torch.randn(3, 2)
    phi = IntegralNetwork(encoded_mlp(2, 8, 3, 2), n_constants=0)
    last = [name for name, _ in phi.named_parameters()][-1]
    assert last.endswith("bias") and phi.parameters_unused_by_grad(t) == [last]
    # A branch of the constant alone adds a function of c only: all of its parameters are unused.
    phi = IntegralNetwork(Sum(Sequential(Variable(), Linear(1, 3, bias=False)), Sequential(Constant(0), Linear(2, 3))), n_constants=1)
    assert phi.parameters_unused_by_grad(t, c) == ["body.branches.1.layers.1.weight", "body.branches.1.layers.1.bias"]
    phi = IntegralNetwork(Sequential(Constant(0), Linear(2, 3)), n_constants=1)
    assert phi.parameters_unused_by_grad(t, c) == ["body.layers.1.weight", "body.layers.1.bias"]
    # Shifting an unused parameter leaves the grad network's output as it was.
    phi = IntegralNetwork(encoded_mlp(2, 8, 3, 2), n_constants=0)
    before = phi.grad_network()(t)
    with torch.no_grad():
        phi.get_parameter(phi.parameters_unused_by_grad(t)[0]).add_(1.0)
    torch.testing.assert_close(phi.grad_network()(t), before, rtol=0, atol=0)


def test_input_checks():
    phi = IntegralNetwork(encoded_mlp(2, 4, 2, 1), n_constants=0)
    with pytest.raises(ValueError, match=r"t must have shape \[\*batch, 1\], got \(4, 2\)"):
        phi(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="expected 0 constant inputs, got 1"):
        phi.grad_network()(torch.zeros(4, 1), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least one layer"):
        mlp(3, 4, 0, 1)


def test_compiled_grad_network_matches_eager():
    """The torch.compile fast path computes the same function as the eager reference."""
    phi = paper_sized(depth=3, width=16)
    grad = phi.grad_network()
    compiled = torch.compile(grad)
    inputs = ray_inputs()
    target = torch.randn(4, 6, 3, dtype=torch.float64)
    params = list(phi.parameters())
    eager_out = grad(*inputs)
    eager_grads = torch.autograd.grad(torch.mean((eager_out - target) ** 2), params, allow_unused=True)
    fast_out = compiled(*inputs)
    fast_grads = torch.autograd.grad(torch.mean((fast_out - target) ** 2), params, allow_unused=True)
    assert_relative(fast_out, eager_out, 1e-12)
    for fast, eager in zip(fast_grads, eager_grads):
        if eager is not None:
            assert_relative(fast, eager, 1e-12)


@pytest.mark.parametrize("skip", [1, 3])
def test_a_skip_connection_matches_autograd_and_jvp(skip):
    """mlp(skip=k) joins the input to the activations after k layers: its grad network is exact in float64, and the layer
    after the join reads hidden + input features."""
    point = Sequential(Sum(Constant(0), Product(Variable(), Constant(1))), PositionalEncoding(4))
    code = Sequential(Constant(2), PositionalEncoding(1))
    body = mlp(27 + 18, 24, 5, 4, "swish", skip=skip)
    phi = IntegralNetwork(Sequential(Concat(point, code), body), n_constants=3).double()
    assert [m.in_features for m in phi.modules() if isinstance(m, Linear)].count(24 + 45) == 1
    inputs = ray_inputs()
    grad = phi.grad_network()(*inputs)
    assert_relative(grad, autograd_dphi_dt(phi, *inputs), REL)
    assert_relative(grad, jvp_dphi_dt(phi, *inputs), REL)


def test_a_skip_connection_goes_between_layers():
    with pytest.raises(ValueError, match="skip"):
        mlp(3, 8, 4, 1, skip=4)
