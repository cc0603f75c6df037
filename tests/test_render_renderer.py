"""The renderer object: its settings decide everything once, and it never changes the model it was given."""
import logging
from dataclasses import replace

import pytest
import torch

from autoint_cli.autoint import Exp
from autoint_cli.autoint.fused import available as fused_available
from autoint_cli.config import EvalSpeedConfig, ModelConfig, SpeedConfig, ViewSpeedConfig, invalid_value
from autoint_cli.models import SceneModel
from autoint_cli.render.renderer import Renderer, RenderSettings, render_settings
from autoint_cli.scene.poses import spherical_pose
from autoint_cli.utils.fastpath import CudaGraphs
from autoint_cli.volume.rays import Intrinsics, Rays, camera_rays
from autoint_cli.volume.rendering import render_integral, render_quadrature, render_refined


def _setup(device=None, **overrides):
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    options = dict(netdepth=4, netwidth=32, sampler_depth=2, sampler_width=32, n_sections=8, shared_trunk=True)
    model = SceneModel(ModelConfig(**{**options, **overrides})).to(device).eval()
    generator = torch.Generator().manual_seed(1)
    origins = 4 * torch.nn.functional.normalize(torch.randn(300, 3, generator=generator), dim=-1)
    directions = -origins + 0.5 * torch.randn(300, 3, generator=generator)
    rays = Rays(origins, directions, torch.full((300, 1), 2.0), torch.full((300, 1), 6.0)).to(device)
    return model, rays, torch.ones(3, device=device)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [repr(m) for m in model.modules()]


def test_plain_renderers_equal_the_render_functions():
    """fp32, eager: the renderer is render_integral / render_quadrature of the model's own networks, bit for bit."""
    model, rays, background = _setup(torch.device("cpu"))
    with torch.no_grad():
        integral = render_integral(model.field.integral, model.sections, rays, background, 4)
        quadrature = render_quadrature(model.field.grad, rays, background, 16)
    out = Renderer(model, background, RenderSettings(n_sections=4))(rays)
    torch.testing.assert_close(out.rgb, integral.rgb, rtol=0, atol=0)
    out = Renderer(model, background, RenderSettings(renderer="quadrature", n_samples=16))(rays)
    torch.testing.assert_close(out.rgb, quadrature.rgb, rtol=0, atol=0)


def test_a_renderers_section_window_is_render_integral_on_that_window():
    """Renderer.window(K): the renderer's own settings (here fp32, eager) on K sections from a first one per ray; a window of
    all N sections from the first is the whole render."""
    model, rays, background = _setup(torch.device("cpu"))
    renderer = Renderer(model, background, RenderSettings(n_sections=4))
    first = torch.arange(300) % 3
    with torch.no_grad():
        expected = render_integral(model.field.integral, model.sections, rays, background, 4, first=first, kept=2)
    window = renderer.window(2)
    assert renderer.window(2) is window and window.measure_chunk(rays) == renderer.measure_chunk(rays)
    torch.testing.assert_close(window(rays, first).rgb, expected.rgb, rtol=0, atol=0)
    torch.testing.assert_close(window.probe(rays, first).depth, expected.depth, rtol=0, atol=0)
    whole = renderer.window(4)(rays, torch.zeros(300, dtype=torch.long))
    torch.testing.assert_close(whole.rgb, renderer(rays).rgb, rtol=0, atol=0)
    with pytest.raises(ValueError, match="section windows: the integral renderer"):
        Renderer(model, background, RenderSettings(renderer="quadrature", n_samples=8)).window(2)


