"""Layers that carry their own derivative rule along the integration variable t.

Each layer maps a :class:`Dual` (value, d/dt) to a :class:`Dual`; the rules are
the chain rule written out once per layer type, so a whole network's dPhi/dt is
one forward pass with no graph tracing:

    Linear:      y = W x + b            ẏ = W ẋ            (no bias)
    elementwise: y = f(z)               ẏ = f'(z) ⊙ ż
    encoding:    y = [x, sin(f x)/f, cos(f x)/f, ...]
                 ẏ = [ẋ, cos(f x) ẋ, -sin(f x) ẋ, ...]    (1/f normalised)

Leaves read the network inputs: :class:`Variable` is t (tangent 1) and
:class:`Constant` a constant input (tangent 0, never materialised).
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dual import Dual, Inputs
from .graph import PRIMAL, TANGENT, GraphBuilder, NodeRef

DualOrInputs = Union[Dual, Inputs]


class AutoIntModule(nn.Module):
    """Base of every layer and combinator of an integral network."""

    def forward(self, x: DualOrInputs) -> Dual:
        raise NotImplementedError

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        """Adds this layer's nodes; ``inp`` None means the network inputs."""
        raise NotImplementedError


def as_dual(x: DualOrInputs) -> Dual:
    """A layer applied straight to the network inputs acts on t."""
    if isinstance(x, Inputs):
        return Variable()(x)
    return x


def graph_input(g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
    return variable_node(g) if inp is None else inp


def variable_node(g: GraphBuilder) -> NodeRef:
    """The t leaf, shared by every branch that reads it, and its tangent 1."""
    if g.variable is None:
        g.variable = NodeRef(g.add("t", PRIMAL), g.add("dt/dt = 1", TANGENT))
    return g.variable


class Variable(AutoIntModule):
    """The integration variable t: [*batch, 1], tangent 1."""

    def forward(self, x: DualOrInputs) -> Dual:
        if not isinstance(x, Inputs):
            raise TypeError("Variable() reads the network inputs; place it at the start of a branch")
        return Dual(x.t, torch.ones_like(x.t) if x.with_tangent else None)

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        return variable_node(g)


class Constant(AutoIntModule):
    """The ``index``-th constant input: a code that does not depend on t (tangent 0)."""

    def __init__(self, index: int = 0):
        super().__init__()
        self.index = index

    def forward(self, x: DualOrInputs) -> Dual:
        if not isinstance(x, Inputs):
            raise TypeError("Constant() reads the network inputs; place it at the start of a branch")
        if self.index >= len(x.constants):
            raise ValueError(f"Constant({self.index}) needs at least {self.index + 1} constant inputs, got {len(x.constants)}")
        return Dual(x.constants[self.index])

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        return NodeRef(g.add(f"c{self.index}", PRIMAL))

    def extra_repr(self) -> str:
        return f"index={self.index}"


# Output widths up to which a full-precision output layer may run as a product-and-sum reduction rather than a GEMM
# (IntegralNetwork.evaluator's reduce_output, for compiled renderers).
REDUCED_MAX_OUT = 8


def reduced_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """y_j = Σ_k x_k W_jk + b_j in float32 (or wider), as an elementwise product and a sum.

    For a few outputs under torch.compile this is one reduction kernel that
    reads x once in its own dtype (bf16 under autocast) and takes in the
    activation before it, where a float32 GEMM would first write x widened
    and read it back. Exact float32 arithmetic, no TF32.

    Args:
        x: [..., in]. weight: [out, in]. bias: [out] or None.

    Returns:
        [..., out].
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    y = (x.to(dtype).unsqueeze(-2) * weight.to(dtype)).sum(-1)
    return y if bias is None else y + bias.to(dtype)


class Linear(AutoIntModule):
    """y = W x + b; its tangent ẏ = W ẋ has no bias.

    Only the columns of W that meet a non-zero tangent are multiplied, so a
    constant code concatenated to the input costs nothing in the tangent pass.

    Args:
        in_features, out_features: sizes.
        bias: whether to add b.
        init: weight initialisation, one of :data:`INITS`.
        w0: the sine frequency that the ``sine`` initialisation divides by.
        full_precision: compute this layer in float32 (or wider) even under
            autocast. Meant for an integral network's output layer: Φ is
            differenced over short sections, and bf16 would round it away.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, init: str = "kaiming", w0: float = 30.0, full_precision: bool = False
    ):
        super().__init__()
        self.full_precision = full_precision
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {sorted(INITS)}")
        self.in_features, self.out_features, self.init = in_features, out_features, init
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        with torch.no_grad():
            INITS[init](self.weight, w0)
            if self.bias is not None:
                bound = 1.0 / math.sqrt(in_features)
                self.bias.uniform_(-bound, bound)

    def forward(self, x: DualOrInputs) -> Dual:
        x = as_dual(x)
        if x.n_features != self.in_features:
            raise ValueError(f"Linear({self.in_features}->{self.out_features}) got {x.n_features} input features")
        if self.full_precision and torch.is_autocast_enabled(x.primal.device.type):
            with torch.autocast(x.primal.device.type, enabled=False):
                return self._affine(_widen(x), _widen(self.weight), None if self.bias is None else _widen(self.bias))
        return self._affine(x, self.weight, self.bias)

    @staticmethod
    def _affine(x: Dual, weight: Tensor, bias: Optional[Tensor]) -> Dual:
        y = F.linear(x.primal, weight, bias)
        if x.tangent is None:
            return Dual(y)
        return Dual(y, F.linear(x.tangent, weight if x.is_full else weight[:, x.tangent_slice()]))

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        inp = graph_input(g, inp)
        shape = f"{self.in_features}->{self.out_features}"
        bias = " + b" if self.bias is not None else ""
        return g.unary(inp, f"Linear {shape}: W x{bias}", f"Linear {shape}: W dx (no bias)", uses_primal=False)

    def extra_repr(self) -> str:
        full = ", full_precision=True" if self.full_precision else ""
        return f"{self.in_features}->{self.out_features}, bias={self.bias is not None}, init={self.init}{full}"


