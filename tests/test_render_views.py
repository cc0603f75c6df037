"""Chunk sizes for rendering whole views."""
import logging

import pytest
import torch

from autoint_cli.autoint import Exp
from autoint_cli.autoint.fused import available as fused_available
from autoint_cli.config import ModelConfig
from autoint_cli.models import SceneModel
from autoint_cli.rays import Rays
from autoint_cli.render_views import CPU_CHUNK, chunk_for_memory, make_renderer, measure_chunk


@pytest.mark.parametrize(
    "bytes_per_ray, free, expected",
    [
        (1000.0, 2**30, 1 << 18),  # 536,870 fit in half: capped at 2^18
        (100_000.0, 2**30, 4096),  # 5,368 fit: the power of two below
        (100_000.0, 2 * 4096 * 100_000, 4096),  # exactly 4096 fit
        (1e9, 2**30, 1024),  # not even one fits: the floor, and the OOM halving takes over from there
        (0.0, 2**30, 1 << 18),
    ],
)
def test_chunk_for_memory(bytes_per_ray, free, expected):
    assert chunk_for_memory(bytes_per_ray, free) == expected


def test_chunk_for_memory_stays_within_the_fraction_of_free_memory():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        per_ray = float(torch.randint(100, 10**6, (1,), generator=generator))
        free = float(torch.randint(2**26, 2**36, (1,), generator=generator))
        n = chunk_for_memory(per_ray, free, fraction=0.5, smallest=1, largest=1 << 40)
        assert n & (n - 1) == 0 and n * per_ray <= 0.5 * free < 2 * n * per_ray


def test_measure_chunk_on_the_cpu_needs_no_probe():
    def render(rays):  # would fail if called
        raise AssertionError("the CPU path renders nothing")

    rays = Rays(torch.zeros(8, 3), torch.ones(8, 3), torch.zeros(8, 1), torch.ones(8, 1))
    assert measure_chunk(render, rays, torch.device("cpu")) == CPU_CHUNK


def test_measure_chunk_scales_the_probe_peak_to_the_free_memory(monkeypatch):
    """The CUDA path with the memory counters faked: a renderer whose peak is 2 KiB per ray."""
    state = {"allocated": 10 * 2**20, "peak": 0}
    calls = []

    def render(rays):
        calls.append((rays.shape[0], torch.compiler.is_compiling()))
        state["peak"] = state["allocated"] + 2048 * rays.shape[0]

    fake = {
        "synchronize": lambda device=None: None,
        "reset_peak_memory_stats": lambda device=None: state.update(peak=state["allocated"]),
        "memory_allocated": lambda device=None: state["allocated"],
        "max_memory_allocated": lambda device=None: state["peak"],
        "memory_reserved": lambda device=None: state["allocated"] + 2**30,
        "mem_get_info": lambda device=None: (3 * 2**30, 80 * 2**30),
    }
    for name, fn in fake.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    rays = Rays(torch.zeros(10_000, 3), torch.ones(10_000, 3), torch.zeros(10_000, 1), torch.ones(10_000, 1))
    chunk = measure_chunk(render, rays, torch.device("cuda"), probe=4096)
    assert calls == [(4096, False)]
    # 4 GiB free with the cache; half of it over 2 KiB a ray is 2^20 rays, capped at 2^18.
    assert chunk == 1 << 18
    state["peak"] = 0
    fake["mem_get_info"] = lambda device=None: (0, 80 * 2**30)
    monkeypatch.setattr(torch.cuda, "mem_get_info", fake["mem_get_info"])
    # Only the 1 GiB cache is free: 2^18 rays of 2 KiB is 512 MiB, exactly half.
    assert measure_chunk(render, rays, torch.device("cuda"), probe=4096) == 1 << 18
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: state["allocated"] + 2**28)
    assert measure_chunk(render, rays, torch.device("cuda"), probe=4096) == 1 << 16


def _fused_setup():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = SceneModel(ModelConfig(netdepth=4, netwidth=32, sampler_depth=2, sampler_width=32, n_sections=8, shared_trunk=True)).to(device).eval()
    generator = torch.Generator().manual_seed(1)
    origins = 4 * torch.nn.functional.normalize(torch.randn(300, 3, generator=generator), dim=-1)
    directions = -origins + 0.5 * torch.randn(300, 3, generator=generator)
    rays = Rays(origins, directions, torch.full((300, 1), 2.0), torch.full((300, 1), 6.0)).to(device)
    return model, rays, torch.ones(3, device=device)


@pytest.mark.parametrize("compile_mode", [None, "default"])
def test_fused_bf16_renderer_matches_the_float32_render(compile_mode):
    """make_renderer's fused path (eager, and inside the one-graph compiled renderer) against the float32 layers."""
    model, rays, background = _fused_setup()
    if not fused_available(background.device):
        pytest.skip("the fused kernel needs Triton (and CUDA, or TRITON_INTERPRET=1)")
    with torch.no_grad():
        reference = make_renderer(model, background, "integral")(rays)
        fast = make_renderer(model, background, "integral", bf16=True, compile_mode=compile_mode, fused_mlp=True)
        assert all(net._fused is not None for net in model.field.networks)
        out = fast(rays)
    # bf16 matrix products with Φ in float32, on a random (sharp) field: colours within 3e-2, 3e-3 on average. The
    # layer-by-layer bf16 render of this model is off by 3.6e-2 at most (measured).
    torch.testing.assert_close(out.rgb, reference.rgb, rtol=0, atol=3e-2)
    torch.testing.assert_close(out.acc, reference.acc, rtol=0, atol=3e-2)
    error = (out.rgb - reference.rgb).abs()
    assert 0 < error.mean() < 3e-3  # and the fused path really ran: bf16 products differ from float32


def test_make_renderer_fuses_only_bf16_integral_renders(caplog):
    model, rays, background = _fused_setup()
    make_renderer(model, background, "integral", bf16=False, fused_mlp=True)
    assert all(net._fused is None for net in model.field.networks)
    make_renderer(model, background, "quadrature", bf16=True, fused_mlp=True)
    assert all(net._fused is None for net in model.field.networks)
    with caplog.at_level(logging.INFO):
        model.field.networks[0].body.layers[1].layers[-2] = Exp()  # a last activation the kernel does not have
        make_renderer(model, background, "integral", bf16=True, fused_mlp=True)
    assert all(net._fused is None for net in model.field.networks)
    assert "fused MLP kernel" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Inductor's GPU code: CUDA only")
@pytest.mark.parametrize("bf16", [False, True])
def test_compiled_renderer_matches_eager_at_a_full_frame(bf16):
    """The one-graph renderer at 400×400 (160,000 rays a chunk, the paper-size Φ): Inductor's stride padding once broke it there."""
    from autoint_cli.data.poses import spherical_pose
    from autoint_cli.rays import Intrinsics, camera_rays

    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    model = SceneModel(ModelConfig(shared_trunk=True, n_sections=32)).to(device).eval()
    c2w = torch.from_numpy(spherical_pose(30.0, -30.0, 4.0)).float().to(device)
    rays = camera_rays(c2w, Intrinsics.from_focal(400, 400, 550.0), 2.0, 6.0).reshape(-1)
    background = torch.ones(3, device=device)
    with torch.no_grad():
        eager = make_renderer(model, background, "integral", 16, bf16=bf16, fused_mlp=True)(rays)
        compiled = make_renderer(model, background, "integral", 16, bf16=bf16, compile_mode="default", fused_mlp=True)(rays)
    torch.testing.assert_close(compiled.rgb.float(), eager.rgb.float(), rtol=0, atol=2e-2 if bf16 else 1e-4)
