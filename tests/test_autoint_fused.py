"""The fused MLP kernel against float64 evaluations of the same layers.

On a CPU the kernel runs in Triton's interpreter (conftest sets
TRITON_INTERPRET=1), with float32 products of the bf16-rounded operands in
place of the tensor-core bf16 product: the same arithmetic. On CUDA the real
kernel, hardware tanh included, meets the same references.
"""
import pytest
import torch

from autoint_cli.autoint import Concat, Constant, Dual, Inputs, IntegralNetwork, PositionalEncoding, Sequential, Variable, fused, mlp
from autoint_cli.autoint.fused import MAX_OUT, KernelConfig, available, padded_width, plan_mlp
from autoint_cli.autoint.layers import ACTIVATION_TABLE, KERNEL_ACTIVATIONS, Linear, Softplus, Swish

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(not available(DEVICE), reason="the fused kernel needs Triton (and CUDA, or TRITON_INTERPRET=1)")

ACTIVATIONS_UNDER_TEST = ("swish", "relu", "sine", "tanh", "sigmoid", "softplus")
# Exact activations in the tight comparisons (the hardware tanh has its own test on CUDA; the interpreter has none).
CONFIGS = (KernelConfig(16, 4, 1, False), KernelConfig(32, 4, 2, False))
EXACT = CONFIGS[0]


def _bf16(x):
    return x.to(torch.bfloat16).double()


def emulated(plan, x):
    """float64 evaluation with the kernel's roundings: bf16 inputs, weights and hidden activations, float32 output layer."""
    h = _bf16(x)
    linears = plan.linears
    for i, layer in enumerate(linears[:-1]):
        z = h @ _bf16(layer.weight).T + layer.bias.double()
        act = plan_activation(plan)(z)
        h = act if i == len(linears) - 2 else _bf16(act)
    return h @ linears[-1].weight.double().T + linears[-1].bias.double()


def plan_activation(plan):
    f = {
        "swish": lambda z: z * torch.sigmoid(z),
        "relu": torch.relu,
        "sine": lambda z: torch.sin(plan.w0 * z),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "softplus": torch.nn.functional.softplus,
    }
    return f[plan.activation]


def exact(net, x):
    with torch.no_grad():
        return net.double()(Dual(x.double())).primal


def _network(in_features, width, depth, out, activation, seed=0):
    torch.manual_seed(seed)
    net = mlp(in_features, width, depth, out, activation, w0=3.0, full_precision_output=True)
    with torch.no_grad():  # biases of realistic size, so that a dropped or misplaced bias shows
        for m in net.modules():
            if isinstance(m, Linear):
                m.bias.normal_(0.0, 0.5)
    return net.to(DEVICE)


@pytest.mark.parametrize("activation", ACTIVATIONS_UNDER_TEST)
@pytest.mark.parametrize("config", CONFIGS, ids=("bm16", "bm32-split2"))
def test_kernel_matches_the_emulated_float64_network(activation, config):
    net = _network(13, 32, 4, 3, activation)
    plan, why = plan_mlp(list(net.layers))
    assert plan is not None, why
    x = torch.randn(77, 13, device=DEVICE) * 2  # 77 rows: the last tile is partial
    y = plan(x, config)
    assert y.dtype == torch.float32 and y.shape == (77, 3)
    ref = emulated(plan, x.double())
    # float32 accumulation against float64, and the rare bf16 rounding that flips between the two: 1e-3 of the output's scale.
    scale = ref.abs().max().item()
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-3 * scale)
    # Against the unrounded network: bf16 accuracy.
    torch.testing.assert_close(y.double(), exact(net, x), rtol=0, atol=3e-2 * scale)


@pytest.mark.parametrize("in_features, width, depth, out", [(1, 16, 2, 1), (90, 64, 3, 4), (16, 16, 6, 8), (40, 128, 2, 2)])
def test_kernel_shapes(in_features, width, depth, out):
    net = _network(in_features, width, depth, out, "swish", seed=in_features)
    plan, _ = plan_mlp(list(net.layers))
    x = torch.randn(3, 11, in_features, device=DEVICE)
    ref = emulated(plan, x.double())
    # split 2 where the width allows, split 1 at width 16 (halves of 8 are below the product's minimum)
    for config in (EXACT, KernelConfig(16, 4, 2, False)):
        y = plan(x, config)
        assert y.shape == (3, 11, out)
        torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-3 * ref.abs().max().item())


def test_paper_size_network():
    """Φ's own shape: 90 encoded inputs, ten layers of 256, four outputs, with the default launch setting."""
    net = _network(90, 256, 10, 4, "swish")
    plan, _ = plan_mlp(list(net.layers))
    x = torch.randn(200, 90, device=DEVICE)
    ref = emulated(plan, x.double())
    # Ten layers of 256 let the rare flipped bf16 roundings add up: 1e-2 of the scale (a wrong bias or layer is far off).
    torch.testing.assert_close(plan(x).double(), ref, rtol=0, atol=1e-2 * ref.abs().max().item())


def test_no_rows_and_strided_input():
    net = _network(8, 16, 3, 2, "swish")
    plan, _ = plan_mlp(list(net.layers))
    assert plan(torch.empty(0, 8, device=DEVICE)).shape == (0, 2)
    wide = torch.randn(40, 16, device=DEVICE)
    x = wide[:, ::2]  # a stride of 2 along features: copied to unit stride
    ref = emulated(plan, x.double())
    torch.testing.assert_close(plan(x, EXACT).double(), ref, rtol=0, atol=1e-3 * ref.abs().max().item())