def test_a_windowed_or_weighted_render_of_many_rays_halves_its_chunk_after_out_of_memory(monkeypatch, caplog):
    """Renderer.render(keep_weights=True) and SectionWindows.render: the renderer's chunks, halved for good when a chunk runs
    out of memory (simulated above 64 rays; 300 rays go in equal chunks: 150, 100, 60), with the same output."""
    model, rays, background = _setup(torch.device("cpu"))
    renderer = Renderer(model, background, RenderSettings(n_sections=4, chunk=256))
    first = torch.arange(300) % 3
    whole, windowed = renderer(rays), renderer.window(2)(rays, first)
    integral, window_fn = renderer._run.fn, renderer.window(2)._run.fn
    sizes = []

    def picky(fn):
        def render(rays, *args):
            sizes.append(rays.shape[0])
            if rays.shape[0] > 64:
                raise torch.cuda.OutOfMemoryError("simulated")
            return fn(rays, *args)
        return render

    monkeypatch.setattr(renderer._run, "fn", picky(integral))
    monkeypatch.setattr(renderer.window(2)._run, "fn", picky(window_fn))
    with caplog.at_level(logging.WARNING):
        weighted = renderer.render(rays.reshape(20, 15), keep_weights=True)
    assert renderer.chunk == 64 and sizes[:3] == [150, 100, 60] and weighted.weights.shape == (20, 15, 4)
    torch.testing.assert_close(weighted.rgb.reshape(300, 3), whole.rgb, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(weighted.weights.sum(-1).reshape(300, 1), whole.acc, rtol=1e-5, atol=1e-5)
    sizes.clear()
    renderer._chunk.rays = 256  # as if it had not run out yet
    out = renderer.window(2).render(rays, first)
    assert renderer.chunk == 64 and sizes[:3] == [150, 100, 60]
    torch.testing.assert_close(out.rgb, windowed.rgb, rtol=1e-6, atol=1e-6)
    assert caplog.text.count("retrying with chunk") == 4


def test_renderers_of_one_model_do_not_change_it_or_each_other():
    """A fused bf16 renderer built after a float32 one leaves the model, and the float32 renderer's frames, as they were."""
    model, rays, background = _setup()
    before = _state(model)
    plain = Renderer(model, background, RenderSettings())
    first = plain(rays)
    fast = Renderer(model, background, RenderSettings(precision="bf16", fused_mlp=True))
    fast(rays)
    again = plain(rays)
    torch.testing.assert_close(again.rgb, first.rgb, rtol=0, atol=0)
    after = _state(model)
    assert before[1] == after[1]
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert not plain.fused


def test_the_fused_decision_is_made_once_per_renderer(caplog):
    model, rays, background = _setup()
    expected = fused_available(background.device)
    assert not Renderer(model, background, RenderSettings(precision="fp32", fused_mlp=True)).fused
    assert not Renderer(model, background, RenderSettings(renderer="quadrature", precision="bf16", fused_mlp=True)).fused
    assert not Renderer(model, background, RenderSettings(precision="bf16", fused_mlp=False)).fused
    assert Renderer(model, background, RenderSettings(precision="bf16", fused_mlp=True)).fused == expected
    with caplog.at_level(logging.INFO):
        model.field.networks[0].body.layers[1].layers[-2] = Exp()  # a last activation the kernel does not have
        renderer = Renderer(model, background, RenderSettings(precision="bf16", fused_mlp=True))
    assert not renderer.fused
    assert "fused MLP kernel" in caplog.text


@pytest.mark.parametrize("compile_mode", [None, "default"])
def test_fused_bf16_renderer_matches_the_float32_render(compile_mode):
    """The fused path (eager, and inside the one-graph compiled renderer) against the float32 layers."""
    model, rays, background = _setup()
    if not fused_available(background.device):
        pytest.skip("the fused kernel needs Triton (and CUDA, or TRITON_INTERPRET=1)")
    reference = Renderer(model, background, RenderSettings())(rays)
    fast = Renderer(model, background, RenderSettings(precision="bf16", compile_mode=compile_mode, fused_mlp=True))
    assert fast.fused
    out = fast(rays)
    # bf16 matrix products with Φ in float32, on a random (sharp) field: colours within 3e-2, 3e-3 on average. The
    # layer-by-layer bf16 render of this model is off by 3.6e-2 at most (measured).
    torch.testing.assert_close(out.rgb, reference.rgb, rtol=0, atol=3e-2)
    torch.testing.assert_close(out.acc, reference.acc, rtol=0, atol=3e-2)
    error = (out.rgb - reference.rgb).abs()
    assert 0 < error.mean() < 3e-3  # and the fused path really ran: bf16 products differ from float32


@pytest.mark.parametrize("compile_mode", [None, "default"])
def test_fused_bf16_refined_renderer_matches_the_float32_one(compile_mode):
    """refine 3: the fused path, eager and compiled, against the float32 layers' refined render. Where bf16 moves a ray's
    section of most weight, the two cut different sections, so the bound is on nearly all rays, not every one."""
    model, rays, background = _setup()
    if not fused_available(background.device):
        pytest.skip("the fused kernel needs Triton (and CUDA, or TRITON_INTERPRET=1)")
    reference = Renderer(model, background, RenderSettings(refine=3))(rays)
    fast = Renderer(model, background, RenderSettings(precision="bf16", compile_mode=compile_mode, fused_mlp=True, refine=3))
    assert fast.fused
    error = (fast(rays).rgb - reference.rgb).abs().amax(-1)
    assert torch.quantile(error.float(), 0.98) < 3e-2 and 0 < error.mean() < 5e-3


def test_a_render_restores_the_tf32_flags_and_needs_no_grad():
    model, rays, background = _setup(torch.device("cpu"))
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        seen = []
        renderer = Renderer(model, background, RenderSettings(precision="tf32"))
        inner = renderer._run.fn
        renderer._run.fn = lambda r: seen.append((torch.backends.cuda.matmul.allow_tf32, torch.is_grad_enabled())) or inner(r)
        out = renderer(rays)
        assert seen == [(True, False)] and not out.rgb.requires_grad
        assert torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def test_render_in_chunks_uses_the_settings_chunk():
    model, rays, background = _setup(torch.device("cpu"))
    renderer = Renderer(model, background, RenderSettings(chunk=64))
    whole = Renderer(model, background, RenderSettings())(rays)
    out = renderer.render(rays.reshape(3, 100))
    assert renderer.chunk == 64 and out.rgb.shape == (3, 100, 3)
    torch.testing.assert_close(out.rgb.reshape(300, 3), whole.rgb, rtol=0, atol=1e-6)
    auto = Renderer(model, background, RenderSettings())
    assert auto.chunk is None
    auto.render(rays)
    assert auto.chunk == 32768  # measured: on the CPU, the CPU chunk


def test_settings_refuse_unknown_names():
    with pytest.raises(ValueError, match="unknown renderer"):
        RenderSettings(renderer="raymarch")
    with pytest.raises(ValueError, match="unknown precision"):
        RenderSettings(precision="fp8")
    with pytest.raises(ValueError, match="unknown compile mode"):
        RenderSettings(compile_mode="fast")
    with pytest.raises(ValueError, match="refine and refine_sections must be at least 1"):
        RenderSettings(refine=0)
    with pytest.raises(ValueError, match="only the integral renderer's sections can be refined"):
        RenderSettings(renderer="quadrature", refine=2)


def test_renderers_activate_with_the_models_colour_by_density():
    """A model trained with colour_by_density κ is rendered with it by every renderer (integral, refined, quadrature):
    bit for bit the render functions given κ, and not the plain-colour render."""
    model, rays, background = _setup(torch.device("cpu"), colour_by_density=0.5)
    with torch.no_grad():
        expected = {"integral": render_integral(model.field.integral, model.sections, rays, background, 4, colour_by_density=0.5),
                    "refined": render_refined(model.field.integral, model.sections, rays, background, 4, 3, 1, colour_by_density=0.5),
                    "quadrature": render_quadrature(model.field.grad, rays, background, 16, colour_by_density=0.5)}
        plain = render_integral(model.field.integral, model.sections, rays, background, 4)
    settings = {"integral": RenderSettings(n_sections=4), "refined": RenderSettings(n_sections=4, refine=3, refine_sections=1),
                "quadrature": RenderSettings(renderer="quadrature", n_samples=16)}
    for name, want in expected.items():
        torch.testing.assert_close(Renderer(model, background, settings[name])(rays).rgb, want.rgb, rtol=0, atol=0, msg=name)
    assert (expected["integral"].rgb - plain.rgb).abs().max() > 1e-3


def test_a_refined_renderer_is_render_refined_and_draws_no_windows():
    """refine R: the renderer is render_refined of the model's networks, bit for bit (fp32, eager); it counts Φ's extra posts
    for its chunks, keeps N as its n_sections, and refuses section windows (every pixel is drawn on all its sections)."""
    model, rays, background = _setup(torch.device("cpu"))
    with torch.no_grad():
        expected = render_refined(model.field.integral, model.sections, rays, background, 4, 3, 2)
    renderer = Renderer(model, background, RenderSettings(n_sections=4, refine=3, refine_sections=2))
    torch.testing.assert_close(renderer(rays).rgb, expected.rgb, rtol=0, atol=0)
    assert renderer.samples_per_ray == 5 + 2 * 2 and renderer.n_sections == 4 and renderer.useful_window(2) is None
    with pytest.raises(ValueError, match="section windows"):
        renderer.window(2)


def test_render_settings_from_the_speed_flags():
    speed = SpeedConfig(chunk=1024, precision=None, compile=True, compile_mode="reduce-overhead", fused_mlp=False)
    settings = render_settings(speed, "bf16", renderer="quadrature", n_samples=64)
    assert settings == RenderSettings("quadrature", None, 64, "bf16", "reduce-overhead", False, chunk=1024)
    assert render_settings(SpeedConfig(precision="fp32"), "bf16").replace(n_sections=4) == RenderSettings(n_sections=4, fused_mlp=True)
    assert render_settings(SpeedConfig(cuda_graphs=True), "bf16").cuda_graphs
    # torch.compile's graphing modes and our own CUDA graphs do not go together: refused by the settings and by the flags.
    with pytest.raises(ValueError, match="cuda_graphs"):
        RenderSettings(compile_mode="reduce-overhead", cuda_graphs=True)
    assert "--cuda_graphs" in invalid_value(replace(speed, cuda_graphs=True))
    assert invalid_value(replace(speed, cuda_graphs=True, compile_mode="default")) is None


def test_autoint_view_compiles_and_graphs_by_default_with_cuda_only():
    auto = ViewSpeedConfig()
    assert (auto.resolved(cuda=True).compile, auto.resolved(cuda=True).cuda_graphs) == (True, True)
    assert (auto.resolved(cuda=False).compile, auto.resolved(cuda=False).cuda_graphs) == (False, False)
    assert not ViewSpeedConfig(compile_mode="reduce-overhead").resolved(cuda=True).cuda_graphs  # its own graphs, then
    chosen = ViewSpeedConfig(compile=False, cuda_graphs=True, chunk=4096).resolved(cuda=True)
    assert type(chosen) is SpeedConfig and (chosen.compile, chosen.cuda_graphs, chosen.chunk) == (False, True, 4096)


def test_autoint_eval_graphs_skipping_compiled_frames_on_cuda_unless_told():
    """Skipping frames come in pieces; compiled without graphs each piece waits on the CPU (an H100: 24.5 ms plain at N = 32,
    14.2 with skipping and graphs), so eval replays them as graphs by default then, and only then."""
    auto = EvalSpeedConfig(compile=True)
    assert auto.resolved(cuda=True, skip_empty=True).cuda_graphs
    assert not auto.resolved(cuda=True, skip_empty=False).cuda_graphs  # every pixel: as before, kernel by kernel
    assert not auto.resolved(cuda=False, skip_empty=True).cuda_graphs
    assert not EvalSpeedConfig(compile=False).resolved(cuda=True, skip_empty=True).cuda_graphs
    assert not EvalSpeedConfig(compile=True, compile_mode="reduce-overhead").resolved(cuda=True, skip_empty=True).cuda_graphs
    told = EvalSpeedConfig(compile=True, cuda_graphs=False).resolved(cuda=True, skip_empty=True)
    assert type(told) is SpeedConfig and told.cuda_graphs is False and told.compile
    assert EvalSpeedConfig(cuda_graphs=True).resolved(cuda=True, skip_empty=False).cuda_graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs: CUDA only")
def test_cuda_graphs_replay_what_the_renderer_computes():
    """New rays of a captured shape, another shape, and weights changed in place: each replay gives the plain renderer's output."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = SceneModel(ModelConfig(netdepth=4, netwidth=64, n_sections=8, use_sampler=True)).to(device).eval()
    background = torch.ones(3, device=device)
    graphed = Renderer(model, background, RenderSettings(cuda_graphs=True))
    plain = Renderer(model, background, RenderSettings())
    camera = Intrinsics.from_focal(32, 32, 40.0)
    views = [camera_rays(torch.from_numpy(spherical_pose(a, -30.0, 4.0)).float().to(device), camera, 2.0, 6.0).reshape(-1)
             for a in (0.0, 40.0)]
    for rays in (views[0], views[1], views[1][:500], views[0]):
        with torch.no_grad():
            torch.testing.assert_close(graphed(rays).rgb.clone(), plain(rays).rgb, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)
        torch.testing.assert_close(graphed(views[1]).rgb.clone(), plain(views[1]).rgb, rtol=1e-5, atol=1e-6)
    assert len(graphed._run.graphs) == 2


def test_cuda_graphs_are_left_out_on_the_cpu():
    model = SceneModel(ModelConfig(netdepth=2, netwidth=16, n_sections=4)).eval()
    background = torch.ones(3)
    graphed = Renderer(model, background, RenderSettings(cuda_graphs=True))
    plain = Renderer(model, background, RenderSettings())
    rays = camera_rays(torch.eye(4)[:3], Intrinsics.from_focal(6, 6, 6.0), 2.0, 6.0)
    torch.testing.assert_close(graphed.render(rays).rgb, plain.render(rays).rgb, rtol=0, atol=0)
    with pytest.raises(ValueError, match="CUDA device"):
        CudaGraphs(lambda x: x, torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Inductor's GPU code: CUDA only")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_renderer_matches_eager_at_a_full_frame(precision):
    """The one-graph renderer at 400×400 (160,000 rays a chunk, the paper-size Φ): Inductor's stride padding once broke it there."""
    from autoint_cli.scene.poses import spherical_pose
    from autoint_cli.volume.rays import Intrinsics, camera_rays

    device = torch.device("cuda")
    model = SceneModel(ModelConfig(shared_trunk=True, n_sections=32)).to(device).eval()
    c2w = torch.from_numpy(spherical_pose(30.0, -30.0, 4.0)).float().to(device)
    rays = camera_rays(c2w, Intrinsics.from_focal(400, 400, 550.0), 2.0, 6.0).reshape(-1)
    background = torch.ones(3, device=device)
    settings = RenderSettings(n_sections=16, precision=precision, fused_mlp=True)
    eager = Renderer(model, background, settings)(rays)
    compiled = Renderer(model, background, settings.replace(compile_mode="default"))(rays)
    torch.testing.assert_close(compiled.rgb.float(), eager.rgb.float(), rtol=0, atol=2e-2 if precision == "bf16" else 1e-4)


def test_a_window_is_used_only_where_it_saves_sections():
    """Renderer.useful_window, the one test frames use: an integral renderer of more than K sections; integral_fn is public."""
    model, rays, background = _setup(torch.device("cpu"))
    eight = Renderer(model, background, RenderSettings(n_sections=8))
    assert [eight.useful_window(k) for k in (None, 3, 7, 8, 9)] == [None, 3, 7, None, None]
    assert eight.n_sections == 8 and Renderer(model, background, RenderSettings()).n_sections == model.config.n_sections
    quadrature = Renderer(model, background, RenderSettings(renderer="quadrature", n_samples=16))
    assert quadrature.n_sections is None and quadrature.useful_window(3) is None
    with pytest.raises(ValueError, match="integral_fn"):
        quadrature.integral_fn
    # The public function is the one a window compiles: all N sections from section 0 give the renderer's own image.
    with torch.no_grad():
        torch.testing.assert_close(eight.integral_fn(rays).rgb, eight(rays).rgb, rtol=0, atol=0)
