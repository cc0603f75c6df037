"""The multiresolution grid layer: its derivative rule against autograd, and Φ(b) − Φ(a) as the exact integral."""
import numpy as np
import pytest
import torch

from autoint_cli.autoint import Concat, Constant, Dual, HashGrid, IntegralNetwork, PositionalEncoding, Product, Sequential, Sum, Variable, mlp
from autoint_cli.autoint.grid import level_resolutions

from helpers import assert_relative, autograd_dphi_dt, jvp_dphi_dt

F64 = torch.float64
BOUND = 1.5


def small_grid(log2_size=9, seed=0):
    torch.manual_seed(seed)
    # Levels 2..48: the coarse ones dense, the fine ones hashed into 512 rows (collisions included).
    return HashGrid(BOUND, n_levels=5, n_features=3, log2_size=log2_size, min_resolution=2, max_resolution=48, init_scale=1.0).double()


def grid_phi(grid):
    """Φ(t; o, d) = grid(o + t·d): the layer alone as an integral network."""
    return IntegralNetwork(Sequential(Sum(Constant(0), Product(Variable(), Constant(1))), grid), n_constants=2)


def rays(n=64, seed=1, spread=1.3):
    g = torch.Generator().manual_seed(seed)
    origins = torch.randn(n, 3, generator=g, dtype=F64) * spread
    directions = torch.randn(n, 3, generator=g, dtype=F64)
    return origins, directions


def test_resolutions_grow_geometrically():
    assert level_resolutions(4, 16, 128) == [16, 32, 64, 128]
    assert level_resolutions(1, 16, 128) == [16]
    grid = small_grid()
    assert grid.resolutions == [2, 4, 9, 21, 48]
    assert grid._dense.tolist() == [True, True, False, False, False]  # (9 + 1)^3 = 1000 > 512 rows


@pytest.mark.parametrize("log2_size", [9, 18])
def test_derivative_rule_equals_autograd_and_jvp(log2_size):
    """Points inside the box and outside it (clamped: zero derivative there), float64, to 1e-10 of the largest value."""
    phi = grid_phi(small_grid(log2_size))
    o, d = rays(spread=1.3)
    t = torch.rand(64, 5, 1, dtype=F64) * 2 - 1
    grad = phi.grad_network()(t, o[:, None], d[:, None])
    assert_relative(grad, autograd_dphi_dt(phi, t, o[:, None], d[:, None]), 1e-10)
    assert_relative(grad, jvp_dphi_dt(phi, t, o[:, None], d[:, None]), 1e-10)


def test_outside_the_box_the_features_are_constant():
    grid = small_grid()
    x = torch.tensor([[3.0, 0.2, -0.1], [0.1, -2.5, 0.3]], dtype=F64)
    out = grid(Dual(x, torch.ones_like(x)))
    # The first point is past the +x face: moving along (1, 1, 1) it still slides along y and z; the derivative of
    # the clamped x coordinate is 0. Compare with the tangent along (0, 1, 1) only.
    slide = grid(Dual(x, torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]], dtype=F64)))
    torch.testing.assert_close(out.tangent, slide.tangent, rtol=0, atol=1e-12)


def crossings(grid, o, d, a, b):
    """Every t in (a, b) where the ray o + t·d crosses a cell face of some level (and the box faces): [n, k] sorted, padded."""
    rows = []
    for oi, di, ai, bi in zip(o.numpy(), d.numpy(), a.numpy(), b.numpy()):
        ts = [ai, bi]
        for r in grid.resolutions:
            for axis in range(3):
                if abs(di[axis]) < 1e-12:
                    continue
                k = np.arange(0, r + 1)
                tk = (2 * BOUND * k / r - BOUND - oi[axis]) / di[axis]
                ts += [x for x in tk if ai < x < bi]
        rows.append(np.sort(np.array(ts)))
    return rows


