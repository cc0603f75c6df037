"""Volume rendering with piecewise sections: the training, integral and quadrature renderers.

All three end in the same compositing (AutoInt eq. 7, NeRF eq. 3). For sections
k with mean density σ̄_k ≥ 0, mean colour c̄_k ∈ [0, 1] and length δ_k in
distance (Δt·‖d‖):

    α_k = 1 − exp(−σ̄_k δ_k),   T_k = exp(−Σ_{j<k} σ̄_j δ_j),   w_k = T_k α_k
    C = Σ_k w_k c̄_k + (1 − Σ_k w_k)·background

The activations come after integration, in one place (:func:`activate`):
σ̄ = relu(mean of raw σ), c̄ = sigmoid(mean of raw colour); or, with a
density weighting κ > 0 (``colour_by_density``), c̄ = sigmoid(mean of raw
colour / (σ̄ + κ)), where the colour channels carry (σ + κ)·u for a colour
logit u, so that the empty part of a section weighs κ in its colour, not its length.

* training: M stratified samples of the grad networks per section, averaged
  (a Monte Carlo estimate of the section mean);
* integral: section means (Φ(p_k) − Φ(p_{k−1}))/(p_k − p_{k−1}) from the
  integral networks at the N + 1 posts, in float32;
* refined: the integral renderer, then the few sections around each ray's
  surface cut finer (Φ at their new posts only), all composited again;
* quadrature: the grad networks at K samples per ray, each sample standing for
  its own bin: the slow reference on the same weights.
"""
from dataclasses import dataclass, replace
from typing import Optional, Protocol

import torch
from torch import Tensor

from .rays import Rays
from .sampling import (Sections, merge_order, prefix_sum, resample_sections, shift_posts, split_window, strata, stratified_samples,
                       uniform_sections, weight_quantile_posts)


@dataclass(frozen=True)
class RenderOutput:
    """What a renderer returns per ray.

    Attributes:
        rgb: [*rays, 3].
        acc: [*rays, 1] accumulated opacity Σ w_k.
        depth: [*rays, 1] expected depth Σ w_k t̄_k in t (0 where nothing is hit).
        weights: [*rays, n_sections].
        samples: [*rays, n_sections · M, 4] the raw grad-network values at the training renderer's samples, in order along
            each ray (σ in channel 0, colour in 1:4); None from the other renderers.
        posts: [*rays, n_sections + 1] the training renderer's section posts in t, those ``weights`` belong to; None from the
            other renderers.
    """

    rgb: Tensor
    acc: Tensor
    depth: Tensor
    weights: Tensor
    samples: Optional[Tensor] = None
    posts: Optional[Tensor] = None

    @property
    def disparity(self) -> Tensor:
        """[*rays, 1]: 1 / (depth / acc), NeRF's disparity map (0 where nothing is hit)."""
        return torch.where(self.acc > 1e-10, self.acc / self.depth.clamp_min(1e-10), torch.zeros_like(self.acc))


def activate(raw: Tensor, colour_by_density: float = 0.0) -> tuple:
    """Raw section means [..., 4] -> (σ̄ = relu(raw σ) [...], c̄ [..., 3]).

    κ = ``colour_by_density`` 0: c̄ = sigmoid(h̄), AutoInt's mean colour, every part of the section weighing its
    length. κ > 0: c̄ = sigmoid(h̄ / (σ̄ + κ)) = sigmoid(∫h / ∫(σ + κ)) when σ ≥ 0 on the section, h = (σ + κ)·u the
    colour channels: the mean of the colour logit u weighted by σ + κ, so a surface's colour is not diluted by the
    unfitted colour of the empty space its section also covers. Near κ = σ̄ = 0 nothing is divided by zero: κ is
    the least denominator, and where the field is empty the colour reduces to sigmoid(h̄ / κ).
    """
    sigma = torch.relu(raw[..., 0])
    if colour_by_density <= 0:
        return sigma, torch.sigmoid(raw[..., 1:])
    return sigma, torch.sigmoid(raw[..., 1:] / (sigma + colour_by_density)[..., None])


