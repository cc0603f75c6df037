"""Section posts and the samples inside them."""
import pytest
import torch

from autoint_cli.volume.sampling import (Sections, merge_order, prefix_sum, resample_sections, sections_from_lengths, shift_posts, split_window,
                                        strata, stratified_samples, uniform_sections, weight_quantile_posts)


def bounds(n=6):
    near = torch.rand(n, 1, dtype=torch.float64) + 1
    return near, near + 2 + torch.rand(n, 1, dtype=torch.float64)


def test_uniform_sections():
    near, far = bounds()
    s = uniform_sections(near, far, 8)
    assert s.posts.shape == (6, 9) and s.n_sections == 8
    torch.testing.assert_close(s.lengths, ((far - near) / 8).expand(6, 8), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s.midpoints[:, 0:1], near + (far - near) / 16, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [0.0, 1.0, 100.0])
def test_sections_from_lengths_are_valid(scale):
    near, far = bounds()
    raw = torch.randn(6, 16, dtype=torch.float64) * scale
    s = sections_from_lengths(raw, near, far)
    assert s.posts.shape == (6, 17)
    assert (s.lengths > 0).all()
    torch.testing.assert_close(s.posts[:, :1], near, rtol=0, atol=0)
    torch.testing.assert_close(s.posts[:, -1:], far, rtol=0, atol=0)
    torch.testing.assert_close(s.lengths.sum(-1, keepdim=True), far - near, rtol=1e-12, atol=1e-12)
    if scale == 0.0:  # an untrained (zero) head gives uniform sections
        torch.testing.assert_close(s.lengths, ((far - near) / 16).expand(6, 16), rtol=1e-12, atol=1e-12)


def test_sections_from_lengths_formula():
    """ℓ_k ∝ |a_k + span/N| + ε·span/N: for a = (0, 2, −1) on [0, 3], span/N = 1, ε = 1e-3."""
    s = sections_from_lengths(torch.tensor([[0.0, 2.0, -1.0]], dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), 3.0, dtype=torch.float64))
    weights = torch.tensor([1.001, 3.001, 0.001], dtype=torch.float64)
    torch.testing.assert_close(s.lengths[0], 3 * weights / weights.sum(), rtol=1e-12, atol=1e-12)


