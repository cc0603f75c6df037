"""Integral networks Φ and the grad networks ∂Φ/∂t derived from them.

The two share one body of layers, so they share the very same Parameter
objects and the same state-dict keys: an optimizer over the grad network trains
Φ, and a checkpoint of either loads into the other. Inference uses the
fundamental theorem of calculus,

    ∫_a^b ∂Φ/∂t (t; c) dt = Φ(b; c) − Φ(a; c).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from . import fused
from .combinators import Concat, Identity, Sequential
from .dual import Inputs
from .graph import Description, GraphBuilder, describe_graphs
from .layers import REDUCED_MAX_OUT, AutoIntModule, Constant, Linear, PositionalEncoding, Variable, as_dual, make_activation, reduced_linear


def _flatten(module: AutoIntModule) -> List[AutoIntModule]:
    """The layers of nested Sequentials, in order (any other module is one layer)."""
    if isinstance(module, Sequential):
        return [layer for inner in module.layers for layer in _flatten(inner)]
    return [module]


def _check_inputs(t: Tensor, constants: Sequence[Tensor], n_constants: int) -> None:
    if t.ndim == 0 or t.shape[-1] != 1:
        raise ValueError(f"t must have shape [*batch, 1], got {tuple(t.shape)}")
    if len(constants) != n_constants:
        raise ValueError(f"expected {n_constants} constant inputs, got {len(constants)}")


class IntegralEvaluator:
    """Φ of an :class:`IntegralNetwork` by another route than its layer-by-layer forward, for gradient-free calls.

    A plain object holding the network's own layers (no copies, no
    submodule): the network is left as it was, and weight updates show
    through. Built by :meth:`IntegralNetwork.evaluator`.

    Args:
        network: the integral network.
        prefix: the layers before ``tail`` (encodings, concatenations), run as usual.
        tail: the trailing Linear/activation chain as one fused kernel, or None.
        kernel: the fused kernel's launch settings.
        reduce_output: without ``tail``, run the output layer as :func:`~.layers.reduced_linear`
            (one reduction kernel under torch.compile instead of a float32 GEMM).
    """

    def __init__(self, network: "IntegralNetwork", prefix: List[AutoIntModule], tail: Optional[fused.FusedMLP],
                 kernel: fused.KernelConfig, reduce_output: bool):
        self.network, self.prefix, self.tail, self.kernel = network, prefix, tail, kernel
        self.reduce_output = reduce_output and tail is None

    def __call__(self, t: Tensor, *constants: Tensor) -> Tensor:
        """Φ at t, shapes as in :meth:`IntegralNetwork.forward`."""
        _check_inputs(t, constants, self.network.n_constants)
        x = Inputs(t, tuple(constants), with_tangent=False)
        if self.tail is not None:
            for layer in self.prefix:
                x = layer(x)
            return self.tail(as_dual(x).primal, self.kernel)
        if not self.reduce_output:
            return self.network.body(x).primal
        for layer in self.prefix[:-1]:
            x = layer(x)
        last = self.prefix[-1]
        h = as_dual(x).primal
        with torch.autocast(h.device.type, enabled=False):
            return reduced_linear(h, last.weight, last.bias)


class IntegralNetwork(nn.Module):
    """Φ(t; c_0, …, c_{k-1}), a network of :mod:`autoint_cli.autoint.layers`.

    Args:
        body: the layers; branches reach t and the constants through
            :class:`Variable` and :class:`Constant` leaves (a plain layer chain
            acts on t).
        n_constants: how many constant inputs every call passes.
    """

    def __init__(self, body: AutoIntModule, n_constants: int = 0):
        super().__init__()
        self.body = body
        self.n_constants = n_constants

    def evaluator(self, kernel: Optional[fused.KernelConfig] = None, reduce_output: bool = False) -> Tuple[IntegralEvaluator, str]:
        """A gradient-free evaluator of Φ: the fused kernel for the body's trailing chain when ``kernel`` is given.

        Returns (evaluator, why not fused): the reason is "" when the chain
        is fused (or ``kernel`` is None); otherwise the evaluator runs the
        layers one by one. ``reduce_output`` applies where the output layer
        is a full-precision Linear of at most :data:`~.layers.REDUCED_MAX_OUT`
        outputs. The network itself is not changed.
        """
        layers = _flatten(self.body)
        last = layers[-1]
        reduce_output = reduce_output and isinstance(last, Linear) and last.full_precision and last.out_features <= REDUCED_MAX_OUT
        if kernel is None:
            return IntegralEvaluator(self, layers, None, fused.DEFAULT_CONFIG, reduce_output), ""
        reasons = []
        for start in range(len(layers) - 2):
            plan, reason = fused.plan_mlp(layers[start:])
            if plan is not None:
                return IntegralEvaluator(self, layers[:start], plan, kernel, False), ""
            if isinstance(layers[start], Linear):
                reasons.append(reason)
        # The longest chain's reason: the one that names the network's own layers.
        why = reasons[0] if reasons else "the body has no Linear layer followed by others"
        return IntegralEvaluator(self, layers, None, kernel, reduce_output), why

    def forward(self, t: Tensor, *constants: Tensor) -> Tensor:
        """Φ at t, layer by layer.

        Args:
            t: [*batch, 1].
            constants: [*batch, c_i] each, broadcastable to the batch.

        Returns:
            [*batch, n_out].
        """
        _check_inputs(t, constants, self.n_constants)
        return self.body(Inputs(t, tuple(constants), with_tangent=False)).primal

    def integrate(self, a: Tensor, b: Tensor, *constants: Tensor) -> Tensor:
        """∫_a^b ∂Φ/∂t dt = Φ(b) − Φ(a), both ends in one evaluation.

        Args:
            a, b: [*batch, 1] the interval ends.
            constants: as in :meth:`forward`.

        Returns:
            [*batch, n_out].
        """
        ends = torch.stack(torch.broadcast_tensors(a, b))  # [2, *batch, 1]
        phi = self(ends, *(c.unsqueeze(0) for c in constants))
        return phi[1] - phi[0]

    def grad_network(self) -> "GradNetwork":
        """The derived ∂Φ/∂t, sharing this network's parameters."""
        return GradNetwork(self)

    def parameters_unused_by_grad(self, t: Tensor, *constants: Tensor) -> List[str]:
        """Names of the parameters that ∂Φ/∂t does not depend on at all.

        Such a parameter only shifts Φ by a constant of integration (the output
        layer's bias is one): Φ(b) − Φ(a) cancels it and training never gives
        it a gradient. Found by one backward pass through the grad network at
        the example inputs (shapes as in :meth:`forward`); a parameter counts as
        unused when autograd reaches it not at all, not when its gradient is 0.
        """
        named = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        with torch.enable_grad():
            out = self.grad_network()(t, *constants)
            if not out.requires_grad:  # Φ is constant in t: nothing reaches any parameter
                return [name for name, _ in named]
            grads = torch.autograd.grad(out.sum(), [p for _, p in named], allow_unused=True)
        return [name for (name, _), g in zip(named, grads) if g is None]

    def describe(self) -> Description:
        """Both graphs as text and Graphviz DOT."""
        builder = GraphBuilder()
        output = self.body.build_graph(builder, None)
        return describe_graphs(builder, output, self.n_constants)


