"""A multiresolution grid of learned features (dense at coarse levels, hashed at fine ones) with its derivative rule.

Level l covers the cube [−bound, bound]³ with a lattice of resolution R_l
(R_l = ⌊R_min · b^l⌋, b the growth factor from R_min to R_max). A point x
maps to u = R_l (x + bound) / (2 bound), clamped to [0, R_l]; with the cell
corner c = ⌊u⌋ and fractions f = u − c, its level-l features are the trilinear
interpolation of the feature vectors at the cell's 8 corners v, scaled by
s_l = R_0 / R_l:

    y_l(x) = s_l Σ_v w_v(f) θ_l[v],   w_v(f) = Π_a (v_a ? f_a : 1 − f_a)

The scale plays the part of the positional encoding's 1/f: the tangent of a
level grows with its resolution (u̇ ∝ R_l), so without it a step of the same
size in every table entry (Adam's) would move the fine levels' derivatives,
the densities a grad network is made of, hundreds of times more than the
coarse ones'. With it every level's tangent has the same scale.

Corners index a dense table while (R_l + 1)³ fits it, else a spatial hash
(v_x·1 ⊕ v_y·2654435761 ⊕ v_z·805459861) mod T. The layer's output is the
levels' features side by side.

Derivative along t: inside a cell y_l is a polynomial in u, so with
ẋ = dx/dt the rule is exact,

    ẏ_l = s_l Σ_v (Σ_a ∂w_v/∂f_a · u̇_a) θ_l[v],   u̇_a = R_l ẋ_a / (2 bound)  (0 where u_a is clamped)

with ∂w_v/∂f_a = ±Π_{b≠a} (v_b ? f_b : 1 − f_b). y is continuous in t
(piecewise polynomial between cell crossings), so Φ(b) − Φ(a) is still the
exact integral of the grad network. Trilinear interpolation along a ray is a
cubic in t between crossings.
"""
import math
from typing import Optional

import torch
from torch import Tensor, nn

from .dual import Dual
from .graph import GraphBuilder, NodeRef
from .layers import AutoIntModule, DualOrInputs, as_dual, graph_input

# The 8 corners of a cell as offsets (bit a of corner k is its offset along axis a).
_CORNERS = [[(k >> a) & 1 for a in range(3)] for k in range(8)]
# instant-ngp's primes: one per axis, the first 1 so that a dense axis stays coherent in memory.
_PRIMES = (1, 2654435761, 805459861)


def level_resolutions(n_levels: int, min_resolution: int, max_resolution: int):
    """R_l = ⌊R_min · b^l⌋ with b = (R_max / R_min)^(1/(L − 1)) (R_min alone for one level)."""
    if n_levels == 1:
        return [min_resolution]
    growth = math.exp((math.log(max_resolution) - math.log(min_resolution)) / (n_levels - 1))
    return [int(math.floor(min_resolution * growth**level + 1e-9)) for level in range(n_levels)]