def test_resample_by_a_divisor_keeps_every_kth_post():
    near, far = bounds()
    s = sections_from_lengths(torch.randn(6, 32, dtype=torch.float64), near, far)
    for n in (16, 8, 4, 1):
        torch.testing.assert_close(resample_sections(s, n).posts, s.posts[:, :: 32 // n], rtol=0, atol=0)
    assert resample_sections(s, 32) is s


def test_resample_to_other_counts_is_monotone_and_spans():
    near, far = bounds()
    s = sections_from_lengths(torch.randn(6, 32, dtype=torch.float64) * 3, near, far)
    for n in (5, 12, 64):
        r = resample_sections(s, n)
        assert r.posts.shape == (6, n + 1) and (r.lengths > 0).all()
        torch.testing.assert_close(r.posts[:, [0, -1]], s.posts[:, [0, -1]], rtol=0, atol=1e-12)
    # Uniform posts stay uniform at any count.
    u = uniform_sections(near, far, 32)
    torch.testing.assert_close(resample_sections(u, 5).posts, uniform_sections(near, far, 5).posts, rtol=0, atol=1e-12)


def test_shift_posts_by_hand_and_keeps_the_order():
    """Posts (0, 1, 3, 4): u = (½, −¼) moves post 1 half-way into the section after it (to 2), post 2 a quarter of the one before back (to 2.5)."""
    posts = torch.tensor([[0.0, 1.0, 3.0, 4.0]], dtype=torch.float64)
    moved = shift_posts(Sections(posts), torch.tensor([[0.5, -0.25]], dtype=torch.float64))
    torch.testing.assert_close(moved.posts, torch.tensor([[0.0, 2.0, 2.5, 4.0]], dtype=torch.float64), rtol=0, atol=1e-12)
    near, far = bounds()
    s = sections_from_lengths(torch.randn(6, 8, dtype=torch.float64) * 3, near, far)
    for u in (torch.rand(6, 7, dtype=torch.float64) - 0.5, torch.full((6, 7), 0.5, dtype=torch.float64), torch.full((6, 7), -0.5, dtype=torch.float64)):
        shifted = shift_posts(s, u)
        assert (shifted.lengths >= 0).all()
        torch.testing.assert_close(shifted.posts[:, [0, -1]], s.posts[:, [0, -1]], rtol=0, atol=0)
        # Each inner post stays between the midpoints of its two sections.
        assert ((shifted.posts[:, 1:-1] >= s.midpoints[:, :-1] - 1e-12) & (shifted.posts[:, 1:-1] <= s.midpoints[:, 1:] + 1e-12)).all()
    torch.testing.assert_close(shift_posts(s, torch.zeros(6, 7, dtype=torch.float64)).posts, s.posts, rtol=0, atol=0)


def test_stratified_samples_stay_in_their_sections():
    near, far = bounds()
    s = sections_from_lengths(torch.randn(6, 8, dtype=torch.float64), near, far)
    t = stratified_samples(s, 4, torch.Generator().manual_seed(0))
    assert t.shape == (6, 8, 4)
    lower = s.posts[:, :-1, None] + s.lengths[..., None] * torch.arange(4, dtype=torch.float64) / 4
    assert ((t >= lower) & (t < lower + s.lengths[..., None] / 4)).all()
    mid = stratified_samples(s, 4)
    torch.testing.assert_close(mid, lower + s.lengths[..., None] / 8, rtol=1e-12, atol=1e-12)
    assert not torch.equal(t, stratified_samples(s, 4, torch.Generator().manual_seed(1)))


def test_strata_cut_each_section_into_equal_parts_that_hold_its_samples():
    """Posts (0, 1, 3) and M = 2: strata (0, ½, 1, 2, 3); the m-th stratified sample of section k lies in stratum kM + m."""
    posts = torch.tensor([[0.0, 1.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(strata(Sections(posts), 2).posts, torch.tensor([[0.0, 0.5, 1.0, 2.0, 3.0]], dtype=torch.float64), rtol=0, atol=0)
    near, far = bounds()
    s = sections_from_lengths(torch.randn(6, 8, dtype=torch.float64), near, far)
    fine = strata(s, 3)
    assert fine.n_sections == 24
    torch.testing.assert_close(fine.posts[:, ::3], s.posts, rtol=0, atol=1e-12)
    t = stratified_samples(s, 3, torch.Generator().manual_seed(2)).flatten(-2)
    assert ((t >= fine.posts[:, :-1]) & (t < fine.posts[:, 1:])).all()
    torch.testing.assert_close(strata(s, 1).posts, s.posts, rtol=0, atol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 16, 17, 32, 33])
def test_prefix_sum_matches_cumsum(n):
    """The shifted-addition scan against torch.cumsum in float64, on random rows of every length class (powers of two and not)."""
    x = torch.randn(5, 7, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    torch.testing.assert_close(prefix_sum(x), torch.cumsum(x, -1), rtol=1e-12, atol=1e-12)
    # Gradients pass through too (the sampling network trains through the posts).
    x.requires_grad_(True)
    weights = torch.randn(n, dtype=torch.float64)
    (grad,) = torch.autograd.grad((prefix_sum(x) * weights).sum(), x)
    torch.testing.assert_close(grad, torch.flip(torch.cumsum(torch.flip(weights, [0]), 0), [0]).expand_as(x), rtol=1e-12, atol=1e-12)


def test_split_window_by_hand():
    """Sections [0, 1, 3, 7]: cutting sections 1 and 2 (kept 2 from 1) in 4 adds 1.5, 2, 2.5 and 4, 5, 6."""
    sections = Sections(torch.tensor([[0.0, 1.0, 3.0, 7.0]], dtype=torch.float64))
    extra = split_window(sections, torch.tensor([1]), 2, 4)
    torch.testing.assert_close(extra, torch.tensor([[1.5, 2.0, 2.5, 4.0, 5.0, 6.0]], dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("kept, splits", [(1, 2), (2, 4), (3, 3), (8, 2)])
def test_merge_order_sorts_the_posts_and_the_window(kept, splits):
    """Gathered by merge_order, the posts and the window's new ones come out as a sort of the two would put them, every
    window start from 0 to N − kept alike; each index is used once."""
    n = 8
    near, far = bounds(n - kept + 1)
    sections = sections_from_lengths(torch.randn(n - kept + 1, n, dtype=torch.float64), near, far)
    first = torch.arange(n - kept + 1)
    extra = split_window(sections, first, kept, splits)
    order = merge_order(first, n, kept, splits)
    both = torch.cat((sections.posts, extra), -1)
    assert order.shape == both.shape
    torch.testing.assert_close(both.gather(-1, order), both.sort(-1).values, rtol=0, atol=0)
    assert (order.sort(-1).values == torch.arange(both.shape[-1])).all()


def _mixed_cdf(posts, weights, floor, t):
    """F(t) of weight_quantile_posts' density, section by section in a loop (float64): the reference."""
    span = posts[-1] - posts[0]
    total = sum(weights)
    value = 0.0
    for k in range(len(weights)):
        length = posts[k + 1] - posts[k]
        share = weights[k] / total if total > 0 else length / span
        mass = (1 - floor) * share + floor * length / span
        inside = min(max(t - posts[k], 0.0), length)
        value += mass * inside / length
    return value


@pytest.mark.parametrize("floor", [0.05, 0.25, 1.0])
def test_weight_quantile_posts_cut_the_mixed_weight_into_equal_shares(floor):
    """F(q_j) = j/N for every target post, F the weight spread evenly in its section mixed with α of a uniform density
    (a loop, float64, random rays); the end posts are kept and the posts increase."""
    g = torch.Generator().manual_seed(3)
    n = 9
    posts = torch.sort(torch.rand(5, n + 1, generator=g, dtype=torch.float64) * 4 + 2, -1).values
    weights = torch.rand(5, n, generator=g, dtype=torch.float64) ** 4  # uneven, as a surface makes them
    weights[1] = 0.0
    weights[2, :] = 0.0
    weights[2, 6] = 0.7  # all of one ray's weight in one section
    target = weight_quantile_posts(Sections(posts), weights, floor).posts
    assert target.shape == posts.shape
    torch.testing.assert_close(target[:, [0, -1]], posts[:, [0, -1]], rtol=0, atol=0)
    assert (target.diff(dim=-1) > 0).all()
    for r in range(5):
        reached = torch.tensor([_mixed_cdf(posts[r].tolist(), weights[r].tolist(), floor, t) for t in target[r].tolist()], dtype=torch.float64)
        torch.testing.assert_close(reached, torch.arange(n + 1, dtype=torch.float64) / n, rtol=0, atol=1e-12)


def test_weight_quantile_posts_of_no_weight_or_all_floor_are_equal_sections():
    """A ray with no weight, or α = 1, gets N equal sections between its ends."""
    posts = torch.tensor([[0.0, 0.5, 2.0, 2.2, 4.0]], dtype=torch.float64)
    expected = torch.linspace(0, 4, 5, dtype=torch.float64)[None]
    torch.testing.assert_close(weight_quantile_posts(Sections(posts), torch.zeros(1, 4, dtype=torch.float64), 0.25).posts, expected)
    torch.testing.assert_close(weight_quantile_posts(Sections(posts), torch.rand(1, 4, dtype=torch.float64), 1.0).posts, expected)


def test_weight_quantile_posts_gather_on_a_surface():
    """All the weight in one of 32 equal sections: with α = 0.25 about three quarters of the sections fall inside it."""
    posts = torch.linspace(0.0, 1.0, 33, dtype=torch.float64)[None]
    weights = torch.zeros(1, 32, dtype=torch.float64)
    weights[0, 20] = 1.0
    target = weight_quantile_posts(Sections(posts), weights, 0.25).posts[0]
    inside = ((target > posts[0, 20]) & (target < posts[0, 21])).sum().item()
    assert 23 <= inside <= 25  # 0.75 + 0.25/32 of the mass there: 24.25 of the 32 shares
