"""Values that carry their derivative along the integration variable t.

Every layer of an integral network maps a :class:`Dual` to a :class:`Dual`. The
tangent is the derivative of the primal with respect to the single integration
variable t (forward-mode differentiation in direction e_t), so one pass gives
both Phi and dPhi/dt.

Constant inputs (ray codes, conditioning vectors) have zero tangent. Rather than
carrying columns of zeros, a tangent covers a contiguous slice of the features
``[offset, offset + tangent.shape[-1])``; everything outside it is known to be
zero and never computed. ``tangent is None`` means the whole value is constant.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor


@dataclass(frozen=True)
class Inputs:
    """What an integral network is evaluated at.

    Attributes:
        t: [*batch, 1] the integration variable.
        constants: tensors [*batch, c_i] (broadcastable to the batch) that do
            not depend on t.
        with_tangent: whether the layers should propagate d/dt. The integral
            network sets it False so that a pure primal pass costs nothing extra.
    """

    t: Tensor
    constants: Tuple[Tensor, ...] = ()
    with_tangent: bool = True


@dataclass(frozen=True)
class Dual:
    """A feature tensor and its derivative along t.

    Attributes:
        primal: [*batch, n_features].
        tangent: [*batch, n_tangent] with n_tangent <= n_features, the
            derivative of ``primal[..., offset:offset + n_tangent]``; the other
            features have zero derivative. None when all of them do.
        offset: first feature that the tangent covers.
    """

    primal: Tensor
    tangent: Optional[Tensor] = None
    offset: int = 0

    @property
    def n_features(self) -> int:
        return self.primal.shape[-1]

    @property
    def is_full(self) -> bool:
        """True when the tangent covers every feature."""
        return self.tangent is not None and self.offset == 0 and self.tangent.shape[-1] == self.n_features

    def tangent_slice(self) -> slice:
        assert self.tangent is not None
        return slice(self.offset, self.offset + self.tangent.shape[-1])

    def dense_tangent(self) -> Tensor:
        """The full derivative [*batch, n_features], zeros filled in.

        Used where a layer mixes features in a way that a partial tangent
        cannot express (and by tests); layers that can avoid it do.
        """
        if self.is_full:
            return self.tangent
        shape = torch.broadcast_shapes(self.primal.shape[:-1], () if self.tangent is None else self.tangent.shape[:-1])
        dense = self.primal.new_zeros(shape + (self.n_features,))
        if self.tangent is not None:
            dense[..., self.tangent_slice()] = self.tangent
        return dense

    def densified(self) -> "Dual":
        """This value with a tangent over all features (None stays None)."""
        if self.tangent is None or self.is_full:
            return self
        return Dual(self.primal, self.dense_tangent(), 0)