class HashGrid(AutoIntModule):
    """Multiresolution trilinear feature grid of a 3-D point: [*batch, 3] -> [*batch, n_levels · n_features].

    Args:
        bound: the grid covers [−bound, bound]³; points outside see the nearest face (zero derivative there).
        n_levels: L, the number of resolutions.
        n_features: F, features per level.
        log2_size: T = 2^log2_size table entries per level.
        min_resolution, max_resolution: R_0 and R_{L−1}.
        init_scale: features start uniform in ±init_scale.
    """

    def __init__(self, bound: float, n_levels: int = 16, n_features: int = 2, log2_size: int = 19, min_resolution: int = 16,
                 max_resolution: int = 2048, init_scale: float = 1e-4):
        super().__init__()
        if bound <= 0:
            raise ValueError(f"a grid needs a positive bound, got {bound}")
        self.bound, self.n_levels, self.n_features = float(bound), n_levels, n_features
        self.resolutions = level_resolutions(n_levels, min_resolution, max_resolution)
        self.table_size = 2**log2_size
        self.table = nn.Parameter(torch.empty(n_levels, self.table_size, n_features).uniform_(-init_scale, init_scale))
        self.register_buffer("_scale", torch.tensor(self.resolutions, dtype=torch.float64), persistent=False)
        # s_l = R_0 / R_l, one per output feature.
        level_scale = torch.tensor([self.resolutions[0] / r for r in self.resolutions], dtype=torch.float64)
        self.register_buffer("_level_scale", level_scale.repeat_interleave(n_features), persistent=False)
        self.register_buffer("_corners", torch.tensor(_CORNERS, dtype=torch.int64), persistent=False)
        # Levels whose lattice fits the table are indexed densely (no collisions), the others by the hash.
        self.register_buffer("_dense", torch.tensor([(r + 1) ** 3 <= self.table_size for r in self.resolutions]), persistent=False)

    def out_features(self) -> int:
        return self.n_levels * self.n_features

    def _indices(self, cell: Tensor) -> Tensor:
        """Table rows [*batch, L, 8] (offset by level) of the 8 corners of cells ``cell`` [*batch, L, 3]."""
        vertex = cell[..., None, :] + self._corners  # [*batch, L, 8, 3]
        stride = (self._scale.to(torch.int64) + 1)[:, None]  # [L, 1]
        dense = vertex[..., 0] + stride * (vertex[..., 1] + stride * vertex[..., 2])
        hashed = (vertex[..., 0] * _PRIMES[0]) ^ (vertex[..., 1] * _PRIMES[1]) ^ (vertex[..., 2] * _PRIMES[2])
        index = torch.where(self._dense[:, None], dense, hashed) & (self.table_size - 1)
        return index + self.table_size * torch.arange(self.n_levels, device=cell.device)[:, None]

    def forward(self, x: DualOrInputs) -> Dual:
        x = as_dual(x).densified()
        if x.primal.shape[-1] != 3:
            raise ValueError(f"HashGrid takes 3-D points, got {x.primal.shape[-1]} features")
        dtype = x.primal.dtype
        scale = self._scale.to(dtype) / (2 * self.bound)  # [L]
        u = (x.primal[..., None, :] + self.bound) * scale[:, None]  # [*batch, L, 3]
        top = self._scale.to(dtype)[:, None]
        inside = (u >= 0) & (u <= top)
        u = torch.minimum(u.clamp_min(0), top)
        cell = torch.minimum(u.floor(), top - 1).to(torch.int64)
        frac = u - cell.to(dtype)  # [*batch, L, 3]
        features = self.table.reshape(-1, self.n_features)[self._indices(cell)]  # [*batch, L, 8, F]
        bits = self._corners.to(torch.bool)  # [8, 3]
        factors = torch.where(bits, frac[..., None, :], 1 - frac[..., None, :])  # [*batch, L, 8, 3]
        level_scale = self._level_scale.to(dtype)
        y = (factors.prod(-1)[..., None] * features).sum(-2).flatten(-2) * level_scale  # [*batch, L·F]
        if x.tangent is None:
            return Dual(y)
        rate = torch.where(inside, x.tangent[..., None, :] * scale[:, None], torch.zeros_like(u))  # u̇ [*batch, L, 3]
        sign = bits.to(dtype) * 2 - 1  # ∂(f or 1 − f)/∂f: ±1
        others = torch.stack([factors[..., 1] * factors[..., 2], factors[..., 0] * factors[..., 2], factors[..., 0] * factors[..., 1]], -1)
        dweights = (sign * others * rate[..., None, :]).sum(-1)  # [*batch, L, 8]
        return Dual(y, (dweights[..., None] * features).sum(-2).flatten(-2) * level_scale)

    def build_graph(self, g: GraphBuilder, inp: Optional[NodeRef]) -> NodeRef:
        inp = graph_input(g, inp)
        label = f"HashGrid {self.n_levels}x{self.n_features}: trilinear θ at x"
        return g.unary(inp, label, "HashGrid' : Σ_v (∇w_v · dx) θ_v", uses_primal=True)

    def extra_repr(self) -> str:
        return f"bound={self.bound:g}, n_levels={self.n_levels}, n_features={self.n_features}, table_size={self.table_size}, " \
               f"resolutions={self.resolutions[0]}..{self.resolutions[-1]}"
