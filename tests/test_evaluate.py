"""autoint-eval's measurements: here, frames that skip empty space are scored as drawn."""
import json
from dataclasses import replace

import pytest
import torch

import autoint_cli.render.skipping as skipping_module

from autoint_cli.cli import eval_main
from autoint_cli.render.renderer import Renderer, RenderSettings
from autoint_cli.render.skipping import render_skipping_empty
from autoint_cli.render.views import view_rays
from autoint_cli.runs.loader import load_run
from autoint_cli.utils.metrics import psnr

CPU = torch.device("cpu")


def test_eval_skipping_empty_space_scores_the_skipped_frames(tiny_run, tmp_path):
    """--skip_empty: each view's PSNR is that of the frame render_skipping_empty draws (first pass, section windows of
    --window_sections), which here differs from the plain frame, so a plain render scored instead would fail."""
    _, run_dir = tiny_run
    out = tmp_path / "m.json"
    assert eval_main(["--expdir", str(run_dir), "--n_sections", "4", "--quadrature_samples", "0", "--skip_empty", "true",
                      "--window_sections", "2", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["skip_empty"] is True and metrics["window_sections"] == 2
    run = load_run(run_dir, CPU)
    renderer = Renderer(run.model, torch.tensor(run.scene.background), RenderSettings(n_sections=4))
    differs = []
    for view, scored in zip(run.scene.i_test, metrics["results"][0]["per_image"]):
        rays = view_rays(run.scene, run.scene.c2w[view], CPU)
        with torch.no_grad():
            frame, plain = render_skipping_empty(renderer, rays, window=2), renderer.render(rays)
        target = run.scene.images[view].numpy()
        assert scored["psnr"] == pytest.approx(psnr(frame.rgb.float().numpy(), target), abs=1e-4)
        differs.append(not torch.equal(frame.rgb, plain.rgb))
    assert any(differs)
    assert "empty space skipped (section windows of 2)" in out.with_suffix(".md").read_text()


def test_eval_draws_every_view_through_the_skipping_path_when_asked(tiny_run, tmp_path, monkeypatch):
    """The frames scored are those the skipping path returns (here: a blank one, which scores far from any trained frame),
    drawn with the first pass's block, eagerly (no pieces on the CPU) and with the window asked for; without
    --skip_empty it is never called."""
    _, run_dir = tiny_run
    calls = []
    real = skipping_module.render_skipping_empty

    def blank(renderer, rays, block=4, by="acc", pieces=False, window=None, whole_first_pass=False):
        calls.append((block, by, pieces, window, whole_first_pass))
        out = real(renderer, rays, block, by=by, pieces=pieces, window=window, whole_first_pass=whole_first_pass)
        return replace(out, rgb=torch.zeros_like(out.rgb))

    monkeypatch.setattr(skipping_module, "render_skipping_empty", blank)
    out = tmp_path / "m.json"
    argv = ["--expdir", str(run_dir), "--n_sections", "4", "--quadrature_samples", "0", "--out", str(out)]
    assert eval_main(argv) == 0 and calls == []
    assert eval_main(argv + ["--skip_empty", "true", "--window_sections", "3"]) == 0
    run = load_run(run_dir, CPU)
    # each view, and the untimed warm-up; an evaluation's frames share one size, so its first pass is one piece
    assert calls == [(4, "acc", False, 3, True)] * (len(run.scene.i_test) + 1)
    assert json.loads(out.read_text())["whole_first_pass"] is True
    for view, scored in zip(run.scene.i_test, json.loads(out.read_text())["results"][0]["per_image"]):
        target = run.scene.images[view].numpy()
        assert scored["psnr"] == pytest.approx(psnr(0 * target, target), abs=1e-6)


def test_eval_warms_up_every_piece_a_skipping_frame_can_meet(tiny_run, monkeypatch):
    """A renderer that takes pieces (CUDA graphs, here on the CPU, or compiled) compiles once per (function, piece
    size): the untimed warm-up must run the whole ray and its section window on both piece sizes, so that no timed frame
    meets one for the first time (on an H100 those compiles made --skip_empty frames slower than plain ones)."""
    from autoint_cli.evaluate import evaluate
    from autoint_cli.render import renderer as renderer_module
    from autoint_cli.render import views as views_module
    from autoint_cli.render.skipping import Skipping

    _, run_dir = tiny_run
    monkeypatch.setattr(skipping_module, "PIECE_RAYS", (64, 8))  # 12 x 12 views: a frame needs few large pieces, if any
    phase, seen = ["warm-up"], {"warm-up": set(), "timed": set()}
    real_call, real_timed = renderer_module.ChunkCall.__call__, views_module.timed

    def recording_call(self, rays, *per_ray):
        seen[phase[0]].add((id(self), rays.shape[0], len(per_ray)))
        return real_call(self, rays, *per_ray)

    def timed(fn, device):
        phase[0] = "timed"
        return real_timed(fn, device)

    monkeypatch.setattr(renderer_module.ChunkCall, "__call__", recording_call)
    monkeypatch.setattr(views_module, "timed", timed)
    run = load_run(run_dir, CPU)
    metrics = evaluate(run, CPU, RenderSettings(cuda_graphs=True), n_sections=(4,), quadrature_samples=0, skipping=Skipping(window=2))
    assert metrics["skip_empty"] and seen["timed"]
    # Both functions (the whole ray: no per-ray tensor; the window: its first sections) at both sizes, before any timing.
    assert {(size, windowed) for _, size, windowed in seen["warm-up"]} == {(64, 0), (8, 0), (64, 1), (8, 1)}
    assert seen["timed"] <= seen["warm-up"]
    assert all(entry["ms"] > 0 for entry in metrics["results"][0]["per_image"])