def piecewise_quadrature(phi, grid, o, d, a, b, order):
    """∫_a^b ∂Φ/∂t dt per ray by Gauss–Legendre of ``order`` points on every piece between cell crossings."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    grad = phi.grad_network()
    for i, posts in enumerate(crossings(grid, o, d, a[:, 0], b[:, 0])):
        lo, hi = posts[:-1], posts[1:]
        t = torch.from_numpy((lo + hi)[:, None] / 2 + (hi - lo)[:, None] / 2 * nodes).reshape(-1, 1)
        values = grad(t, o[i].expand(len(t), 3), d[i].expand(len(t), 3)).reshape(len(lo), order, -1)
        yield (torch.from_numpy((hi - lo) / 2)[:, None, None] * torch.from_numpy(weights)[None, :, None] * values).sum((0, 1))


def test_phi_differences_are_the_exact_integral_of_the_grid():
    """Between cell crossings the grid is a cubic in t: 4-point Gauss–Legendre per piece is exact; Φ(b) − Φ(a) must match."""
    grid = small_grid()
    phi = grid_phi(grid)
    o, d = rays(n=16, seed=3, spread=0.6)
    a = torch.rand(16, 1, dtype=F64) * 0.5 - 1.0
    b = a + torch.rand(16, 1, dtype=F64) * 1.5 + 0.2
    exact = phi.integrate(a, b, o, d)
    for i, quadrature in enumerate(piecewise_quadrature(phi, grid, o, d, a, b, order=4)):
        assert_relative(exact[i], quadrature, 1e-10)


def test_an_integral_network_on_the_grid_integrates_exactly():
    """Grid, then a swish MLP beside an encoded ray code: Φ(b) − Φ(a) against 24-point Gauss–Legendre on every piece."""
    torch.manual_seed(0)
    grid = small_grid()
    point = Sequential(Sum(Constant(0), Product(Variable(), Constant(1))), grid)
    body = Sequential(Concat(point, Sequential(Constant(1), PositionalEncoding(1))), mlp(grid.out_features() + 9, 16, 3, 2))
    phi = IntegralNetwork(body, n_constants=2).double()
    o, d = rays(n=6, seed=4, spread=0.5)
    a = torch.full((6, 1), -0.8, dtype=F64)
    b = torch.full((6, 1), 0.9, dtype=F64)
    exact = phi.integrate(a, b, o, d)
    for i, quadrature in enumerate(piecewise_quadrature(phi, grid, o, d, a, b, order=24)):
        assert_relative(exact[i], quadrature, 1e-9)


def test_table_gradients_of_the_tangent_match_finite_differences():
    """The backward of the derivative rule (what training uses), by torch.autograd.gradcheck in float64."""
    grid = HashGrid(BOUND, n_levels=2, n_features=2, log2_size=6, min_resolution=2, max_resolution=5, init_scale=1.0).double()
    o, d = rays(n=5, seed=5, spread=0.8)
    x = o + 0.3 * d

    def tangent(table):
        return torch.func.functional_call(grid, {"table": table}, (Dual(x, d),)).tangent

    table = grid.table.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(tangent, (table,), eps=1e-6, atol=1e-8)


def test_dense_levels_never_collide():
    grid = small_grid()
    r = grid.resolutions[1]
    axis = torch.arange(r, dtype=torch.int64)
    cells = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 1, 3).expand(-1, grid.n_levels, 3)
    rows = grid._indices(cells)[:, 1]  # level 1 (dense), every corner of every cell
    corners = cells[:, 1, None, :] + grid._corners
    unique_corners = torch.unique(corners.reshape(-1, 3), dim=0)
    assert torch.unique(rows).numel() == unique_corners.shape[0] == (r + 1) ** 3


def test_every_level_gives_a_linear_field_the_same_value_and_tangent():
    """Each level's table holding the lattice coordinate u_x of its vertices: trilinear interpolation gives u_x = R_l (x + b)/(2b),
    and the level scale R_0/R_l makes that R_0 (x + b)/(2b) at every level, its tangent R_0 ẋ/(2b): no level outweighs another."""
    grid = HashGrid(BOUND, n_levels=3, n_features=1, log2_size=12, min_resolution=2, max_resolution=8, init_scale=0.0).double()
    assert grid._dense.all()
    with torch.no_grad():
        for level, r in enumerate(grid.resolutions):
            row = torch.arange(grid.table_size)
            grid.table[level, :, 0] = (row % (r + 1)).double()  # dense rows: vertex x + (R + 1)·(vertex y + (R + 1)·vertex z)
    _, d = rays(n=20, seed=6)
    o = torch.rand(20, 3, dtype=F64, generator=torch.Generator().manual_seed(7)) * 2.4 - 1.2  # inside the box
    out = grid(Dual(o, d))
    r0 = grid.resolutions[0]
    value = (r0 * (o[:, :1] + BOUND) / (2 * BOUND)).expand(-1, 3)
    tangent = (r0 * d[:, :1] / (2 * BOUND)).expand(-1, 3)
    torch.testing.assert_close(out.primal, value, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.tangent, tangent, rtol=0, atol=1e-12)
