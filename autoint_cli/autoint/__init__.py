"""The AutoInt core: integral networks and the grad networks derived from them.

Knows nothing of rays or scenes: a network is a function Φ(t; constants) of one
integration variable t and inputs that do not depend on t.
"""
from .combinators import Concat, Identity, Product, Sequential, Sum
from .dual import Dual, Inputs
from .graph import Description
from .grid import HashGrid
from .layers import (
    ACTIVATIONS,
    INITS,
    AutoIntModule,
    Constant,
    Elementwise,
    Exp,
    Linear,
    PositionalEncoding,
    ReLU,
    ReQU,
    Sigmoid,
    Sine,
    Softplus,
    Swish,
    Tanh,
    Variable,
    make_activation,
)
from .network import GradNetwork, IntegralNetwork, encoded_mlp, mlp

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "AutoIntModule",
    "Concat",
    "Constant",
    "Description",
    "Dual",
    "Elementwise",
    "Exp",
    "GradNetwork",
    "HashGrid",
    "Identity",
    "Inputs",
    "IntegralNetwork",
    "Linear",
    "PositionalEncoding",
    "Product",
    "ReLU",
    "ReQU",
    "Sequential",
    "Sigmoid",
    "Sine",
    "Softplus",
    "Sum",
    "Swish",
    "Tanh",
    "Variable",
    "encoded_mlp",
    "make_activation",
    "mlp",
]