def test_a_changed_weight_changes_the_output():
    """The kernel reads the layers themselves at each call, so training or loading new weights takes effect."""
    net = _network(8, 16, 3, 2, "swish")
    plan, _ = plan_mlp(list(net.layers))
    x = torch.randn(20, 8, device=DEVICE)
    before = plan(x, EXACT)
    with torch.no_grad():
        net.layers[2].bias += 1.0
    after = plan(x, EXACT)
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after.double(), emulated(plan, x.double()), rtol=0, atol=1e-3 * after.abs().max().item())


@pytest.mark.parametrize(
    "layers, reason",
    [
        (lambda: [Linear(4, 16)], "chain"),
        (lambda: list(mlp(4, 16, 3, 2, "exp").layers), "exp"),
        (lambda: list(mlp(4, 24, 3, 2).layers), "power of two"),
        (lambda: list(mlp(4, 512, 3, 2).layers), "power of two"),
        (lambda: list(mlp(300, 16, 3, 2).layers), "300 input features"),
        (lambda: list(mlp(4, 16, 3, MAX_OUT + 1).layers), f"{MAX_OUT + 1} outputs"),
        (lambda: [Linear(4, 16), Swish(), Linear(16, 32), Swish(), Linear(32, 2)], "width"),
        (lambda: list(mlp(4, 16, 3, 2, "swish").layers[:-1]), "chain"),
    ],
)
def test_plan_refuses_what_the_kernel_cannot_run(layers, reason):
    plan, why = plan_mlp(layers())
    assert plan is None and reason in why


def test_padded_width():
    assert [padded_width(n) for n in (1, 16, 17, 90, 128, 129)] == [16, 16, 32, 128, 128, 256]


def _phi():
    point = Sequential(Variable(), PositionalEncoding(3))
    body = Sequential(Concat(point, Sequential(Constant(0), PositionalEncoding(2))), mlp(7 + 15, 32, 4, 4, "swish", full_precision_output=True))
    return IntegralNetwork(body, n_constants=1).to(DEVICE)


def test_integral_network_fused_evaluator():
    """Φ(t; c) through the fused tail equals the layer-by-layer Φ to bf16 accuracy, and its differences stay float32-scaled."""
    phi = _phi()
    t = torch.rand(50, 9, 1, device=DEVICE) * 4
    code = torch.randn(50, 1, 3, device=DEVICE)
    evaluator, why = phi.evaluator(EXACT)
    assert why == "" and evaluator.tail is not None
    with torch.no_grad():
        plain = phi(t, code)
        fast = evaluator(t, code)
    assert fast.dtype == torch.float32
    features = phi.body[0]
    x = features(Inputs(t, (code,), with_tangent=False)).primal
    ref = emulated(evaluator.tail, x.double())
    torch.testing.assert_close(fast.double(), ref, rtol=0, atol=1e-3 * ref.abs().max().item())
    torch.testing.assert_close(fast, plain, rtol=0, atol=3e-2 * plain.abs().max().item())


def test_evaluators_leave_the_network_as_it_was():
    """Building a fused evaluator changes nothing of the network: its forward (with grad or without) stays the layers'."""
    phi = _phi()
    t = torch.rand(10, 1, device=DEVICE)
    code = torch.randn(10, 3, device=DEVICE)
    plain = phi(t, code)
    evaluator, why = phi.evaluator(fused.DEFAULT_CONFIG)
    assert why == "" and evaluator.tail is not None
    graded = phi(t, code)
    assert graded.requires_grad
    torch.testing.assert_close(graded, plain, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(phi(t, code), plain.detach(), rtol=0, atol=0)
    unfused, why = phi.evaluator(None)
    assert why == "" and unfused.tail is None
    with torch.no_grad():
        torch.testing.assert_close(unfused(t, code), plain.detach(), rtol=0, atol=0)


def test_evaluator_says_why_not_fused():
    phi = IntegralNetwork(mlp(1, 16, 3, 2, "exp"))
    evaluator, why = phi.evaluator(fused.DEFAULT_CONFIG)
    assert "exp" in why and evaluator.tail is None


def test_plan_refuses_a_softplus_beta_the_kernel_lacks():
    """The kernel computes softplus with beta = 1: any other beta must take the layers, with the reason named."""
    layers = [Linear(4, 16), Softplus(beta=4.0), Linear(16, 16), Softplus(beta=4.0), Linear(16, 2)]
    plan, why = plan_mlp(layers)
    assert plan is None and "beta = 4" in why and "beta = 1 only" in why
    plan, why = plan_mlp([Linear(4, 16), Softplus(), Linear(16, 16), Softplus(), Linear(16, 2)])
    assert plan is not None and why == ""


def test_plan_reads_the_activation_table():
    """Every activation the table gives a kernel code is planned; every other one is refused."""
    for kind in ACTIVATION_TABLE:
        plan, why = plan_mlp(list(mlp(4, 16, 3, 2, kind.name).layers))
        assert (plan is not None) == (kind.kernel_code is not None), (kind.name, why)
        if plan is not None:
            assert plan.activation == kind.name
    assert set(KERNEL_ACTIVATIONS) == set(ACTIVATIONS_UNDER_TEST)


@pytest.mark.skipif(DEVICE.type != "cuda", reason="the hardware tanh runs on CUDA only")
def test_fast_and_exact_activations_agree_on_cuda():
    net = _network(90, 256, 10, 4, "swish")
    plan, _ = plan_mlp(list(net.layers))
    x = torch.randn(4096 + 5, 90, device=DEVICE)
    fast, slow = plan(x, KernelConfig(128, 8, 1, True)), plan(x, KernelConfig(128, 8, 1, False))
    scale = slow.abs().max().item()
    # The hardware tanh moves some bf16 roundings by one step; as the paper-size test, 1e-2 of the scale.
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-2 * scale)
    torch.testing.assert_close(slow.double(), emulated(plan, x.double()), rtol=0, atol=1e-2 * scale)
