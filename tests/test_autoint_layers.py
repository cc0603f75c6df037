"""Every layer's derivative rule against autograd and torch.func.jvp, in float64."""
import pytest
import torch

from autoint_cli.autoint import (
    ACTIVATIONS,
    Constant,
    Exp,
    IntegralNetwork,
    Linear,
    PositionalEncoding,
    ReLU,
    ReQU,
    Sequential,
    Sigmoid,
    Sine,
    Softplus,
    Swish,
    Tanh,
    Variable,
    make_activation,
)
from autoint_cli.autoint.dual import Dual, Inputs
from autoint_cli.autoint.layers import reduced_linear

from helpers import assert_relative, autograd_dphi_dt, jvp_dphi_dt

REL = 1e-10

ELEMENTWISE = {
    "sine_w30": lambda: Sine(30.0),
    "sine_w1": lambda: Sine(1.0),
    "swish": Swish,
    "softplus": Softplus,
    "softplus_beta3": lambda: Softplus(3.0),
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "requ": ReQU,
    "relu": ReLU,
    "exp": Exp,
}


def sandwich(layer, width=6, out=3):
    """Linear(1→width) · layer · Linear(→out): the layer sees a non-trivial tangent."""
    first = Linear(1, width, init="xavier")
    in_last = layer.out_features(width) if isinstance(layer, PositionalEncoding) else width
    return IntegralNetwork(Sequential(first, layer, Linear(in_last, out, init="xavier"))).double()


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("batch", [(), (7,), (3, 5)])
def test_elementwise_rule_matches_autograd(name, batch):
    phi = sandwich(ELEMENTWISE[name]())
    t = torch.rand(batch + (1,), dtype=torch.float64) * 2 - 1
    grad = phi.grad_network()(t)
    assert grad.shape == batch + (3,)
    assert_relative(grad, autograd_dphi_dt(phi, t), REL)
    assert_relative(grad, jvp_dphi_dt(phi, t), REL)