def composite(sigma: Tensor, rgb: Tensor, sections: Sections, direction_norm: Tensor, background: Tensor) -> RenderOutput:
    """Alpha-composites constant-per-section density and colour.

    Args:
        sigma: [*rays, n_sections] σ̄_k ≥ 0.
        rgb: [*rays, n_sections, 3] c̄_k.
        sections: posts [*rays, n_sections + 1] in t.
        direction_norm: [*rays, 1] ‖d‖, turning lengths in t into distances.
        background: [3] colour behind the last section.
    """
    optical = sigma * sections.lengths * direction_norm  # σ̄_k δ_k
    before = prefix_sum(optical) - optical  # Σ_{j<k} σ̄_j δ_j
    weights = torch.exp(-before) * -torch.expm1(-optical)
    acc = weights.sum(-1, keepdim=True)
    color = (weights[..., None] * rgb).sum(-2) + (1 - acc) * background
    depth = (weights * sections.midpoints).sum(-1, keepdim=True)
    return RenderOutput(color, acc, depth, weights)


class FieldFn(Protocol):
    """A radiance field along rays: raw σ and colour (grad networks) or Φ (integral networks) at t.

    ``rays`` [*rays], ``t`` [*rays, n] -> [*rays, n, 4] (σ in channel 0, colour in 1:4).
    """

    def __call__(self, rays: Rays, t: Tensor) -> Tensor: ...


class SectionsFn(Protocol):
    """The trained sections of rays (a sampling network, or uniform ones): ``rays`` [*rays] -> posts [*rays, N + 1]."""

    def __call__(self, rays: Rays) -> Sections: ...


# The renderers below, by the names configs and flags use.
RENDERERS = ("integral", "quadrature")
# K, the quadrature reference's samples per ray, unless a caller asks for another.
QUADRATURE_SAMPLES = 128
# How many sections around a ray's surface a refined render cuts, unless a caller asks for another. One: on lego's val
# views (two 400 s runs, bf16) cutting the section of most weight alone gave most of what cutting two gave in PSNR, and
# the second one's short pieces brought bf16 grain that cost SSIM (docs/QUALITY.md, eighth session).
REFINE_SECTIONS = 1


def render_training(
    grad: FieldFn, sections_fn: SectionsFn, rays: Rays, background: Tensor, samples_per_section: int,
    generator: Optional[torch.Generator] = None, jitter: Optional[Tensor] = None, sigma_noise: Optional[Tensor] = None,
    post_shift: Optional[Tensor] = None, colour_by_density: float = 0.0,
) -> RenderOutput:
    """The training renderer: grad networks at M stratified samples per section, section means.

    The samples' offsets in their strata come from ``jitter`` [*rays, N, M] in
    [0, 1) when given, else are drawn from ``generator`` (midpoints without either).
    ``sigma_noise`` [*rays, N], when given, is added to each section's raw mean
    density before the relu (NeRF's ``raw_noise_std`` regulariser, per section).
    ``post_shift`` [*rays, N − 1] in [−½, ½], when given, moves the inner posts
    (:func:`~autoint_cli.volume.sampling.shift_posts`): sections that straddle
    the trained ones, as the sampler's sections for an unseen ray may.
    The output keeps the raw samples (``samples``) and the posts for the regularisers. ``colour_by_density``: :func:`activate`'s κ.
    """
    sections = sections_fn(rays)
    if post_shift is not None:
        sections = shift_posts(sections, post_shift)
    m = samples_per_section
    t = stratified_samples(sections, m, generator, jitter)  # [*rays, N, M]
    raw = grad(rays, t.flatten(-2))  # [*rays, N·M, 4]
    means = raw.unflatten(-2, (sections.n_sections, m)).mean(-2)  # [*rays, N, 4]
    if sigma_noise is not None:
        means = torch.cat((means[..., :1] + sigma_noise[..., None], means[..., 1:]), -1)
    sigma, rgb = activate(means, colour_by_density)
    out = composite(sigma, rgb, sections, rays.directions.norm(dim=-1, keepdim=True), background)
    return replace(out, samples=raw, posts=sections.posts)


