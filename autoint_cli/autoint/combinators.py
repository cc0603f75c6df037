"""Combinators that assemble layers into real architectures.

    Sequential(f, g)(x) = g(f(x))                 chain rule, layer by layer
    Concat(f, g)(x)     = [f(x), g(x)]            tangent [ḟ, ġ]; constant branches add no tangent
    Sum(f, g)(x)        = f(x) + g(x)             tangent ḟ + ġ
    Product(f, g)(x)    = f(x) ⊙ g(x)             tangent ḟ ⊙ g + f ⊙ ġ
    Identity()(x)       = x                       tangent ẋ (with Concat: a skip connection)

Every branch of Concat, Sum and Product receives the same input, so branches
that start with :class:`Variable` or :class:`Constant` read the network inputs.
Batch dimensions broadcast (a per-ray code [n_rays, 1, c] beside samples
[n_rays, n_samples, 1]).
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from .dual import Dual
from .graph import PRIMAL, TANGENT, GraphBuilder, NodeRef
from .layers import AutoIntModule, DualOrInputs, as_dual, graph_input


class Sequential(AutoIntModule):
    """Applies its layers in order."""

    def __init__(self, *layers: AutoIntModule):
        super().__init__()
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        self.layers = nn.ModuleList(layers)

    def forward(self, x: DualOrInputs) -> Dual:
        for layer in self.layers:
            x = layer(x)
        return as_dual(x)

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        for layer in self.layers:
            inp = layer.build_graph(g, inp)
        return inp

    def __getitem__(self, index: int) -> AutoIntModule:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)


class Identity(AutoIntModule):
    """Its input unchanged: beside a branch in :class:`Concat`, the skip connection [f(x), x]."""

    def forward(self, x: DualOrInputs) -> Dual:
        return as_dual(x)

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        return graph_input(g, inp)


class _Branches(AutoIntModule):
    def __init__(self, *branches: AutoIntModule):
        super().__init__()
        if len(branches) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two branches")
        self.branches = nn.ModuleList(branches)

    # How the graph description names this combinator, and whether its
    # derivative rule reads the branches' values (the product rule does).
    primal_label = ""
    tangent_reads_primal = False

    def tangent_label(self, n_constant: int) -> str:
        return self.primal_label + " (d/dt)"

    def _outputs(self, x: DualOrInputs) -> List[Dual]:
        return [as_dual(branch(x)) for branch in self.branches]

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        refs = [branch.build_graph(g, inp) for branch in self.branches]
        primal = g.add(self.primal_label, PRIMAL, [r.primal for r in refs])
        tangents = [r.tangent for r in refs if r.tangent is not None]
        if not tangents:
            return NodeRef(primal)
        sources = tangents + ([r.primal for r in refs] if self.tangent_reads_primal else [])
        return NodeRef(primal, g.add(self.tangent_label(len(refs) - len(tangents)), TANGENT, sources))


def _batch_shape(duals: Sequence[Dual]) -> torch.Size:
    shapes = [d.primal.shape[:-1] for d in duals] + [d.tangent.shape[:-1] for d in duals if d.tangent is not None]
    return torch.broadcast_shapes(*shapes)


def _expand(x: Tensor, batch: torch.Size) -> Tensor:
    return x.expand(batch + x.shape[-1:])


def _tangent_window(d: Dual, start: int, stop: int, batch: torch.Size) -> Tensor:
    """Features [start, stop) of d's tangent, zeros where it has none."""
    if d.tangent is not None and d.offset == start and d.offset + d.tangent.shape[-1] == stop:
        return _expand(d.tangent, batch)
    window = d.primal.new_zeros(batch + (stop - start,))
    if d.tangent is not None:
        lo, hi = d.offset - start, d.offset - start + d.tangent.shape[-1]
        window[..., lo:hi] = d.tangent
    return window


class Concat(_Branches):
    """[f(x), g(x), …] along the feature axis.

    The tangent covers only the span from the first to the last branch that
    depends on t: a constant code placed first or last adds no tangent columns,
    and the next :class:`Linear` multiplies only the columns that remain.
    """

    primal_label = "concat"

    def tangent_label(self, n_constant: int) -> str:
        if not n_constant:
            return "concat d/dt"
        return f"concat d/dt ({n_constant} constant branch{'es' if n_constant > 1 else ''}: zero)"

    def forward(self, x: DualOrInputs) -> Dual:
        outs = self._outputs(x)
        batch = _batch_shape(outs)
        primal = torch.cat([_expand(d.primal, batch) for d in outs], dim=-1)
        varying = [i for i, d in enumerate(outs) if d.tangent is not None]
        if not varying:
            return Dual(primal)
        first, last = varying[0], varying[-1]
        starts = [0]
        for d in outs:
            starts.append(starts[-1] + d.n_features)
        pieces = []
        for i in range(first, last + 1):
            d = outs[i]
            start = d.offset if i == first else 0
            stop = d.offset + d.tangent.shape[-1] if i == last else d.n_features
            pieces.append(_tangent_window(d, start, stop, batch))
        tangent = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
        return Dual(primal, tangent, starts[first] + outs[first].offset)



class Sum(_Branches):
    """f(x) + g(x) + …, broadcasting."""

    primal_label = "+"

    def forward(self, x: DualOrInputs) -> Dual:
        outs = self._outputs(x)
        primal = outs[0].primal
        for d in outs[1:]:
            primal = primal + d.primal
        varying = [d for d in outs if d.tangent is not None]
        if not varying:
            return Dual(primal)
        width = primal.shape[-1]
        aligned = all(d.n_features == width for d in outs) and all(
            d.offset == varying[0].offset and d.tangent.shape[-1] == varying[0].tangent.shape[-1] for d in varying
        )
        # Branches broadcast along features, or with tangents over different
        # columns, are summed densely; the common case keeps its narrow tangent.
        tangents = [d.tangent for d in varying] if aligned else [d.dense_tangent() for d in varying]
        tangent = tangents[0]
        for extra in tangents[1:]:
            tangent = tangent + extra
        if not aligned:
            tangent = tangent.expand(tangent.shape[:-1] + (width,))
        return Dual(primal, tangent, varying[0].offset if aligned else 0)



class Product(_Branches):
    """f(x) ⊙ g(x) ⊙ …, broadcasting; tangent by the product rule Σ_i ḟ_i Π_{j≠i} f_j."""

    primal_label = "*"
    tangent_reads_primal = True

    def tangent_label(self, n_constant: int) -> str:
        return "product rule: sum_i df_i * prod_(j!=i) f_j"

    def forward(self, x: DualOrInputs) -> Dual:
        outs = self._outputs(x)
        primal = outs[0].primal
        for d in outs[1:]:
            primal = primal * d.primal
        tangent = None
        for i, d in enumerate(outs):
            if d.tangent is None:
                continue
            term = d.dense_tangent()
            for j, other in enumerate(outs):
                if j != i:
                    term = term * other.primal
            tangent = term if tangent is None else tangent + term
        return Dual(primal, tangent)
