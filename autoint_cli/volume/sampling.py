"""Piecewise sections along rays: their posts, and samples inside them.

A ray's interval [near, far] is cut into N sections by N + 1 posts
near = p_0 < p_1 < … < p_N = far. Training draws M stratified samples inside
each section; integral rendering evaluates Φ at the posts themselves.
"""
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class Sections:
    """Posts of N sections per ray.

    Attributes:
        posts: [*rays, n_sections + 1], increasing along the last axis, in t.
    """

    posts: Tensor

    @property
    def n_sections(self) -> int:
        return self.posts.shape[-1] - 1

    @property
    def lengths(self) -> Tensor:
        """[*rays, n_sections] section lengths in t: p_k − p_{k−1}."""
        return self.posts[..., 1:] - self.posts[..., :-1]

    @property
    def midpoints(self) -> Tensor:
        """[*rays, n_sections]."""
        return 0.5 * (self.posts[..., 1:] + self.posts[..., :-1])


def prefix_sum(x: Tensor) -> Tensor:
    """Inclusive cumulative sum along the last axis, s_k = Σ_{j≤k} x_j, in ⌈log₂ N⌉ shifted additions.

    After the pass with shift h, entry k holds the sum of the (up to) 2h
    entries ending at k (Hillis–Steele). Along a short last axis of many rows,
    as here (N sections of every ray), this is far faster on a GPU than a scan
    kernel; the sums are the same up to the order of the additions.

    Args:
        x: [..., N].
    """
    shift = 1
    while shift < x.shape[-1]:
        x = torch.cat((x[..., :shift], x[..., shift:] + x[..., :-shift]), -1)
        shift *= 2
    return x


def uniform_sections(near: Tensor, far: Tensor, n_sections: int) -> Sections:
    """Equal sections: p_k = near + (far − near)·k/N. near, far: [*rays, 1]."""
    fractions = torch.linspace(0.0, 1.0, n_sections + 1, device=near.device, dtype=near.dtype)
    return Sections(near + (far - near) * fractions)


def sections_from_lengths(raw: Tensor, near: Tensor, far: Tensor, min_fraction: float = 1e-3) -> Sections:
    """Posts from unconstrained network outputs a_k (AutoInt's sampling network).

        ℓ_k = (far − near) · (|a_k + (far − near)/N| + ε) / Σ_j (|a_j + (far − near)/N| + ε),
        p_k = near + Σ_{j≤k} ℓ_j,

    with ε = min_fraction·(far − near)/N keeping every section longer than zero
    (section means divide by ℓ_k). An untrained network (a ≈ 0) gives nearly
    uniform sections.

    Args:
        raw: [*rays, n_sections].
        near, far: [*rays, 1].
    """
    span = far - near
    n = raw.shape[-1]
    weights = (raw + span / n).abs() + min_fraction * span / n
    lengths = span * weights / weights.sum(-1, keepdim=True)
    posts = torch.cat((near, near + prefix_sum(lengths)), -1)
    # The cumulative sum may miss far by rounding; pin the last post exactly.
    return Sections(torch.cat((posts[..., :-1], far), -1))


def weight_quantile_posts(sections: Sections, weights: Tensor, floor: float) -> Sections:
    """The posts that would give each section an equal share of the ray's weight, floored by a uniform share of its length.

        f(t) = (1 − α) w_k / (W ℓ_k) + α / (p_N − p_0)   for t in section k,   W = Σ_j w_j,
        q_j = F⁻¹(j / N),   j = 0 … N,   F(t) = ∫_{p_0}^t f,

    the weight w_k spread evenly over its section ℓ_k and mixed with a uniform
    density of mass α, so that empty stretches keep some sections (a ray with
    no weight gets equal sections). Within a section F is linear, so q_j is
    found by interpolation: q_j = p_k + ℓ_k (j/N − F(p_k)) / m_k for the
    section k whose mass m_k = F(p_{k+1}) − F(p_k) holds j/N.

    Args:
        sections: posts [*rays, N + 1], increasing.
        weights: [*rays, N] the sections' weights, ≥ 0.
        floor: α in (0, 1].

    Returns:
        posts [*rays, N + 1] with q_0 = p_0 and q_N = p_N.
    """
    posts, lengths = sections.posts, sections.lengths
    n = lengths.shape[-1]
    span = posts[..., -1:] - posts[..., :1]
    weights = weights.clamp_min(0)
    total = weights.sum(-1, keepdim=True)
    share = torch.where(total > 0, weights / total.clamp_min(torch.finfo(weights.dtype).tiny), lengths / span)
    mass = (1 - floor) * share + floor * lengths / span  # sums to 1: both parts do
    cdf = torch.cat((torch.zeros_like(mass[..., :1]), prefix_sum(mass)[..., :-1]), -1)  # F(p_k), k = 0 … N − 1
    levels = torch.arange(1, n, device=posts.device, dtype=mass.dtype) / n
    levels = levels.expand(*mass.shape[:-1], n - 1).contiguous()  # searchsorted wants its values contiguous
    k = (torch.searchsorted(cdf, levels, right=True) - 1).clamp(0, n - 1)
    start, size = cdf.gather(-1, k), mass.gather(-1, k)
    fraction = ((levels - start) / size.clamp_min(torch.finfo(mass.dtype).tiny)).clamp(0, 1)
    inner = posts.gather(-1, k) + lengths.gather(-1, k) * fraction.to(posts.dtype)
    return Sections(torch.cat((posts[..., :1], inner, posts[..., -1:]), -1))