def render_strata(out: RenderOutput, direction_norm: Tensor, background: Tensor, colour_by_density: float = 0.0) -> RenderOutput:
    """The training render's samples composited again, each standing for its own stratum: N·M sections of one sample each.

    The same grad-network values as the N-section render (no new evaluations), on the finer sections
    :func:`~autoint_cli.volume.sampling.strata` gives. Its error asks the field to render well when a
    ray's sections are cut finer than the sampler's, or placed otherwise, as an unseen ray's may be.

    Args:
        out: :func:`render_training`'s output (its ``samples`` [*rays, N·M, 4] and ``posts`` [*rays, N + 1]).
        direction_norm: [*rays, 1] ‖d‖.
        background: [3], or [*rays, 3].
        colour_by_density: :func:`activate`'s κ.

    Returns:
        the composite on the N·M strata; its ``weights`` are [*rays, N·M].
    """
    n_sections = out.posts.shape[-1] - 1
    m = out.samples.shape[-2] // n_sections
    # Each stratum's mean is its one sample's value; under bf16 autocast they are composited in float32.
    sigma, rgb = activate(out.samples.to(torch.promote_types(out.samples.dtype, torch.float32)), colour_by_density)
    return composite(sigma, rgb, strata(Sections(out.posts), m), direction_norm, background)


