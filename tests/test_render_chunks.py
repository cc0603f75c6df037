"""Chunks of rays: sizes that fit the GPU, measured; halving after out-of-memory; training's sub-batches."""
import logging

import pytest
import torch

from autoint_cli.render.chunks import CPU_SAMPLES, ChunkSize, chunk_for_memory, chunk_slices, measure_chunk
from autoint_cli.volume.rays import Rays
from autoint_cli.volume.rendering import RenderOutput


@pytest.mark.parametrize(
    "bytes_per_ray, free, expected",
    [
        (1000.0, 2**30, 1 << 18),  # 536,870 fit in half: capped at 2^18
        (100_000.0, 2**30, 4096),  # 5,368 fit: the power of two below
        (100_000.0, 2 * 4096 * 100_000, 4096),  # exactly 4096 fit
        (1e6, 2**30, 512),  # 536 fit: fewer than the floor of 1024, so the power of two below
        (0.0, 2**30, 1 << 18),
    ],
)
def test_chunk_for_memory(bytes_per_ray, free, expected):
    assert chunk_for_memory(bytes_per_ray, free) == expected


def test_chunk_for_memory_refuses_a_ray_that_does_not_fit():
    with pytest.raises(MemoryError, match="one ray needs about 2 GiB, more than the 0.5 GiB"):
        chunk_for_memory(2.0 * 2**30, 2**30)


def test_chunk_for_memory_stays_within_the_fraction_of_free_memory():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        per_ray = float(torch.randint(100, 10**6, (1,), generator=generator))
        free = float(torch.randint(2**26, 2**36, (1,), generator=generator))
        n = chunk_for_memory(per_ray, free, fraction=0.5, largest=1 << 40)
        assert n & (n - 1) == 0 and n * per_ray <= 0.5 * free < 2 * n * per_ray


def test_measure_chunk_on_the_cpu_needs_no_probe():
    def render(rays):  # would fail if called
        raise AssertionError("the CPU path renders nothing")

    rays = Rays(torch.zeros(8, 3), torch.ones(8, 3), torch.zeros(8, 1), torch.ones(8, 1))
    assert measure_chunk(render, rays, torch.device("cpu")) == CPU_SAMPLES // 17 == 32768
    # N = 100,000 sections: chunks of 4 rays, not 32768 rays of 100,001 evaluations each.
    assert measure_chunk(render, rays, torch.device("cpu"), samples_per_ray=100_001) == 4
    assert measure_chunk(render, rays, torch.device("cpu"), samples_per_ray=9) == 32768  # N = 8: the power of two below 61,895


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


def test_rendering_retries_with_a_halved_chunk_after_out_of_memory(caplog):
    calls = []

    def picky(rays):
        calls.append(rays.shape[0])
        if rays.shape[0] > 5:
            raise torch.cuda.OutOfMemoryError("simulated")
        return RenderOutput(rays.origins, rays.near, rays.far, torch.empty(0))

    rays = Rays(torch.arange(48.0).reshape(16, 3), torch.ones(16, 3), torch.zeros(16, 1), torch.ones(16, 1))
    size = ChunkSize(16)
    with caplog.at_level(logging.WARNING):
        out = size.render(picky, rays)
    assert size.rays == 4 and calls[:2] == [16, 8]
    torch.testing.assert_close(out.rgb, rays.origins, rtol=0, atol=0)
    assert caplog.text.count("out of GPU memory while rendering; retrying with chunk") == 2


@pytest.mark.parametrize("n, chunk, expected", [(10, 4, [(0, 4), (4, 8), (8, 10)]), (8, 4, [(0, 4), (4, 8)]), (3, 8, [(0, 3)]), (0, 4, [])])
def test_chunk_slices(n, chunk, expected):
    assert [(s.start, s.stop) for s in chunk_slices(n, chunk)] == expected
