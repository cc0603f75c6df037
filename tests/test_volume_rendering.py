"""Compositing against hand-computed values; the three renderers against each other."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from autoint_cli.config import ModelConfig
from autoint_cli.models import SceneModel
from autoint_cli.render.chunks import render_chunks
from autoint_cli.volume.rays import Rays
from autoint_cli.volume.rendering import (RenderOutput, activate, colour_variation, composite, density_disagreement, negative_density,
                                          post_misfit, refined_window, render_integral, render_merged, render_quadrature, render_refined,
                                          render_strata, render_training, weight_distortion)
from autoint_cli.volume.sampling import (Sections, resample_sections, sections_from_lengths, shift_posts, strata, uniform_sections,
                                        weight_quantile_posts)

F64 = torch.float64


def test_composite_by_hand():
    """σ = (1, 2) over t-lengths (0.5, 0.25) with ‖d‖ = 2: optical depths (1, 1).

    w1 = 1 − e⁻¹ = 0.6321, w2 = e⁻¹(1 − e⁻¹) = 0.2325, leftover e⁻² = 0.1353 to the background.
    """
    sigma = torch.tensor([[1.0, 2.0]], dtype=F64)
    rgb = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=F64)
    sections = Sections(torch.tensor([[2.0, 2.5, 2.75]], dtype=F64))
    out = composite(sigma, rgb, sections, torch.tensor([[2.0]], dtype=F64), torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    e = math.exp(-1)
    w = torch.tensor([[1 - e, e * (1 - e)]], dtype=F64)
    torch.testing.assert_close(out.weights, w, rtol=1e-12, atol=0)
    torch.testing.assert_close(out.rgb, torch.tensor([[1 - e, e * (1 - e), e * e]], dtype=F64), rtol=1e-12, atol=0)
    torch.testing.assert_close(out.acc, torch.tensor([[1 - e * e]], dtype=F64), rtol=1e-12, atol=0)
    # depth = Σ w t_mid = w1·2.25 + w2·2.625
    torch.testing.assert_close(out.depth, torch.tensor([[(1 - e) * 2.25 + e * (1 - e) * 2.625]], dtype=F64), rtol=1e-12, atol=0)
    torch.testing.assert_close(out.disparity, out.acc / out.depth, rtol=1e-12, atol=0)


@pytest.mark.parametrize("n_sections", [1, 4, 32])
def test_constant_density_opacity_is_independent_of_sections(n_sections):
    near, far = torch.full((3, 1), 2.0, dtype=F64), torch.full((3, 1), 6.0, dtype=F64)
    norm = torch.tensor([[1.0], [1.5], [3.0]], dtype=F64)
    sections = uniform_sections(near, far, n_sections)
    out = composite(torch.full((3, n_sections), 0.3, dtype=F64), torch.full((3, n_sections, 3), 0.5, dtype=F64), sections, norm, torch.ones(3, dtype=F64))
    torch.testing.assert_close(out.acc, 1 - torch.exp(-0.3 * 4 * norm), rtol=1e-12, atol=0)
    torch.testing.assert_close(out.rgb, (0.5 * out.acc + (1 - out.acc)).expand(3, 3), rtol=1e-12, atol=0)


def test_activate_applies_relu_and_sigmoid():
    raw = torch.tensor([[-1.0, 0.0, 2.0, -3.0], [0.5, 1.0, 1.0, 1.0]], dtype=F64)
    sigma, rgb = activate(raw)
    torch.testing.assert_close(sigma, torch.tensor([0.0, 0.5], dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(rgb, torch.sigmoid(raw[:, 1:]), rtol=0, atol=0)


def test_activate_weights_colour_by_density():
    """κ > 0: c̄ = sigmoid(h̄ / (relu(σ̄) + κ)), by hand; κ = 0 is the plain sigmoid."""
    raw = torch.tensor([[3.0, 8.0, -4.0, 0.0], [-2.0, 1.0, 0.5, -0.5]], dtype=F64)
    sigma, rgb = activate(raw, colour_by_density=1.0)
    torch.testing.assert_close(sigma, torch.tensor([3.0, 0.0], dtype=F64), rtol=0, atol=0)
    expected = torch.sigmoid(torch.tensor([[2.0, -1.0, 0.0], [1.0, 0.5, -0.5]], dtype=F64))
    torch.testing.assert_close(rgb, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(activate(raw, 0.0)[1], torch.sigmoid(raw[:, 1:]), rtol=0, atol=0)


class PiecewiseField(nn.Module):
    """Raw σ and colour constant on each of N equal sections of [near, far]; Φ their exact antiderivative."""

    def __init__(self, values, near, far):
        super().__init__()
        self.values = values  # [n_rays, N, 4]
        self.near, self.far = near, far

    def _section(self, t):
        n = self.values.shape[1]
        index = ((t - self.near) / (self.far - self.near) * n).floor().long().clamp(0, n - 1)
        return index, (self.far - self.near) / n

    def grad(self, rays, t):
        index, _ = self._section(t)
        return torch.gather(self.values, 1, index[..., None].expand(*index.shape, 4))

    def integral(self, rays, t):
        index, width = self._section(t)
        cumulative = torch.cat((torch.zeros_like(self.values[:, :1]), torch.cumsum(self.values * width, 1)), 1)  # [n_rays, N+1, 4]
        before = torch.gather(cumulative, 1, index[..., None].expand(*index.shape, 4))
        start = self.near + index * width
        return before + torch.gather(self.values, 1, index[..., None].expand(*index.shape, 4)) * (t - start)[..., None]


def piecewise_model(n_rays=7, n_sections=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    model = SceneModel(ModelConfig(use_sampler=False, n_sections=n_sections, samples_per_section=3, netdepth=1, netwidth=4)).double()
    values = torch.randn(n_rays, n_sections, 4, generator=generator, dtype=F64)
    values[..., 0] = values[..., 0].abs() * 2  # mostly positive densities
    model.field = PiecewiseField(values, 2.0, 6.0)
    rays = Rays(torch.randn(n_rays, 3, generator=generator, dtype=F64), torch.randn(n_rays, 3, generator=generator, dtype=F64),
                torch.full((n_rays, 1), 2.0, dtype=F64), torch.full((n_rays, 1), 6.0, dtype=F64))
    return model, rays


@pytest.mark.parametrize("kappa", [0.0, 0.7])
def test_three_renderers_agree_on_a_piecewise_constant_field(kappa):
    model, rays = piecewise_model()
    background = torch.tensor([1.0, 1.0, 1.0], dtype=F64)
    integral = render_integral(model.field.integral, model.sections, rays, background, colour_by_density=kappa)
    training = render_training(model.field.grad, model.sections, rays, background, 3, torch.Generator().manual_seed(1), colour_by_density=kappa)
    quadrature = render_quadrature(model.field.grad, rays, background, n_samples=64, colour_by_density=kappa)  # 8 bins inside each section
    for other in (training, quadrature):
        torch.testing.assert_close(other.rgb, integral.rgb.double(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(other.acc, integral.acc.double(), rtol=1e-6, atol=1e-6)


def small_model(**overrides):
    options = dict(n_sections=8, samples_per_section=2, netdepth=3, netwidth=16, multires=4, multires_views=2, sampler_depth=2, sampler_width=16)
    options.update(overrides)
    return SceneModel(ModelConfig(**options)).double()


def random_rays(n=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return Rays(torch.randn(n, 3, generator=generator, dtype=F64), torch.randn(n, 3, generator=generator, dtype=F64),
                torch.full((n, 1), 2.0, dtype=F64), torch.full((n, 1), 6.0, dtype=F64))


@pytest.mark.parametrize("shared_trunk, kappa", [(False, 0.0), (True, 0.0), (True, 0.5)])
def test_integral_renderer_equals_quadrature_of_the_grad_networks(shared_trunk, kappa):
    """Section means from Φ differences against 64-point Gauss–Legendre of ∂Φ/∂t in each section (float64), with and
    without colour weighted by density."""
    model = small_model(shared_trunk=shared_trunk)
    with torch.no_grad():
        model.sampler.mlp[-1].weight.normal_(0, 0.5)  # non-uniform sections
    rays = random_rays()
    background = torch.tensor([0.2, 0.3, 0.4], dtype=F64)
    fast = render_integral(model.field.integral, model.sections, rays, background, colour_by_density=kappa)
    sections = model.sections(rays)
    nodes, weights = (torch.from_numpy(x) for x in np.polynomial.legendre.leggauss(64))
    half, mid = sections.lengths / 2, sections.midpoints
    t = mid[..., None] + half[..., None] * nodes  # [n_rays, N, 64]
    values = model.field.grad(rays, t.flatten(-2)).unflatten(-2, t.shape[-2:])  # [n_rays, N, 64, 4]
    means = 0.5 * torch.einsum("rnkc,k->rnc", values, weights)
    sigma, rgb = activate(means, kappa)
    reference = composite(sigma, rgb, sections, rays.directions.norm(dim=-1, keepdim=True), background)
    assert fast.rgb.dtype == F64
    torch.testing.assert_close(fast.rgb, reference.rgb, rtol=0, atol=1e-10)
    torch.testing.assert_close(fast.acc, reference.acc, rtol=0, atol=1e-10)


def test_integral_renderer_at_another_n_sections():
    model = small_model()
    rays = random_rays()
    background = torch.ones(3, dtype=F64)
    for n in (4, 8, 16, 5):
        out = render_integral(model.field.integral, model.sections, rays, background, n_sections=n)
        assert out.rgb.shape == (9, 3) and out.weights.shape == (9, n)


def test_training_renderer_trains_the_sampler_too():
    model = small_model()
    out = render_training(model.field.grad, model.sections, random_rays(), torch.ones(3, dtype=F64), 2, torch.Generator().manual_seed(0))
    out.rgb.sum().backward()
    assert model.sampler.mlp[-1].weight.grad.abs().sum() > 0
    assert model.field.networks[0].body[1][0].weight.grad.abs().sum() > 0


def test_sigma_noise_shifts_each_sections_raw_density():
    """raw_noise_std's noise ε_k is added to section k's mean raw σ: the same as a grad network whose σ is raised by ε_k there (float64)."""
    model = small_model()
    rays, jitter = random_rays(), torch.rand(9, 8, 2, dtype=F64)
    noise = torch.randn(9, 8, dtype=F64, generator=torch.Generator().manual_seed(3))

    def raised(rays_, t):
        raw = model.field.grad(rays_, t)
        # t holds M = 2 samples of each section in a row: both get their section's ε.
        return torch.cat((raw[..., :1] + noise.repeat_interleave(2, -1)[..., None], raw[..., 1:]), -1)

    background = torch.ones(3, dtype=F64)
    noisy = render_training(model.field.grad, model.sections, rays, background, 2, jitter=jitter, sigma_noise=noise)
    expected = render_training(raised, model.sections, rays, background, 2, jitter=jitter)
    plain = render_training(model.field.grad, model.sections, rays, background, 2, jitter=jitter)
    torch.testing.assert_close(noisy.rgb, expected.rgb, rtol=1e-12, atol=1e-12)
    assert (noisy.rgb - plain.rgb).abs().max() > 1e-3


def test_colour_variation_against_a_loop():
    """V = 1/(3(S−1)) Σ_j ‖c_{j+1} − c_j‖² over the colour channels only (float64, random samples)."""
    samples = torch.randn(5, 7, 4, dtype=F64)
    expected = torch.tensor([sum(float(((samples[r, j + 1, 1:] - samples[r, j, 1:]) ** 2).sum()) for j in range(6)) / 18 for r in range(5)],
                            dtype=F64)
    torch.testing.assert_close(colour_variation(samples), expected, rtol=1e-12, atol=1e-12)
    flat = samples.clone()
    flat[..., 1:] = flat[:, :1, 1:]  # colour constant along each ray, σ free
    torch.testing.assert_close(colour_variation(flat), torch.zeros(5, dtype=F64), rtol=0, atol=0)


def test_negative_density_against_a_loop():
    """D = L · mean_j relu(−σ_j) on σ only (float64), zero for non-negative σ."""
    generator = torch.Generator().manual_seed(4)
    samples = torch.randn(3, 2, 6, 4, generator=generator, dtype=F64) * 5
    span = torch.rand(3, 2, 1, generator=generator, dtype=F64) * 4 + 1
    expected = torch.zeros(3, 2, dtype=F64)
    for i in range(3):
        for k in range(2):
            expected[i, k] = span[i, k, 0] * sum(max(-float(samples[i, k, j, 0]), 0.0) for j in range(6)) / 6
    torch.testing.assert_close(negative_density(samples, span), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(negative_density(samples.abs(), span), torch.zeros(3, 2, dtype=F64), rtol=0, atol=0)


def test_weight_distortion_is_the_mean_distance_between_two_points_drawn_from_the_weights():
    """Ω against ∫∫ ρ(s) ρ(s') |s − s'| ds ds' by the midpoint rule on 4,000 cells (float64), ρ = w_i / ℓ_i on section i, s the
    ray's unit length; Ω is 0 for no weight and the same for the same sections in any units of t."""
    generator = torch.Generator().manual_seed(6)
    near = torch.rand(3, 1, generator=generator, dtype=F64) + 1
    far = near + torch.rand(3, 1, generator=generator, dtype=F64) * 3 + 1
    cuts = torch.sort(torch.rand(3, 5, generator=generator, dtype=F64), -1).values
    posts = torch.cat((near, near + cuts * (far - near), far), -1)  # [3, 7]: 6 sections, first and last at near and far
    weights = torch.rand(3, 6, generator=generator, dtype=F64) / 6
    cells = 4000
    s = (torch.arange(cells, dtype=F64) + 0.5) / cells
    unit = (posts - near) / (far - near)
    for r in range(3):
        section = torch.searchsorted(unit[r, 1:-1].contiguous(), s, right=True)
        density = weights[r, section] / (unit[r, 1:] - unit[r, :-1])[section]  # ρ at each cell
        expected = (density[:, None] * density[None, :] * (s[:, None] - s[None, :]).abs()).sum() / cells ** 2
        torch.testing.assert_close(weight_distortion(weights[r], posts[r], near[r], far[r]), expected, rtol=2e-3, atol=0)
    torch.testing.assert_close(weight_distortion(torch.zeros_like(weights), posts, near, far), torch.zeros(3, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(weight_distortion(weights, 7 * posts, 7 * near, 7 * far), weight_distortion(weights, posts, near, far),
                               rtol=1e-12, atol=1e-15)
    # Weight 0.9 in one section costs less than the same weight spread evenly over all six.
    one = torch.zeros(6, dtype=F64)
    one[2] = 0.9
    assert weight_distortion(one, posts[0], near[0], far[0]) < weight_distortion(torch.full((6,), 0.15, dtype=F64), posts[0], near[0], far[0])


def test_density_disagreement_against_rays_through_each_point():
    """Δ against the raw density of a ray o' = x − 2e, t = 2 through each point x along each direction e (one point at a
    time, float64): Φ sees o and t only through o + t·e, and the own direction counts as its unit vector."""
    model = small_model(shared_trunk=True)
    rays = random_rays(n=3, seed=2)
    generator = torch.Generator().manual_seed(3)
    cross = torch.cat((torch.rand(3, 2, 1, generator=generator, dtype=F64), torch.randn(3, 2, 3, generator=generator, dtype=F64)), -1)
    span = (rays.far - rays.near)[:, 0] * rays.directions.norm(dim=-1)

    def density(x, e):
        e = e / e.norm()
        ray = Rays((x - 2 * e)[None], e[None], torch.full((1, 1), 2.0, dtype=F64), torch.full((1, 1), 6.0, dtype=F64))
        return model.field.grad(ray, torch.full((1, 1), 2.0, dtype=F64))[0, 0, 0]

    expected = torch.zeros(3, dtype=F64)
    for i in range(3):
        for p in range(2):
            t = rays.near[i, 0] + cross[i, p, 0] * (rays.far[i, 0] - rays.near[i, 0])
            x = rays.origins[i] + t * rays.directions[i]
            expected[i] += span[i] * (density(x, rays.directions[i]) - density(x, cross[i, p, 1:])).abs() / 2
    torch.testing.assert_close(density_disagreement(model.field.grad, rays, cross), expected, rtol=1e-10, atol=1e-12)
    same = torch.cat((cross[..., :1], rays.directions[:, None, :].expand(3, 2, 3) * 3), -1)  # the ray's own direction, longer
    torch.testing.assert_close(density_disagreement(model.field.grad, rays, same), torch.zeros(3, dtype=F64), rtol=0, atol=1e-12)


def test_training_renderer_keeps_its_samples_and_shifts_posts():
    """``samples`` are the grad networks at the stratified samples in order; ``post_shift`` renders the shifted sections (float64)."""
    model = small_model()
    rays, jitter, background = random_rays(), torch.rand(9, 8, 2, dtype=F64), torch.ones(3, dtype=F64)
    out = render_training(model.field.grad, model.sections, rays, background, 2, jitter=jitter)
    t = (model.sections(rays).posts[:, :-1, None] + model.sections(rays).lengths[..., None] * (torch.arange(2, dtype=F64) + jitter) / 2).flatten(-2)
    torch.testing.assert_close(out.samples, model.field.grad(rays, t), rtol=1e-12, atol=1e-12)
    u = torch.rand(9, 7, dtype=F64) - 0.5
    shifted = render_training(model.field.grad, model.sections, rays, background, 2, jitter=jitter, post_shift=u)
    expected = render_training(model.field.grad, lambda r: shift_posts(model.sections(r), u), rays, background, 2, jitter=jitter)
    torch.testing.assert_close(shifted.rgb, expected.rgb, rtol=1e-12, atol=1e-12)
    assert (shifted.rgb - out.rgb).abs().max() > 1e-6


def test_the_strata_render_is_the_training_render_on_sections_cut_m_times_finer():
    """render_strata of an M = 2 render equals the training renderer run with one sample per section on the strata, the same
    samples standing where they stood (float64); with M = 1 it is the render itself."""
    model = small_model()
    rays, jitter, background = random_rays(), torch.rand(9, 8, 2, dtype=F64), torch.rand(9, 3, dtype=F64)
    out = render_training(model.field.grad, model.sections, rays, background, 2, jitter=jitter)
    norm = rays.directions.norm(dim=-1, keepdim=True)
    fine = render_strata(out, norm, background)
    expected = render_training(model.field.grad, lambda r: strata(model.sections(r), 2), rays, background, 1, jitter=jitter.reshape(9, 16, 1))
    torch.testing.assert_close(fine.rgb, expected.rgb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fine.weights, expected.weights, rtol=1e-12, atol=1e-12)
    assert (fine.rgb - out.rgb).abs().max() > 1e-6
    single = render_training(model.field.grad, model.sections, rays, background, 1, jitter=jitter[..., :1])
    torch.testing.assert_close(render_strata(single, norm, background).rgb, single.rgb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kappa", [0.0, 0.5])
def test_the_merged_render_is_the_training_render_on_sections_twice_as_long(kappa):
    """render_merged of an M = 1 render on the strata of N/2 sections (each cut in equal halves) equals the training
    renderer run at N/2 sections with M = 2 on the same samples (float64): a merged section's mean is then the plain mean
    of its two samples. Its posts are those resample_sections gives for N/2."""
    model = small_model()
    rays, jitter, background = random_rays(), torch.rand(9, 8, 2, dtype=F64), torch.rand(9, 3, dtype=F64)
    norm = rays.directions.norm(dim=-1, keepdim=True)
    coarse = render_training(model.field.grad, model.sections, rays, background, 2, jitter=jitter, colour_by_density=kappa)
    fine = render_training(model.field.grad, lambda r: strata(model.sections(r), 2), rays, background, 1, jitter=jitter.reshape(9, 16, 1),
                           colour_by_density=kappa)
    merged = render_merged(fine, 2, norm, background, kappa)
    torch.testing.assert_close(merged.rgb, coarse.rgb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(merged.weights, coarse.weights, rtol=1e-12, atol=1e-12)
    assert (merged.rgb - fine.rgb).abs().max() > 1e-6
    torch.testing.assert_close(merged.depth, coarse.depth, rtol=1e-12, atol=1e-12)  # the same posts: every other one
    sections = model.sections(rays)
    torch.testing.assert_close(resample_sections(sections, 4).posts, sections.posts[..., ::2], rtol=0, atol=1e-12)  # as rendered at N/2
    assert render_merged(coarse, 2, norm, background, kappa).weights.shape == (9, 4)


def test_a_merged_sections_mean_weighs_its_parts_by_length():
    """Posts 0, 1, 3 (lengths 1 and 2), one sample each of raw density 0.3 and 0.6: the merged section's density is
    (1·0.3 + 2·0.6)/3 = 0.5 over [0, 3]; a factor that does not divide N is refused."""
    samples = torch.tensor([[[0.3, 0.0, 0.0, 0.0], [0.6, 1.0, -1.0, 2.0]]], dtype=F64)
    out = RenderOutput(torch.zeros(1, 3, dtype=F64), torch.zeros(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), weights=torch.empty(0),
                       samples=samples, posts=torch.tensor([[0.0, 1.0, 3.0]], dtype=F64))
    merged = render_merged(out, 2, torch.ones(1, 1, dtype=F64), torch.zeros(3, dtype=F64))
    torch.testing.assert_close(merged.weights, torch.tensor([[1 - math.exp(-0.5 * 3)]], dtype=F64), rtol=1e-12, atol=0)
    colour = torch.sigmoid(torch.tensor([2.0 / 3, -2.0 / 3, 4.0 / 3], dtype=F64))
    torch.testing.assert_close(merged.rgb, (1 - math.exp(-1.5)) * colour[None], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="does not divide"):
        render_merged(out, 3, torch.ones(1, 1, dtype=F64), torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("shared_trunk", [False, True])
def test_every_trainable_parameter_gets_a_gradient_and_only_output_biases_are_frozen(shared_trunk):
    """DistributedDataParallel runs without searching for unused parameters: this is what it relies on."""
    model = small_model(shared_trunk=shared_trunk)
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    outputs = [net.body[1][-1] for net in model.field.networks]
    assert frozen == [f"field.networks.{i}.body.layers.1.layers.{len(net.body[1]) - 1}.bias" for i, net in enumerate(model.field.networks)]
    assert all(layer.bias is not None and not layer.bias.requires_grad for layer in outputs)
    out = render_training(model.field.grad, model.sections, random_rays(), torch.ones(3, dtype=F64), 2, jitter=torch.rand(9, 8, 2, dtype=F64))
    out.rgb.sum().backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_a_window_of_sections_renders_what_lies_inside_it():
    """render_integral with ``first``/``kept`` on the exactly integrable field: where each ray's sections outside its window
    are empty (raw σ < 0), the window's K + 1 posts give the colour, opacity and depth of all N + 1; what lies outside is
    left out (a dense section before a window no longer dims it)."""
    model, rays = piecewise_model(n_rays=6, n_sections=8, seed=5)
    first, kept = torch.tensor([0, 1, 2, 3, 4, 5]), 3
    k = torch.arange(8)
    inside = (k >= first[:, None]) & (k < first[:, None] + kept)
    values = model.field.values
    values[..., 0] = torch.where(inside, values[..., 0].abs() + 0.5, torch.full_like(values[..., 0], -1.0))
    background = torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    full = render_integral(model.field.integral, model.sections, rays, background)
    windowed = render_integral(model.field.integral, model.sections, rays, background, first=first, kept=kept)
    assert windowed.weights.shape == (6, kept)
    for name in ("rgb", "acc", "depth"):
        torch.testing.assert_close(getattr(windowed, name), getattr(full, name), rtol=0, atol=1e-12)
    values[1:, :, 0] = torch.where(k == first[1:, None] - 1, 3.0, values[1:, :, 0])  # a dense section just before the window
    dimmed = render_integral(model.field.integral, model.sections, rays, background)
    assert (dimmed.rgb[1:] - full.rgb[1:]).abs().amax() > 1e-3
    again = render_integral(model.field.integral, model.sections, rays, background, first=first, kept=kept)
    torch.testing.assert_close(again.rgb, windowed.rgb, rtol=0, atol=1e-12)


def test_render_chunks_equals_one_pass():
    model = small_model()
    rays = random_rays(n=20)
    background = torch.ones(3, dtype=F64)
    whole = render_integral(model.field.integral, model.sections, rays, background)
    shapes = []

    def render(r):
        shapes.append(r.shape[0])
        return render_integral(model.field.integral, model.sections, r, background)

    chunked = render_chunks(render, rays.reshape(4, 5), chunk=3)
    assert chunked.rgb.shape == (4, 5, 3)
    assert shapes == [3] * 7  # 20 rays: six full chunks and the last padded from 2 to 3
    even = render_chunks(render, rays, chunk=8)
    assert shapes[-3:] == [7, 7, 7]  # 20 rays in three equal chunks, one ray of padding
    torch.testing.assert_close(even.rgb, whole.rgb, rtol=0, atol=1e-12)
    single = render_chunks(render, rays, chunk=64)
    assert shapes[-1] == 20  # one chunk: no padding
    torch.testing.assert_close(single.rgb, whole.rgb, rtol=0, atol=1e-12)
    torch.testing.assert_close(chunked.rgb.reshape(20, 3), whole.rgb, rtol=0, atol=1e-12)
    torch.testing.assert_close(chunked.depth.reshape(20, 1), whole.depth, rtol=0, atol=1e-12)
    for chunk in (8, 64):  # same_size: every chunk exactly `chunk` rays, even the only one
        fixed = render_chunks(render, rays, chunk=chunk, same_size=True)
        assert set(shapes[-((20 + chunk - 1) // chunk):]) == {chunk}
        torch.testing.assert_close(fixed.rgb, whole.rgb, rtol=0, atol=1e-12)


def test_integral_depth_is_the_analytic_expected_depth_of_a_piecewise_field():
    """On the exactly integrable piecewise-constant field, depth = Σ_k T_k (1 − e^{−σ_k δ_k}) t̄_k with T_k = e^{−Σ_{j<k} σ_j δ_j},
    computed here in closed form per ray (relu on σ, section midpoints t̄_k, δ_k = Δt·‖d‖)."""
    model, rays = piecewise_model(n_rays=5, n_sections=8, seed=3)
    out = render_integral(model.field.integral, model.sections, rays, torch.ones(3, dtype=F64))
    values = model.field.values.numpy()
    for r in range(5):
        norm = float(rays.directions[r].norm())
        delta, expected, optical = 0.5 * norm, 0.0, 0.0
        for k in range(8):
            sigma = max(values[r, k, 0], 0.0)
            expected += math.exp(-optical) * (1 - math.exp(-sigma * delta)) * (2.0 + 0.5 * k + 0.25)
            optical += sigma * delta
        torch.testing.assert_close(out.depth[r, 0].double(), torch.tensor(expected, dtype=F64), rtol=1e-6, atol=1e-6)


def test_refined_window_is_around_the_section_of_most_weight():
    weights = torch.tensor([[0.1, 0.7, 0.1, 0.0], [0.0, 0.0, 0.1, 0.8], [0.9, 0.0, 0.0, 0.0]])
    assert refined_window(weights, 2).tolist() == [0, 2, 0]
    assert refined_window(weights, 1).tolist() == [1, 3, 0]
    assert refined_window(weights, 3).tolist() == [0, 1, 0]


def test_refined_render_of_one_split_is_the_integral_render_and_of_all_sections_a_finer_n():
    """splits = 1 changes nothing; kept = N sections cut R ways each is the integral render at N·R (float64)."""
    model = small_model()
    with torch.no_grad():
        model.sampler.mlp[-1].weight.normal_(0, 0.5)  # non-uniform sections
    rays = random_rays()
    background = torch.tensor([0.2, 0.3, 0.4], dtype=F64)
    phi = model.field.integral
    plain = render_integral(phi, model.sections, rays, background)
    same = render_refined(phi, model.sections, rays, background, None, 1, 2)
    torch.testing.assert_close(same.rgb, plain.rgb, rtol=0, atol=0)
    finer = render_integral(phi, model.sections, rays, background, n_sections=8 * 3)
    everywhere = render_refined(phi, model.sections, rays, background, None, 3, 8)
    for field in ("rgb", "acc", "depth", "weights"):
        torch.testing.assert_close(getattr(everywhere, field), getattr(finer, field), rtol=0, atol=1e-12)


class SurfaceField(nn.Module):
    """An opaque solid from t0 on: raw σ = S behind t0 (0 before it); raw colour a in a skin [t0, t0 + d], b deeper
    inside (a value no view ever sees), 0 in front. Φ is its exact antiderivative along t."""

    def __init__(self, t0, skin, density, skin_colour, inside_colour):
        super().__init__()
        self.t0, self.skin, self.density = t0, skin, density
        self.skin_colour, self.inside_colour = skin_colour, inside_colour

    def integral(self, rays, t):
        depth = (t - self.t0).clamp_min(0)
        sigma = self.density * depth
        colour = self.skin_colour * depth.clamp_max(self.skin) + self.inside_colour * (depth - self.skin).clamp_min(0)
        return torch.stack((sigma, colour, colour, colour), -1)

    def truth(self):
        """The colour of the volume integral (activated pointwise): the skin's, then the inside's, by their opacities."""
        skin = 1 - math.exp(-self.density * self.skin)
        return torch.sigmoid(torch.tensor(self.skin_colour, dtype=F64)) * skin + torch.sigmoid(torch.tensor(self.inside_colour, dtype=F64)) * (1 - skin)


def test_refining_the_surface_section_keeps_the_inside_out_of_its_colour():
    """An opaque solid whose front face lies inside one of N = 16 equal sections on [2, 6], its skin (raw colour −4,
    dark) 0.05 thick and its inside (raw +6, never seen, so unfitted in a real scene) behind: the section's mean mixes
    them and renders light. Cut in 8 around the surface, the section that holds the face keeps most of its colour (what
    is left is the empty space in front of the face, in the same eighth), as cutting all 16 sections in 8 would, with
    Φ at 17 + 14 posts instead of 129. Unit directions, black background; the truth is integrated exactly."""
    n_rays = 5
    rays = Rays(torch.zeros(n_rays, 3, dtype=F64), torch.eye(3, dtype=F64)[torch.arange(n_rays) % 3],
                torch.full((n_rays, 1), 2.0, dtype=F64), torch.full((n_rays, 1), 6.0, dtype=F64))
    # The face sits 0.02 after the start of a section, so the section's other 0.23 lies inside.
    field = SurfaceField(t0=3.02, skin=0.05, density=200.0, skin_colour=-4.0, inside_colour=6.0)
    model = SceneModel(ModelConfig(use_sampler=False, n_sections=16)).double()
    background = torch.zeros(3, dtype=F64)
    truth = field.truth().expand(n_rays, 3)
    plain = render_integral(field.integral, model.sections, rays, background)
    refined = render_refined(field.integral, model.sections, rays, background, None, 8, 2)
    everywhere = render_integral(field.integral, model.sections, rays, background, n_sections=128)
    plain_error, refined_error = (plain.rgb - truth).abs().max(), (refined.rgb - truth).abs().max()
    assert plain_error > 0.9  # the inside shows through: nearly white instead of nearly black
    assert refined_error < plain_error / 5
    torch.testing.assert_close(refined.rgb, everywhere.rgb, rtol=0, atol=1e-12)
    torch.testing.assert_close(refined.acc, torch.ones(n_rays, 1, dtype=F64), rtol=0, atol=1e-9)


def surface_section_error(kappa: float) -> float:
    """|colour of one section − colour of 64 bins| on a ray whose section is empty on [2, 4) (colour logit +3) and dense on
    [4, 6] (σ = 50, logit −2), the colour channels carrying (σ + κ)·u when κ > 0; the two renders' opacity agrees exactly."""
    logits, sigma = torch.tensor([3.0, -2.0], dtype=F64), torch.tensor([0.0, 50.0], dtype=F64)
    scale = sigma + kappa if kappa > 0 else torch.ones(2, dtype=F64)
    values = torch.cat((sigma[:, None], (scale * logits)[:, None].expand(2, 3)), -1)[None]  # [1 ray, 2 pieces, 4]
    model = SceneModel(ModelConfig(use_sampler=False, n_sections=1, netdepth=1, netwidth=4)).double()
    model.field = PiecewiseField(values, 2.0, 6.0)
    rays = Rays(torch.zeros(1, 3, dtype=F64), torch.tensor([[0.0, 0.0, 1.0]], dtype=F64), torch.full((1, 1), 2.0, dtype=F64),
                torch.full((1, 1), 6.0, dtype=F64))
    background = torch.ones(3, dtype=F64)
    coarse = render_integral(model.field.integral, model.sections, rays, background, colour_by_density=kappa)
    fine = render_quadrature(model.field.grad, rays, background, n_samples=64, colour_by_density=kappa)
    torch.testing.assert_close(fine.rgb, torch.sigmoid(torch.tensor(-2.0, dtype=F64)).expand(1, 3), rtol=0, atol=1e-6)
    torch.testing.assert_close(coarse.acc, fine.acc, rtol=0, atol=1e-9)  # a section's optical depth is exact either way
    return (coarse.rgb - fine.rgb).abs().max().item()


def test_colour_by_density_keeps_empty_space_out_of_a_surface_sections_colour():
    """Rendered as one section, the plain mean colour mixes the empty half's unfitted colour into the surface's
    (sigmoid(0.5) against the 0.12 that 64 bins give); weighted by density (κ = 1) it stays within 0.02 of the fine render."""
    assert surface_section_error(0.0) > 0.4
    assert surface_section_error(1.0) < 0.02


def test_post_misfit_by_hand_and_only_the_inner_posts_get_its_gradient():
    """P = Σ_inner ((p − q)/span)², q the weight's quantile posts; ∂P/∂p_j = 2 (p_j − q_j)/span² inside, 0 at the ends, and
    none to the weights (float64)."""
    g = torch.Generator().manual_seed(4)
    posts = torch.sort(torch.rand(3, 8, generator=g, dtype=F64) * 5 + 1, -1).values.requires_grad_()
    weights = torch.rand(3, 7, generator=g, dtype=F64).requires_grad_()
    target = weight_quantile_posts(Sections(posts.detach()), weights.detach(), 0.25).posts
    span = posts.detach()[:, -1:] - posts.detach()[:, :1]
    misfit = post_misfit(weights, posts, 0.25)
    torch.testing.assert_close(misfit, (((posts.detach() - target) / span)[:, 1:-1] ** 2).sum(-1), rtol=1e-12, atol=0)
    misfit.sum().backward()
    expected = 2 * (posts.detach() - target) / span ** 2
    expected[:, [0, -1]] = 0
    torch.testing.assert_close(posts.grad, expected, rtol=1e-12, atol=1e-15)
    assert weights.grad is None


def test_post_misfit_alone_gathers_a_samplers_sections_on_a_surface():
    """Free section lengths fitted by Adam to post_misfit of the weights that a slab of density (σ = 200 on [0.6, 0.65] of
    [0, 1]) gives their own sections, drawn again each step: from 2 of 16 sections on the slab, most of them gather on it."""
    near, far = torch.zeros(1, 1, dtype=F64), torch.ones(1, 1, dtype=F64)
    raw = torch.zeros(1, 16, dtype=F64, requires_grad=True)
    optimizer = torch.optim.Adam([raw], lr=3e-3)

    def on_slab(posts):
        overlap = (posts[..., 1:].clamp(0.6, 0.65) - posts[..., :-1].clamp(0.6, 0.65))
        return overlap / (posts[..., 1:] - posts[..., :-1])  # each section's share of its length on the slab

    start = sections_from_lengths(raw, near, far)
    assert (on_slab(start.posts) > 0.5).sum() <= 2
    for _ in range(400):
        sections = sections_from_lengths(raw, near, far)
        sigma = 200 * on_slab(sections.posts)
        out = composite(sigma, torch.zeros(1, 16, 3, dtype=F64), sections, torch.ones(1, 1, dtype=F64), torch.ones(3, dtype=F64))
        optimizer.zero_grad()
        post_misfit(out.weights, sections.posts, 0.25).sum().backward()
        optimizer.step()
    inside = (on_slab(sections_from_lengths(raw, near, far).posts) > 0.5).sum().item()
    assert inside >= 8, inside