def render_merged(out: RenderOutput, factor: int, direction_norm: Tensor, background: Tensor, colour_by_density: float = 0.0) -> RenderOutput:
    """The training render's sections merged ``factor`` at a time: N/factor sections on every factor-th post, the sections
    that rendering the same sampler at ``--n_sections N/factor`` cuts (:func:`~autoint_cli.volume.sampling.resample_sections`).

    No new evaluations: a merged section's raw mean is the length-weighted mean of its parts' sample means,

        m̄ = Σ_i ℓ_i m_i / Σ_i ℓ_i,

    the stratified estimate of its mean. Its error asks the field to render well on the coarser sections too.

    Args:
        out: :func:`render_training`'s output (its ``samples`` [*rays, N·M, 4] and ``posts`` [*rays, N + 1]).
        factor: sections merged into one; it divides N.
        direction_norm: [*rays, 1] ‖d‖.
        background: [3], or [*rays, 3].
        colour_by_density: :func:`activate`'s κ.

    Returns:
        the composite on the N/factor sections; its ``weights`` are [*rays, N/factor].
    """
    posts = out.posts
    n = posts.shape[-1] - 1
    if n % factor:
        raise ValueError(f"render_merged: {factor} does not divide the {n} sections")
    # Under bf16 autocast the samples are bf16: the means are taken and composited in float32 at least.
    samples = out.samples.to(torch.promote_types(out.samples.dtype, torch.float32))
    means = samples.unflatten(-2, (n, samples.shape[-2] // n)).mean(-2)  # [*rays, N, 4]
    lengths = (posts[..., 1:] - posts[..., :-1]).to(means.dtype).unflatten(-1, (n // factor, factor))  # [*rays, N/f, f]
    merged = (means.unflatten(-2, (n // factor, factor)) * lengths[..., None]).sum(-2) / lengths.sum(-1)[..., None]
    sigma, rgb = activate(merged, colour_by_density)
    return composite(sigma, rgb, Sections(posts[..., ::factor]), direction_norm, background)


def colour_variation(samples: Tensor) -> Tensor:
    """How much the raw colour changes along each ray: the mean squared step between neighbouring samples.

        V = 1/(3(S − 1)) Σ_{j<S−1} ‖c_{j+1} − c_j‖²

    A section's colour is the sigmoid of the *mean* raw colour over all of it,
    so raw colour behind a surface (never seen, so never fitted) enters the
    colour of any section that reaches past the surface. Small V keeps it at
    the surface's own.

    Args:
        samples: [*rays, S, 4] raw values in order along each ray (colour in 1:4), S ≥ 2.

    Returns:
        [*rays].
    """
    # Under bf16 autocast the samples are bf16: the squares are summed in float32 at least.
    colour = samples[..., 1:].to(torch.promote_types(samples.dtype, torch.float32))
    return ((colour[..., 1:, :] - colour[..., :-1, :]) ** 2).mean((-2, -1))


def negative_density(samples: Tensor, span: Tensor) -> Tensor:
    """The optical depth a ray's negative raw densities would cancel, were its samples spread evenly over it.

        D = L · 1/S Σ_j relu(−σ_j),   L = (far − near)·‖d‖

    Only the section *mean* of raw σ passes through the relu, so σ < 0 behind a
    surface (never seen, so never fitted) takes density from any section that
    reaches past the surface, and the surface turns see-through there.

    Args:
        samples: [*rays, S, 4] raw values along each ray (σ in channel 0).
        span: [*rays, 1] the ray's length L in distance (:attr:`Rays.span`).

    Returns:
        [*rays].
    """
    sigma = samples[..., 0].to(torch.promote_types(samples.dtype, torch.float32))
    return span[..., 0] * torch.relu(-sigma).mean(-1)


def density_disagreement(grad: FieldFn, rays: Rays, cross: Tensor) -> Tensor:
    """How much a ray's raw density at points along it changes when the same points are looked at from other directions.

        Δ = L · 1/P Σ_p |σ(x_p; d̂) − σ(x_p; ê_p)|,   x_p = o + t_p d,   t_p = near + u_p (far − near),   L = (far − near)·‖d‖

    σ(x; e) = ∂Φ/∂t of the ray through x along the unit direction e, at x (Φ sees o and t only through
    o + t·e, so the ray o = x, t = 0 serves). AutoInt's density is a directional derivative of a network
    conditioned on the direction, so nothing else ties the density one direction sees to what another sees;
    a physical field's does not depend on the direction at all.

    Args:
        grad: the grad networks (raw σ in channel 0).
        rays: [n_rays].
        cross: [n_rays, P, 4]: u_p ∈ [0, 1) in channel 0, the other direction e_p (any length) in 1:4.

    Returns:
        [n_rays].
    """
    u, other = cross[..., 0], cross[..., 1:]
    t = rays.near + u * (rays.far - rays.near)  # [n_rays, P]
    points = rays.origins[..., None, :] + t[..., None] * rays.directions[..., None, :]  # [n_rays, P, 3]
    own = torch.nn.functional.normalize(rays.directions, dim=-1)[..., None, :].expand_as(points)
    directions = torch.cat((own, torch.nn.functional.normalize(other, dim=-1)), -2).reshape(-1, 3)  # [n_rays·2P, 3]
    n = directions.shape[0]
    zeros = directions.new_zeros(n, 1)
    looked = Rays(torch.cat((points, points), -2).reshape(-1, 3), directions, zeros, zeros + 1)
    sigma = grad(looked, zeros)[..., 0, 0].reshape(*u.shape[:-1], 2, u.shape[-1])  # [n_rays, 2, P]
    sigma = sigma.to(torch.promote_types(sigma.dtype, torch.float32))
    return rays.span[..., 0] * (sigma[..., 0, :] - sigma[..., 1, :]).abs().mean(-1)


def weight_distortion(weights: Tensor, posts: Tensor, near: Tensor, far: Tensor) -> Tensor:
    """How spread out along each ray its section weights are (mip-NeRF 360's distortion, on piecewise-constant sections).

        Ω = Σ_i Σ_j w_i w_j |m_i − m_j| + 1/3 Σ_i w_i² ℓ_i

    in the ray's unit length s = (t − near)/(far − near): m_i and ℓ_i are section
    i's midpoint and length in s. Ω is the mean distance between two points drawn
    from the weights as a density that is uniform within each section, so it is
    small when a ray's weight sits in one short stretch (a surface) and large
    for haze spread along it. Sorted midpoints turn the double sum into
    2 Σ_i w_i (m_i Σ_{j<i} w_j − Σ_{j<i} w_j m_j), linear in N.

    Args:
        weights: [*rays, N] the sections' compositing weights.
        posts: [*rays, N + 1] increasing, in t.
        near, far: [*rays, 1].

    Returns:
        [*rays].
    """
    weights = weights.to(torch.promote_types(weights.dtype, torch.float32))
    unit = Sections(((posts - near) / (far - near)).to(weights.dtype))  # the same sections in s
    mid, length = unit.midpoints, unit.lengths
    weighted = weights * mid
    before = prefix_sum(weights) - weights  # Σ_{j<i} w_j
    weighted_before = prefix_sum(weighted) - weighted  # Σ_{j<i} w_j m_j
    across = 2.0 * (weights * (mid * before - weighted_before)).sum(-1)
    return across + (weights ** 2 * length).sum(-1) / 3.0


def post_misfit(weights: Tensor, posts: Tensor, floor: float) -> Tensor:
    """How far a ray's inner posts lie from those that would give its sections equal shares of its weight.

        E = Σ_{j=1}^{N−1} ((p_j − sg(q_j)) / (p_N − p_0))²,   q = weight_quantile_posts(p, w, α)

    with sg(·) stopping the gradient: E moves the posts (the sampler) towards
    the weight the field puts on the ray now, and nothing else; each step the
    targets are drawn again from the new weights. α (``floor``) keeps a share
    of the sections spread along the whole ray, where the weight may be wrong.

    Args:
        weights: [*rays, N] the sections' compositing weights (not differentiated).
        posts: [*rays, N + 1] increasing, in t.
        floor: α in (0, 1].

    Returns:
        [*rays].
    """
    posts = posts.to(torch.promote_types(posts.dtype, torch.float32))
    target = weight_quantile_posts(Sections(posts.detach()), weights.detach().to(posts.dtype), floor).posts
    span = posts[..., -1:] - posts[..., :1]
    return (((posts - target) / span.detach())[..., 1:-1] ** 2).sum(-1)


def window_sections(sections: Sections, first: Tensor, kept: int) -> Sections:
    """Sections first, …, first + kept − 1 of each ray: posts [*rays, N + 1] and ``first`` [*rays] (integer, at most
    N − kept) -> posts [*rays, kept + 1]."""
    index = first[..., None].long() + torch.arange(kept + 1, device=first.device)
    return Sections(sections.posts.gather(-1, index))


def render_integral(phi: FieldFn, sections_fn: SectionsFn, rays: Rays, background: Tensor, n_sections: Optional[int] = None,
                    first: Optional[Tensor] = None, kept: Optional[int] = None, colour_by_density: float = 0.0) -> RenderOutput:
    """The integral renderer: Φ at the N + 1 posts, section means by differences (float32).

    With ``first`` [*rays] and ``kept``, a window of each ray's (resampled) sections: Φ at only the kept + 1 posts of
    sections first … first + kept − 1 (:func:`window_sections`), composited from a transmittance of 1 at the first. What
    the window leaves out is left out of the colour: for rays whose weight lies inside it (the viewer's section windows).
    ``colour_by_density``: :func:`activate`'s κ.
    """
    sections = sections_fn(rays)
    if n_sections is not None:
        sections = resample_sections(sections, n_sections)
    if first is not None:
        sections = window_sections(sections, first, kept)
    return composite_phi(phi(rays, sections.posts), sections.posts, rays, background, colour_by_density)


def composite_phi(values: Tensor, posts: Tensor, rays: Rays, background: Tensor, colour_by_density: float = 0.0) -> RenderOutput:
    """Section means by differences of Φ, then :func:`composite`: values [*rays, N + 1, 4] (Φ at the posts), posts
    [*rays, N + 1]. The means are (Φ(p_k) − Φ(p_{k−1}))/(p_k − p_{k−1}), in Φ's precision (float32 or wider), activated
    with :func:`activate`'s κ = ``colour_by_density``."""
    # Differences of Φ over short sections cancel most digits: keep them in Φ's precision.
    posts = posts.to(values.dtype)
    means = (values[..., 1:, :] - values[..., :-1, :]) / (posts[..., 1:] - posts[..., :-1])[..., None]
    sigma, rgb = activate(means, colour_by_density)
    norm = rays.directions.norm(dim=-1, keepdim=True).to(values.dtype)
    return composite(sigma, rgb, Sections(posts), norm, background.to(values.dtype))


def refined_window(weights: Tensor, kept: int) -> Tensor:
    """The first of the ``kept`` sections to refine on each ray: those around the one of most weight, k* = argmax_k w_k,
    from k* − ⌊kept/2⌋ (so with kept = 2 the section before k* too, where a surface that k*'s mean hides may begin),
    moved to lie within the N sections. weights: [*rays, N] -> [*rays] long."""
    n = weights.shape[-1]
    return (weights.argmax(-1) - kept // 2).clamp(0, n - kept)


def render_refined(phi: FieldFn, sections_fn: SectionsFn, rays: Rays, background: Tensor, n_sections: Optional[int],
                   splits: int, kept: int, colour_by_density: float = 0.0) -> RenderOutput:
    """The integral renderer with the sections around each ray's surface cut finer: two passes of Φ.

    The first pass is :func:`render_integral` at N. The ``kept`` sections around its section of most weight
    (:func:`refined_window`) are then each cut into R = ``splits`` equal parts: Φ at the kept·(R − 1) new posts only,
    and all N + kept·(R − 1) sections composited again. A section that reaches past a surface averages the raw values
    behind it (never fitted) into its mean; cut finer, the part that holds the surface keeps its own. Φ is evaluated
    at N + 1 + kept·(R − 1) posts in all, against N·R + 1 for every section cut R ways. Requires 1 ≤ kept ≤ N.
    ``colour_by_density``: :func:`activate`'s κ.
    """
    sections = sections_fn(rays)
    if n_sections is not None:
        sections = resample_sections(sections, n_sections)
    n = sections.n_sections
    values = phi(rays, sections.posts)  # [*rays, N+1, 4]
    if splits == 1:
        return composite_phi(values, sections.posts, rays, background, colour_by_density)
    first = refined_window(composite_phi(values, sections.posts, rays, background, colour_by_density).weights, kept)
    extra = split_window(sections, first, kept, splits)
    order = merge_order(first, n, kept, splits)
    posts = torch.cat((sections.posts, extra), -1).gather(-1, order)
    values = torch.cat((values, phi(rays, extra)), -2)
    values = values.gather(-2, order[..., None].expand(*order.shape, values.shape[-1]))
    return composite_phi(values, posts, rays, background, colour_by_density)


def render_quadrature(grad: FieldFn, rays: Rays, background: Tensor, n_samples: int = QUADRATURE_SAMPLES,
                      generator: Optional[torch.Generator] = None, colour_by_density: float = 0.0) -> RenderOutput:
    """The quadrature reference: grad networks at K samples in equal bins of [near, far] (midpoints unless a generator jitters
    them), each activated alone with :func:`activate`'s κ = ``colour_by_density``."""
    bins = uniform_sections(rays.near, rays.far, n_samples)
    t = stratified_samples(bins, 1, generator)[..., 0]  # [*rays, K]
    sigma, rgb = activate(grad(rays, t), colour_by_density)
    return composite(sigma, rgb, bins, rays.directions.norm(dim=-1, keepdim=True), background)