def resample_sections(sections: Sections, n_sections: int) -> Sections:
    """N' sections from N by linear interpolation of the posts at fractional indices k·N/N'.

    Each of the N sections holds an equal share 1/N of the sampler's
    allocation; the new posts split that allocation into N' equal shares. When N'
    divides N the result is every (N/N')-th post, exactly.
    """
    n = sections.n_sections
    if n_sections == n:
        return sections
    position = torch.linspace(0.0, float(n), n_sections + 1, device=sections.posts.device, dtype=sections.posts.dtype)
    lower = position.floor().clamp(max=n - 1).long()
    frac = position - lower.to(position.dtype)
    posts = sections.posts
    left = posts[..., lower]
    right = posts[..., lower + 1]
    return Sections(left + frac * (right - left))


def shift_posts(sections: Sections, shift: Tensor) -> Sections:
    """Sections with their inner posts moved, each within the halves of its two neighbouring sections.

        p'_k = p_k + u_k (p_{k+1} − p_k) for u_k ≥ 0,   p'_k = p_k + u_k (p_k − p_{k−1}) for u_k < 0,

    k = 1 … N − 1, near and far kept. With u_k in [−½, ½] every post stays
    between the midpoints of the sections beside it, so the posts keep their order.

    Args:
        sections: posts [*rays, N + 1].
        shift: [*rays, N − 1] u_k, in [−½, ½].
    """
    posts = sections.posts
    inner = posts[..., 1:-1]
    shift = shift.to(posts.dtype)
    moved = inner + torch.where(shift >= 0, shift * (posts[..., 2:] - inner), shift * (inner - posts[..., :-2]))
    return Sections(torch.cat((posts[..., :1], moved, posts[..., -1:]), -1))


def strata(sections: Sections, n_per_section: int) -> Sections:
    """The N·M sections that M stratified samples per section stand for: each section cut into M equal strata.

        q_{kM+m} = p_k + ℓ_{k+1}·m/M,   k = 0 … N − 1, m = 0 … M − 1,   q_{NM} = p_N

    The m-th stratified sample of section k (:func:`stratified_samples`) lies in stratum kM + m.
    """
    posts = sections.posts
    offsets = torch.arange(n_per_section, device=posts.device, dtype=posts.dtype) / n_per_section
    starts = posts[..., :-1, None] + sections.lengths[..., None] * offsets  # [*rays, N, M]
    return Sections(torch.cat((starts.flatten(-2), posts[..., -1:]), -1))


def stratified_samples(
    sections: Sections, n_per_section: int, generator: Optional[torch.Generator] = None, jitter: Optional[Tensor] = None
) -> Tensor:
    """M samples in each section: t_{k,m} = p_{k−1} + ℓ_k (m + u)/M.

    u ~ U[0, 1) independently per sample when a generator is given (training),
    u = ``jitter`` when given (drawn by the caller, e.g. once for a batch that
    several processes share), u = ½ otherwise (midpoints, deterministic).

    Returns:
        [*rays, n_sections, n_per_section].
    """
    posts = sections.posts
    shape = posts.shape[:-1] + (sections.n_sections, n_per_section)
    if jitter is not None:
        if jitter.shape != shape:
            raise ValueError(f"jitter has shape {tuple(jitter.shape)}, expected {tuple(shape)}")
        u = jitter.to(posts.dtype)
    elif generator is None:
        u = torch.full(shape, 0.5, device=posts.device, dtype=posts.dtype)
    else:
        u = torch.rand(shape, generator=generator, device=posts.device, dtype=posts.dtype)
    offsets = (torch.arange(n_per_section, device=posts.device, dtype=posts.dtype) + u) / n_per_section
    return posts[..., :-1, None] + sections.lengths[..., None] * offsets


def split_window(sections: Sections, first: Tensor, kept: int, splits: int) -> Tensor:
    """The posts that cut sections first, …, first + kept − 1 of each ray into ``splits`` equal parts each.

        q_{j,r} = p_{f+j} + (p_{f+j+1} − p_{f+j})·r/R,   j = 0 … kept − 1, r = 1 … R − 1,

    f = ``first`` and R = ``splits``; the posts already there are not repeated.

    Args:
        sections: posts [*rays, N + 1].
        first: [*rays] integer, at most N − kept.

    Returns:
        [*rays, kept·(R − 1)], in order along each ray.
    """
    posts = sections.posts
    index = first[..., None].long() + torch.arange(kept, device=posts.device)
    left, right = posts.gather(-1, index), posts.gather(-1, index + 1)
    fractions = torch.arange(1, splits, device=posts.device, dtype=posts.dtype) / splits
    return (left[..., None] + (right - left)[..., None] * fractions).flatten(-2)


def merge_order(first: Tensor, n_sections: int, kept: int, splits: int) -> Tensor:
    """Where each post of a refined ray comes from: indices into cat(posts [N + 1], :func:`split_window`'s [kept·(R − 1)]).

    Position i of the refined ray (N + 1 + kept·(R − 1) posts) takes, with f = ``first`` and o = i − f:
    post i while i ≤ f; inside the window (0 < o ≤ kept·R) post f + o/R when R divides o, else the window's
    post (j, r) = (⌊o/R⌋, o mod R); after it, post i − kept·(R − 1).

    Args:
        first: [*rays] integer, at most N − kept.

    Returns:
        [*rays, N + 1 + kept·(R − 1)] long.
    """
    extra = kept * (splits - 1)
    i = torch.arange(n_sections + 1 + extra, device=first.device)
    f = first[..., None].long()
    o = i - f
    j, r = torch.div(o, splits, rounding_mode="floor"), torch.remainder(o, splits)
    inside = torch.where(r == 0, f + j, n_sections + 1 + j * (splits - 1) + r - 1)
    return torch.where(o <= 0, i, torch.where(o <= kept * splits, inside, i - extra))
