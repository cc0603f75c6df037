"""Float64 references for the derivative of an integral network."""
import socket
import time
from pathlib import Path

import torch

from autoint_cli.autoint import IntegralNetwork


def autograd_dphi_dt(phi: IntegralNetwork, t: torch.Tensor, *constants: torch.Tensor) -> torch.Tensor:
    """∂Φ/∂t by reverse-mode autograd, one output channel at a time.

    Each sample's output depends only on its own t, so the gradient of the
    channel's sum w.r.t. t is the per-sample derivative.
    """
    t = t.detach().requires_grad_(True)
    out = phi(t, *constants)
    columns = []
    for k in range(out.shape[-1]):
        (g,) = torch.autograd.grad(out[..., k].sum(), t, retain_graph=True, create_graph=True)
        columns.append(g.expand(out.shape[:-1] + (1,)))
    return torch.cat(columns, dim=-1)


def jvp_dphi_dt(phi: IntegralNetwork, t: torch.Tensor, *constants: torch.Tensor) -> torch.Tensor:
    """∂Φ/∂t by torch.func.jvp in direction e_t."""
    return torch.func.jvp(lambda tt: phi(tt, *constants), (t,), (torch.ones_like(t),))[1]


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    """Elementwise agreement to ``rel`` of the largest magnitude in ``expected``.

    A relative tolerance per element would fail where the derivative crosses
    zero; scaling the absolute tolerance by the largest entry keeps the test
    as strict as ``rel`` everywhere that matters.
    """
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * max(scale, 1e-300))


# Real scenes beside the checkout (../shared/data); tests that need them skip when absent.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LEGO = SHARED_DATA / "nerf_synthetic_400" / "lego"
FERN = SHARED_DATA / "nerf_llff_data" / "fern"


def folder_state(folder: Path) -> dict:
    """Every file below ``folder`` with its size and modification time, to prove nothing was written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


# A model small enough that a training step takes milliseconds on the CPU.
TINY_MODEL = "n_sections = 4\nsamples_per_section = 2\nnetdepth = 2\nnetwidth = 16\nmultires = 3\nmultires_views = 1\nsampler_depth = 2\nsampler_width = 16\n"


def write_config(tmp_path, scene, extra=""):
    """tiny.txt in ``tmp_path``: the tiny model on ``scene``, logging to tmp_path/logs; ``extra`` lines override."""
    text = (
        f"expname = tiny\nbasedir = {tmp_path / 'logs'}\ndatadir = {scene}\ndataset_type = blender\n{TINY_MODEL}"
        "N_rand = 64\nchunk = 32\nn_iters = 6\ni_print = 2\ni_img = 3\ni_weights = 3\ni_testset = 6\ni_video = 6\n"
        "precision = fp32\nquiet = true\n" + extra
    )
    path = tmp_path / "tiny.txt"
    path.write_text(text)
    return path


def wait_for(predicate, seconds: float = 120.0) -> bool:
    """Polls ``predicate`` every 0.1 s for up to ``seconds``; its last answer."""
    deadline = time.time() + seconds
    while not predicate() and time.time() < deadline:
        time.sleep(0.1)
    return bool(predicate())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