@pytest.mark.parametrize("include_input", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_positional_encoding_rule_matches_autograd(include_input, normalize):
    phi = sandwich(PositionalEncoding(6, include_input=include_input, normalize=normalize), width=4)
    t = torch.rand(50, 1, dtype=torch.float64) * 2 - 1
    assert_relative(phi.grad_network()(t), autograd_dphi_dt(phi, t), REL)


def test_positional_encoding_layout_and_normalisation():
    """[x, sin(x), cos(x), sin(2x)/2, cos(2x)/2] for one frequency pair, one feature."""
    x = torch.tensor([[0.3]], dtype=torch.float64)
    out = PositionalEncoding(2)(Dual(x, torch.ones_like(x)))
    expected = torch.tensor([[0.3, torch.sin(x).item(), torch.cos(x).item(), torch.sin(2 * x).item() / 2, torch.cos(2 * x).item() / 2]], dtype=torch.float64)
    torch.testing.assert_close(out.primal, expected, rtol=0, atol=1e-15)
    # Normalised tangent features have unit amplitude: [1, cos x, -sin x, cos 2x, -sin 2x].
    tangent = torch.tensor([[1.0, torch.cos(x).item(), -torch.sin(x).item(), torch.cos(2 * x).item(), -torch.sin(2 * x).item()]], dtype=torch.float64)
    torch.testing.assert_close(out.tangent, tangent, rtol=0, atol=1e-15)
    assert PositionalEncoding(10).out_features(3) == 63
    assert PositionalEncoding(4, include_input=False).out_features(6) == 48


def test_linear_tangent_has_no_bias():
    phi = sandwich(Swish())
    t = torch.rand(20, 1, dtype=torch.float64)
    before, phi_before = phi.grad_network()(t, return_integral=True)
    with torch.no_grad():
        phi.body[-1].bias.add_(5.0)
    after, phi_after = phi.grad_network()(t, return_integral=True)
    assert_relative(after, before, 1e-14)
    torch.testing.assert_close(phi_after, phi_before + 5.0, rtol=1e-14, atol=1e-14)


def test_linear_multiplies_only_the_varying_columns():
    """A partial tangent over columns 2..4 gives the same result as the dense one."""
    layer = Linear(6, 4).double()
    primal = torch.randn(9, 6, dtype=torch.float64)
    tangent = torch.randn(9, 3, dtype=torch.float64)
    partial = layer(Dual(primal, tangent, offset=2))
    dense = layer(Dual(primal, Dual(primal, tangent, 2).dense_tangent()))
    assert partial.tangent.shape == (9, 4)
    torch.testing.assert_close(partial.tangent, dense.tangent, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(partial.primal, dense.primal, rtol=0, atol=0)


def test_elementwise_keeps_a_partial_tangent_partial():
    primal = torch.randn(5, 6, dtype=torch.float64)
    tangent = torch.randn(5, 2, dtype=torch.float64)
    out = Swish()(Dual(primal, tangent, offset=3))
    assert out.offset == 3 and out.tangent.shape == (5, 2)
    z = primal[:, 3:5]
    s = torch.sigmoid(z)
    torch.testing.assert_close(out.tangent, (s + z * s * (1 - s)) * tangent, rtol=1e-14, atol=1e-14)


def test_constant_input_has_no_tangent():
    c = torch.randn(4, 3, dtype=torch.float64)
    out = Constant(0)(Inputs(torch.zeros(4, 1, dtype=torch.float64), (c,)))
    assert out.tangent is None
    torch.testing.assert_close(out.dense_tangent(), torch.zeros_like(c), rtol=0, atol=0)


def test_variable_without_tangent_when_not_asked():
    t = torch.rand(3, 1)
    assert Variable()(Inputs(t, (), with_tangent=False)).tangent is None
    torch.testing.assert_close(Variable()(Inputs(t)).tangent, torch.ones_like(t), rtol=0, atol=0)


def test_activation_registry():
    assert set(ACTIVATIONS) == {"sine", "swish", "softplus", "tanh", "sigmoid", "requ", "relu", "exp"}
    assert make_activation("sine", 12.0).w0 == 12.0
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        make_activation("gelu")


def test_linear_rejects_wrong_width_and_init():
    with pytest.raises(ValueError, match=r"Linear\(4->2\) got 3 input features"):
        Linear(4, 2)(Dual(torch.zeros(1, 3)))
    with pytest.raises(ValueError, match="unknown init"):
        Linear(4, 2, init="orthogonal")


def test_sine_initialisation_bounds():
    first, hidden = Linear(50, 200, init="first_sine"), Linear(50, 200, init="sine", w0=30.0)
    assert first.weight.abs().max() <= 1 / 50
    assert hidden.weight.abs().max() <= (6 / 50) ** 0.5 / 30
    assert hidden.weight.abs().max() > 0.9 * (6 / 50) ** 0.5 / 30


def test_full_precision_layer_stays_float32_under_autocast():
    """Φ's output layer under bf16 autocast: float32 out, equal to a float32 pass on the bf16-rounded input."""
    phi = IntegralNetwork(Sequential(Linear(1, 16, init="xavier"), Tanh(), Linear(16, 3, init="xavier", full_precision=True)))
    plain = IntegralNetwork(Sequential(Linear(1, 16, init="xavier"), Tanh(), Linear(16, 3, init="xavier")))
    plain.load_state_dict(phi.state_dict())
    t = torch.rand(50, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, grad = phi(t), phi.grad_network()(t)
        rounded = plain(t)
    assert out.dtype == grad.dtype == torch.float32 and rounded.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = Dual(torch.tanh(torch.nn.functional.linear(t, phi.body[0].weight, phi.body[0].bias)))
    last = phi.body[2]
    expected = torch.nn.functional.linear(hidden.primal.float(), last.weight, last.bias)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # Without autocast the flag changes nothing.
    torch.testing.assert_close(phi(t), plain(t), rtol=0, atol=0)


def test_reduced_linear_matches_linear():
    """The product-and-sum form of a full-precision output layer against F.linear: float64 exactly-ish, bf16 input widened to float32."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, 32, dtype=torch.float64, generator=gen)
    weight, bias = torch.randn(4, 32, dtype=torch.float64, generator=gen), torch.randn(4, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(reduced_linear(x, weight, bias), torch.nn.functional.linear(x, weight, bias), rtol=1e-12, atol=1e-12)
    half = x.to(torch.bfloat16)
    out = reduced_linear(half, weight.float(), None)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.nn.functional.linear(half.double(), weight.float().double()).float(), rtol=1e-5, atol=1e-5)