def _widen(x):
    """At least float32: a Dual's parts, or a tensor."""
    if isinstance(x, Dual):
        return Dual(_widen(x.primal), None if x.tangent is None else _widen(x.tangent), x.offset)
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _kaiming(w: Tensor, w0: float) -> None:
    nn.init.kaiming_normal_(w, nonlinearity="relu", mode="fan_in")


def _xavier(w: Tensor, w0: float) -> None:
    nn.init.xavier_uniform_(w)


def _sine(w: Tensor, w0: float) -> None:
    """SIREN hidden layers: U(±sqrt(6/n_in)/w0), so w0·W x stays unit-scaled."""
    bound = math.sqrt(6.0 / w.shape[1]) / w0
    w.uniform_(-bound, bound)


def _first_sine(w: Tensor, w0: float) -> None:
    """SIREN first layer: U(±1/n_in)."""
    bound = 1.0 / w.shape[1]
    w.uniform_(-bound, bound)


INITS: Dict[str, Callable[[Tensor, float], None]] = {
    "kaiming": _kaiming,
    "xavier": _xavier,
    "sine": _sine,
    "first_sine": _first_sine,
}


class Elementwise(AutoIntModule):
    """y = f(z) feature by feature, ẏ = f'(z) ⊙ ż."""

    symbol = "f"

    def value_and_derivative(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        """f(z) and f'(z), sharing work where the formulas do."""
        raise NotImplementedError

    def value(self, z: Tensor) -> Tensor:
        return self.value_and_derivative(z)[0]

    def forward(self, x: DualOrInputs) -> Dual:
        x = as_dual(x)
        if x.tangent is None:
            return Dual(self.value(x.primal))
        y, dy = self.value_and_derivative(x.primal)
        if not x.is_full:
            dy = dy[..., x.tangent_slice()]
        return Dual(y, dy * x.tangent, x.offset)

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        inp = graph_input(g, inp)
        return g.unary(inp, self.symbol, f"{self.symbol}'(z) * dz", uses_primal=True)


class Sine(Elementwise):
    """sin(w0 z); derivative w0 cos(w0 z)."""

    def __init__(self, w0: float = 30.0):
        super().__init__()
        self.w0 = w0
        self.symbol = f"sin({w0:g} z)"

    def value(self, z: Tensor) -> Tensor:
        return torch.sin(self.w0 * z)

    def value_and_derivative(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        wz = self.w0 * z
        return torch.sin(wz), self.w0 * torch.cos(wz)


class Swish(Elementwise):
    """z·s with s = sigmoid(z); derivative s (1 + z (1 - s))."""

    symbol = "swish"

    def value(self, z: Tensor) -> Tensor:
        return F.silu(z)

    def value_and_derivative(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        s = torch.sigmoid(z)
        return z * s, s * (1 + z * (1 - s))


class Softplus(Elementwise):
    """log(1 + exp(β z))/β; derivative sigmoid(β z)."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta
        self.symbol = "softplus" if beta == 1.0 else f"softplus_{beta:g}"

    def value(self, z: Tensor) -> Tensor:
        return F.softplus(z, beta=self.beta)

    def value_and_derivative(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        return self.value(z), torch.sigmoid(self.beta * z)


class Tanh(Elementwise):
    """tanh z; derivative 1 - tanh² z."""

    symbol = "tanh"

    def value(self, z: Tensor) -> Tensor:
        return torch.tanh(z)

    def value_and_derivative(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        y = torch.tanh(z)
        return y, 1 - y * y


class Sigmoid(Elementwise):
    """s = sigmoid(z); derivative s (1 - s)."""

    symbol = "sigmoid"

    def value(self, z: Tensor) -> Tensor:
        return torch.sigmoid(z)

    def value_and_derivative(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        s = torch.sigmoid(z)
        return s, s * (1 - s)


class ReQU(Elementwise):
    """½ relu(z)²; derivative relu(z), so the grad network is a ReLU network."""

    symbol = "requ"

    def value(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z) ** 2

    def value_and_derivative(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        r = torch.relu(z)
        return 0.5 * r * r, r


class ReLU(Elementwise):
    """relu(z); derivative the step 1[z > 0] (the grad network is piecewise constant in t)."""

    symbol = "relu"

    def value(self, z: Tensor) -> Tensor:
        return torch.relu(z)

    def value_and_derivative(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        return torch.relu(z), (z > 0).to(z.dtype)


class Exp(Elementwise):
    """exp z; its own derivative."""

    symbol = "exp"

    def value(self, z: Tensor) -> Tensor:
        return torch.exp(z)

    def value_and_derivative(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        e = torch.exp(z)
        return e, e


class PositionalEncoding(AutoIntModule):
    """γ(x) = [x, sin(f_0 x)/f_0, cos(f_0 x)/f_0, …, sin(f_{F-1} x), cos(f_{F-1} x)], f_k = 2^k.

    With ``normalize`` every term is divided by its frequency, so the tangent
    features cos(f x)·ẋ and -sin(f x)·ẋ keep unit amplitude (AutoInt §3); without
    it the tangent grows as f. Output features: D·(include_input + 2F).

    Args:
        n_freqs: F, the number of frequencies.
        include_input: whether x itself leads the features.
        normalize: whether to scale each term by 1/f_k.
    """

    def __init__(self, n_freqs: int, include_input: bool = True, normalize: bool = True):
        super().__init__()
        self.n_freqs, self.include_input, self.normalize = n_freqs, include_input, normalize
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freqs, dtype=torch.float64), persistent=False)

    def out_features(self, in_features: int) -> int:
        return in_features * (int(self.include_input) + 2 * self.n_freqs)

    def forward(self, x: DualOrInputs) -> Dual:
        x = as_dual(x).densified()
        freqs = self.freqs.to(x.primal.dtype)[:, None]  # [F, 1]
        angles = x.primal[..., None, :] * freqs  # [*batch, F, D]
        sin, cos = torch.sin(angles), torch.cos(angles)
        scale = 1.0 / freqs if self.normalize else torch.ones_like(freqs)
        waves = torch.stack((sin, cos), dim=-2) * scale[..., None]  # [*batch, F, 2, D]
        y = self._assemble(x.primal, waves)
        if x.tangent is None:
            return Dual(y)
        # d/dt [sin(f x), cos(f x)]·scale = [cos(f x), -sin(f x)]·f·scale·ẋ
        rate = (freqs * scale)[..., None]  # [F, 1, 1]
        dwaves = torch.stack((cos, -sin), dim=-2) * rate * x.tangent[..., None, None, :]
        return Dual(y, self._assemble(x.tangent, dwaves))

    def _assemble(self, first: Tensor, waves: Tensor) -> Tensor:
        flat = waves.reshape(waves.shape[:-3] + (-1,))  # [*batch, 2 F D]
        if not self.include_input:
            return flat
        first = first.expand(flat.shape[:-1] + first.shape[-1:])
        return torch.cat((first, flat), dim=-1)

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        inp = graph_input(g, inp)
        norm = ", 1/f" if self.normalize else ""
        head = "x, " if self.include_input else ""
        label = f"PE {self.n_freqs} freqs{norm}: [{head}sin(fx), cos(fx)]"
        grad_label = f"PE' : [{'dx, ' if self.include_input else ''}cos(fx) dx, -sin(fx) dx]" + (" (unit amplitude)" if self.normalize else " * f")
        return g.unary(inp, label, grad_label, uses_primal=True)

    def extra_repr(self) -> str:
        return f"n_freqs={self.n_freqs}, include_input={self.include_input}, normalize={self.normalize}"


@dataclass(frozen=True)
class ActivationKind:
    """One row of the activation table: everything the package knows of an activation, in one place.

    Attributes:
        name: the name configs and flags use.
        cls: the layer (its derivative rule is :meth:`Elementwise.value_and_derivative`).
        params: (parameter, default) pairs of its constructor.
        kernel_code: its code in the fused MLP kernel (:mod:`.fused`); None where the kernel lacks it.
        kernel_params: the parameters the kernel takes as arguments; any other must keep its default,
            which is what the kernel computes.
        in_models: offered as the radiance field's activation (``ModelConfig.activation``).
    """

    name: str
    cls: Type["Elementwise"]
    params: Tuple[Tuple[str, float], ...] = ()
    kernel_code: Optional[int] = None
    kernel_params: Tuple[str, ...] = ()
    in_models: bool = True

    def make(self, **params: float) -> "Elementwise":
        """The layer, with ``params`` (by name) replacing the defaults; unknown names are refused."""
        unknown = sorted(set(params) - {name for name, _ in self.params})
        if unknown:
            raise ValueError(f"activation {self.name} has no parameter {', '.join(unknown)}")
        values = {name: params.get(name, default) for name, default in self.params}
        return self.cls(**values)

    def kernel_refusal(self, layer: "Elementwise") -> str:
        """Why the fused kernel cannot compute ``layer`` ("" when it can)."""
        if self.kernel_code is None:
            return f"activation {self.name} has no fused kernel (it has: {', '.join(KERNEL_ACTIVATIONS)})"
        for name, default in self.params:
            if name not in self.kernel_params and getattr(layer, name) != default:
                return f"{self.name} with {name} = {getattr(layer, name):g}: the kernel computes {name} = {default:g} only"
        return ""


ACTIVATION_TABLE: Tuple[ActivationKind, ...] = (
    ActivationKind("swish", Swish, kernel_code=0),
    ActivationKind("relu", ReLU, kernel_code=1),
    ActivationKind("sine", Sine, params=(("w0", 30.0),), kernel_code=2, kernel_params=("w0",)),
    ActivationKind("tanh", Tanh, kernel_code=3),
    ActivationKind("sigmoid", Sigmoid, kernel_code=4, in_models=False),
    ActivationKind("softplus", Softplus, params=(("beta", 1.0),), kernel_code=5),
    ActivationKind("requ", ReQU),
    ActivationKind("exp", Exp, in_models=False),
)
ACTIVATIONS: Dict[str, ActivationKind] = {kind.name: kind for kind in ACTIVATION_TABLE}
# Names in the fused kernel's code order.
KERNEL_ACTIVATIONS: Tuple[str, ...] = tuple(k.name for k in sorted(ACTIVATION_TABLE, key=lambda k: k.kernel_code or 0) if k.kernel_code is not None)
MODEL_ACTIVATIONS: Tuple[str, ...] = tuple(k.name for k in ACTIVATION_TABLE if k.in_models)


def activation_kind(layer: "Elementwise") -> Optional[ActivationKind]:
    """The table's row of ``layer``'s exact class (None for a class the table lacks)."""
    return next((k for k in ACTIVATION_TABLE if type(layer) is k.cls), None)


def make_activation(name: str, w0: float = 30.0) -> Elementwise:
    """The activation called ``name``; ``w0`` is used by sine only."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    kind = ACTIVATIONS[name]
    return kind.make(**({"w0": w0} if "w0" in dict(kind.params) else {}))