class GradNetwork(nn.Module):
    """∂Φ/∂t of an :class:`IntegralNetwork`, by forward-mode tangent propagation.

    Holds the integral network's body itself (not a copy): ``parameters()`` are
    the same objects and ``state_dict()`` has the same keys.
    """

    def __init__(self, integral: IntegralNetwork):
        super().__init__()
        self.body = integral.body
        self.n_constants = integral.n_constants

    def forward(
        self, t: Tensor, *constants: Tensor, return_integral: bool = False
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """∂Φ/∂t at t, and Φ(t) as well when ``return_integral``.

        Args:
            t: [*batch, 1].
            constants: [*batch, c_i] each, broadcastable to the batch.

        Returns:
            ∂Φ/∂t [*batch, n_out], or the pair (∂Φ/∂t, Φ).
        """
        _check_inputs(t, constants, self.n_constants)
        out = self.body(Inputs(t, tuple(constants), with_tangent=True))
        grad = out.dense_tangent().expand_as(out.primal)
        return (grad, out.primal) if return_integral else grad

    def integral_network(self) -> IntegralNetwork:
        """Reassembles Φ from these parameters."""
        return IntegralNetwork(self.body, self.n_constants)


def mlp(
    in_features: int,
    hidden_features: int,
    n_layers: int,
    out_features: int,
    activation: str = "swish",
    w0: float = 30.0,
    full_precision_output: bool = False,
    skip: int = 0,
) -> Sequential:
    """``n_layers`` Linear layers with ``activation`` between them, none after the last.

    ``skip`` > 0 joins the MLP's input to the activations after that many
    layers (NeRF's skip connection, there after 5): the next layer reads
    [h_skip, x]. ``full_precision_output`` keeps the last layer in float32
    under autocast (see :class:`Linear`).

    Initialisation follows the activation: SIREN's for sine (U(±1/n) first,
    U(±sqrt(6/n)/w0) after), Xavier for tanh and sigmoid, Kaiming otherwise.
    """
    if n_layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got n_layers={n_layers}")
    if not 0 <= skip < n_layers:
        raise ValueError(f"a skip connection goes after one of the first n_layers - 1 = {n_layers - 1} layers, got skip={skip}")
    if activation == "sine":
        inits = ["first_sine"] + ["sine"] * (n_layers - 1)
    else:
        inits = ["xavier" if activation in ("tanh", "sigmoid") else "kaiming"] * n_layers
    sizes = [in_features] + [hidden_features] * (n_layers - 1) + [out_features]
    if skip:
        sizes[skip] += in_features
    layers: List[AutoIntModule] = []
    for i in range(n_layers):
        last = i == n_layers - 1
        out = sizes[i + 1] - (in_features if skip and i + 1 == skip else 0)
        layers.append(Linear(sizes[i], out, init=inits[i], w0=w0, full_precision=last and full_precision_output))
        if i < n_layers - 1:
            layers.append(make_activation(activation, w0))
        if skip and i + 1 == skip:
            layers = [Concat(Sequential(*layers), Identity())]
    return Sequential(*layers)


def encoded_mlp(
    n_freqs: int,
    hidden_features: int,
    n_layers: int,
    out_features: int,
    activation: str = "swish",
    in_features: int = 1,
    constant_features: Optional[int] = None,
    constant_freqs: int = 0,
    w0: float = 30.0,
) -> Sequential:
    """Positional encoding (1/f normalised) of the input, optionally beside an encoded constant code, then an MLP.

    The input is t itself (``in_features`` 1) or whatever branch the caller
    places before this stack; with ``constant_features`` the first layer also
    reads γ(c_0), the encoded constant input 0, whose tangent is zero.
    """
    encode = PositionalEncoding(n_freqs)
    width = encode.out_features(in_features)
    if constant_features is None:
        return Sequential(encode, mlp(width, hidden_features, n_layers, out_features, activation, w0))
    code = PositionalEncoding(constant_freqs)
    width += code.out_features(constant_features)
    front = Concat(Sequential(Variable(), encode), Sequential(Constant(0), code))
    return Sequential(front, mlp(width, hidden_features, n_layers, out_features, activation, w0))
