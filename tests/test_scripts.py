"""The scripts as a user runs them: output format, files, errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_fit_1d_prints_json_last_and_writes_plot(tmp_path):
    proc = run("scripts/fit_1d.py", "--fn", "sinc", "--steps", "40", "--range", "-0.5", "1.5", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["fn"] == "sinc" and summary["range"] == [-0.5, 1.5] and summary["steps"] == 40
    assert summary["integral_max_abs_error"] > 0 and summary["grad_rmse"] > 0 and summary["seconds"] > 0
    assert (tmp_path / "fit_1d_sinc.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fn", "tan"], "argument --fn: invalid choice: 'tan'"),
        (["--range", "1", "-1"], "--range needs A < B, got 1 -1"),
        (["--steps", "0"], "--steps must be at least 1, got 0"),
        (["--lrate", "-1"], "--lrate must be positive"),
        (["--activation", "gelu"], "argument --activation: invalid choice"),
    ],
)
def test_fit_1d_bad_arguments(tmp_path, args, message):
    proc = run("scripts/fit_1d.py", "--out", str(tmp_path), *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def test_fit_1d_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run("scripts/fit_1d.py", "--steps", "2", "--out", str(blocker / "plots"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("fit_1d: cannot write the plot under") and "Traceback" not in proc.stderr


def test_bench_autoint_quick_smoke():
    proc = run("scripts/bench_autoint.py", "--quick", "--width", "16", "--n_layers", "3", "--variants", "double_backprop", "forward_mode")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["samples"] == 2**12 and report["width"] == 16 and report["device"]
    for name in ("double_backprop", "forward_mode"):
        r = report["results"][name]
        assert r["median_ms"] > 0
        # Both compute the same ∂Φ/∂t and weight gradients to float32 rounding.
        assert r["output_err_vs_float64"] < 1e-4 and r["param_grad_err_vs_float64"] < 1e-4


@pytest.mark.parametrize("script, variants", [
    ("scripts/bench_render.py", ["eager_fp32", "eager_tf32"]),
    # without CUDA the fused kernel runs in Triton's interpreter (TRITON_INTERPRET=1, set by conftest, is inherited)
    ("scripts/bench_render.py", ["eager_fp32", "fused_bf16"]),
    ("scripts/bench_train.py", ["eager_tf32"]),
])
def test_gpu_benchmarks_quick_smoke(script, variants):
    proc = run(script, "--quick", "--variants", *variants)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["variant"] for r in report["results"]] == variants
    for r in report["results"]:
        assert (r.get("ms_per_frame") or r.get("ms_per_step")) > 0 and r["rays_per_sec"] > 0


def test_ct_sparse_view_quick(tmp_path):
    proc = run("scripts/ct_sparse_view.py", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    (row,) = report["results"]
    assert row["subsample"] == 4 and row["train_angles"] == 8
    assert set(row["autoint"]) == {"swish", "relu"} and set(row["classical"]) == {"linear", "periodic spline", "band-limited"}
    for r in [*row["classical"].values(), *row["autoint"].values()]:
        assert np.isfinite(r["sinogram_psnr"]) and np.isfinite(r["fbp_psnr"])
    assert report["steps"] == 60 and all(np.isfinite(r["train_psnr"]) for r in row["autoint"].values())
    text = (tmp_path / "report.md").read_text()
    assert "| 4 (8 angles) | linear interpolation |" in text and "## What the numbers say" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [h["step"] for h in saved["results"][0]["autoint"]["swish"]["history"]][-1] == 60
    for name in ("ct_sparse_view.png", "ct_convergence.png"):
        assert (tmp_path / name).stat().st_size > 1000
    # The fits were kept as they ended: a second run with the same settings reuses them (same figures, no fitting), and
    # one with another learning rate fits again and says what it changed.
    again = run("scripts/ct_sparse_view.py", "--quick", "--out", str(tmp_path))
    assert again.returncode == 0 and again.stdout.startswith(f"reusing 2 fit(s) kept in {tmp_path / 'fits'}")
    reused = json.loads(again.stdout.strip().splitlines()[-1])
    assert reused["reused"] == 2 and reused["results"][0]["autoint"] == report["results"][0]["autoint"]
    changed = run("scripts/ct_sparse_view.py", "--quick", "--lrate", "3e-3", "--out", str(tmp_path))
    assert changed.returncode == 0 and "reusing" not in changed.stdout
    assert "(the default settings with lrate 0.003)" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--subsample", "1"], "--subsample values must lie in [2, n_angles)"),
    (["--lrate", "0"], "--lrate must be positive, got 0.0"),
    (["--cosine", "maybe"], "argument --cosine: invalid choice: 'maybe'"),
])
def test_ct_sparse_view_bad_arguments(tmp_path, args, message):
    proc = run("scripts/ct_sparse_view.py", *args, "--out", str(tmp_path))
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.parametrize("script", ["scripts/bench_render.py", "scripts/bench_train.py"])
def test_gpu_benchmarks_size_the_networks(script):
    variant = "eager_fp32" if "render" in script else "eager_tf32"
    proc = run(script, "--quick", "--variants", variant, "--netdepth", "2", "--netwidth", "16")
    assert proc.returncode == 0, proc.stderr
    assert "2x16" in proc.stdout
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    sizes = [(report["netdepth"], report["netwidth"])] if "render" in script else [(r["netdepth"], r["netwidth"]) for r in report["results"]]
    assert sizes and all(size == (2, 16) for size in sizes)


def test_bench_render_sizes_random_weights_only(tmp_path):
    proc = run("scripts/bench_render.py", "--ckpt", str(tmp_path / "any.pt"), "--netwidth", "128")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        "bench_render: --netdepth and --netwidth size random weights; a --ckpt brings its own")
    bad = run("scripts/bench_train.py", "--quick", "--netwidth", "-8")
    assert bad.returncode == 2 and "argument --netwidth: expected a whole number above zero, got '-8'" in bad.stderr


def test_bench_render_reads_frame_sizes():
    proc = run("scripts/bench_render.py", "--resolution", "40x30", "--n_sections", "4", "--repeats", "1", "--variants", "eager_fp32")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout.strip().splitlines()[-1])["results"]
    assert (row["resolution"], row["width"], row["height"], row["rays_per_sec"] * row["ms_per_frame"] / 1e3) == ("40x30", 40, 30, pytest.approx(1200))
    bad = run("scripts/bench_render.py", "--resolution", "40y30")
    assert bad.returncode == 2 and "expected W or WxH in pixels, got '40y30'" in bad.stderr


def test_bench_distributed_on_the_cpu(tmp_path):
    from autoint_cli.cli import train_main
    from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

    from helpers import write_config

    scene = write_demo_scene(tmp_path / "tiny", DemoSceneSpec(size=12, n_train=4, n_val=1, n_test=1))
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config), "--n_iters", "2"]) == 0
    proc = run("scripts/bench_distributed.py", "--config", str(config), "--processes", "1", "2", "--steps", "6", "--print_every", "2",
               "--expdir", str(tmp_path / "logs" / "tiny"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["device"] == "cpu" and [r["processes"] for r in summary["results"]] == [1, 2]
    for row in summary["results"]:
        assert row["train_rays_per_sec"] > 0 and row["render_frames_per_sec"] > 0 and row["train_speedup"] > 0
    assert summary["results"][0]["train_speedup"] == 1.0
    assert "speedup" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_bench_fused_needs_cuda():
    proc = run("scripts/bench_fused.py")
    assert proc.returncode == 2 and "bench_fused needs a CUDA device" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_fused_bad_config():
    proc = run("scripts/bench_fused.py", "--configs", "128/8")
    assert proc.returncode == 2 and "expected BM/warps/split/fast" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_viewer_counts_the_frames_a_client_gets(tmp_path):
    """The stand-in browser speaks viser's wire format: frames come back, with the viewer's own times, skipped and not."""
    pytest.importorskip("viser", reason="viser is the viewer extra (pip install -e '.[viewer]')")
    from autoint_cli.cli import train_main
    from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

    from helpers import write_config

    scene = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=16, n_train=4, n_val=1, n_test=1))
    assert train_main(["--config", str(write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\nn_iters = 30\n"))]) == 0
    proc = run("scripts/bench_viewer.py", "frames", "--expdir", str(tmp_path / "logs" / "tiny"), "--resolution", "24x16",
               "--precision", "fp32", "--warmup", "1", "--seconds", "2", "--send_hz", "50")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["skip_empty"] for r in result["runs"]] == [True, False]
    for r in result["runs"]:
        assert r["frames_received_per_sec"] > 0 and r["sizes"] == ["24x16"] and r["render_ms_median"] > 0
    assert 0 < result["skipped_vs_full"]["rendered_share_mean"] <= 1
    assert result["direct"]["on"]["median"] > 0 and result["direct"]["off"]["median"] > 0
    bad = run("scripts/bench_viewer.py", "frames", "--expdir", str(tmp_path), "--resolution", "24")
    assert bad.returncode == 2 and "--resolution 24: expected WxH" in bad.stderr



def test_study_section_windows_reports_each_view_and_k(tiny_run):
    _, run_dir = tiny_run
    proc = run("scripts/study_section_windows.py", "--expdir", str(run_dir), "--height", "24", "--views", "0", "1",
               "--kept", "2", "8", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = result["views"]["0"] + result["views"]["1"]
    assert [row["sections_kept"] for row in rows] == [2, 8, 2, 8]
    # K = N: no window saves anything, so none is used and the frame is the same.
    assert all(row["max_diff_levels"] == 0 and row["posts_vs_all"] == pytest.approx(1.0) for row in rows[1::2])
    assert all(0 <= row["share_windowed"] <= 1 and row["posts_vs_all"] <= 1 for row in rows)


def test_study_section_means_counts_opaque_rays_and_averages_over_them(tiny_run):
    """Every 4th pixel of the 12×12 val view is 9 rays: all of them count from opacity 0 on, none above 1."""
    _, run_dir = tiny_run
    every = run("scripts/study_section_means.py", "--expdir", str(run_dir), "--split", "val", "--hit", "0", "--samples", "3",
                "--device", "cpu")
    none = run("scripts/study_section_means.py", "--expdir", str(run_dir), "--split", "val", "--hit", "1.1", "--device", "cpu")
    assert every.returncode == 0 and none.returncode == 0, every.stderr + none.stderr
    rows = json.loads(every.stdout.strip().splitlines()[-1])["views"]
    assert len(rows) == 1 and rows[0]["opaque_rays"] == 9
    assert rows[0]["colour_variation"] > 0 and rows[0]["negative_density"] >= 0
    assert json.loads(none.stdout.strip().splitlines()[-1])["views"] == [
        {"view": 0, "opaque_rays": 0, "colour_variation": None, "negative_density": None}]


def test_check_viewer_frames_compares_and_hands_over_a_new_n(tiny_run):
    """The viewer's frames against plain ones, and a new N warmed up in the background (CUDA graphs ask for it; on the CPU
    the handed-over renderer draws as the stand-in did, so the frames agree exactly)."""
    _, run_dir = tiny_run
    proc = run("scripts/check_viewer_frames.py", "--expdir", str(run_dir), "--height", "24", "--n_sections", "4",
               "--new_n", "3", "--window_sections", "2", "--precision", "fp32", "--cuda_graphs", "--every", "4", "--timeout", "120")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["against_plain"]["views"] >= 1 and result["against_plain"]["psnr_min"] > 20
    handed = result["new_n_frames"]
    assert handed["n_sections"] == 3 and not handed["still_warming"] and handed["ms_after_median"] > 0
    assert handed["after_vs_stand_in"]["max_diff_levels"] == 0


def test_bench_quality_smoke_scores_two_seeds_and_adds_to_its_json(tmp_path):
    """--smoke: the demo config, two seeds, one JSON with per-seed scores, their mean ± std and what ties it to the scene."""
    out, work, scene = tmp_path / "q.json", tmp_path / "work", tmp_path / "demo"
    # From another folder, with the demo scene not there yet: it is generated first, as autoint-train would.
    proc = run(str(ROOT / "scripts" / "bench_quality.py"), "--smoke", "--seconds", "3", "--datadir", "demo", "--workdir", "work",
               "--out", "q.json", "--commit", "abc", "--refine", "1", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    seeds = report["seeds"]
    assert list(seeds) == ["0", "1"] and report["commits"] == ["abc"] and report["settings"]["trainings_at_once"] == 1
    assert report["settings"]["i_img"] == 0 and report["settings"]["compile_cache"] == "fresh per seed"
    assert dict(line.split(" = ", 1) for line in (work / "seed0" / "args.txt").read_text().splitlines())["i_img"] == "0"
    for entry in seeds.values():
        test = entry["splits"]["test"]
        assert entry["steps"] > 0 and test["n_views"] == 8
        n16 = test["16"]
        psnrs = n16["per_view_psnr"]
        assert n16["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-3) and n16["psnr_worst"] == pytest.approx(min(psnrs), abs=1e-3)
        assert n16["psnr_worst"] <= n16["psnr_p10"] <= n16["psnr"] and n16["ms_per_frame"] > 0
        assert 0 < n16["ms_median"] <= n16["ms_slowest"]  # each view's time, kept by autoint-eval
        assert len(test["16x2"]["per_view_psnr"]) == 8 and test["16x2"]["per_view_psnr"] != psnrs  # N = 16, refined x2
    summary = report["summary"]["test"]["16"]
    values = [seeds[s]["splits"]["test"]["16"]["psnr"] for s in seeds]
    assert summary["psnr_mean"] == pytest.approx(np.mean(values)) and summary["psnr_std"] == pytest.approx(np.std(values))
    assert report["settings"]["scene_sha256"] == bench_quality_module().scene_sha256(scene)["sha256"]
    assert report["settings"]["config"] == "configs/demo.txt" and (work / "seed0" / "checkpoints").is_dir()
    assert "PSNR" in proc.stdout and "2 seeds" in proc.stdout
    # Seeds already scored are kept, not trained again; a seed trained by a call that stopped before scoring is scored only.
    (work / "seed1_test.json").unlink()
    log = (work / "seed0_train.log").stat().st_mtime_ns
    again = run("scripts/bench_quality.py", "--smoke", "--seconds", "3", "--seeds", "0", "1", "--datadir", str(scene),
                "--workdir", str(work), "--out", str(tmp_path / "again.json"), "--refine", "1", "2")
    assert again.returncode == 0, again.stderr
    assert (work / "seed0_train.log").stat().st_mtime_ns == log and (work / "seed1_test.json").is_file()
    # Scores left in the workdir under other render settings are made again, not pooled as if they were these.
    third = run("scripts/bench_quality.py", "--smoke", "--seconds", "3", "--seeds", "0", "--datadir", str(scene),
                "--workdir", str(work), "--out", str(tmp_path / "third.json"), "--refine", "1", "3")
    assert third.returncode == 0, third.stderr
    rescored = json.loads((tmp_path / "third.json").read_text())["seeds"]["0"]["splits"]["test"]
    assert set(rescored) == {"n_views", "16", "16x3"} and (work / "seed0_train.log").stat().st_mtime_ns == log
    # The same seed scored again on frames that skip empty space: no training, its own JSON, the eval flags recorded.
    skipped = run("scripts/bench_quality.py", "--smoke", "--seconds", "3", "--seeds", "0", "--datadir", str(scene),
                  "--workdir", str(work), "--out", str(tmp_path / "skip.json"), "--refine", "1", "3", "--skip_empty", "--window_sections", "2")
    assert skipped.returncode == 0, skipped.stderr
    report = json.loads((tmp_path / "skip.json").read_text())
    assert report["settings"]["skip_empty"] is True and report["settings"]["window_sections"] == 2 and "skip empty space" in skipped.stdout
    how = json.loads((work / "seed0_test_eval_args.json").read_text())
    assert how[how.index("--skip_empty"):how.index("--skip_empty") + 4] == ["--skip_empty", "true", "--window_sections", "2"]
    assert (work / "seed0_train.log").stat().st_mtime_ns == log
    # Other settings into the same JSON are refused in one line.
    other = run("scripts/bench_quality.py", "--smoke", "--seconds", "4", "--datadir", str(scene), "--workdir", str(work), "--out", str(out),
                "--refine", "1", "2")
    assert other.returncode == 1 and "holds runs with other settings (seconds)" in other.stderr and "Traceback" not in other.stderr


def test_bench_quality_asks_for_cuda_graphs_on_compiled_test_scores_only(tmp_path):
    """--cuda_graphs reaches autoint-eval for the compiled test split, never for the eager val split or an uncompiled call,
    and the settings record it (so such scores never pool with scores of calls launched kernel by kernel)."""
    import argparse

    module = bench_quality_module()
    base = dict(workdir=tmp_path, testskip=1, val_testskip=2, n_sections=[16], refine=[1], refine_sections=1, precision="bf16",
                skip_empty=True, window_sections=0)
    for graphs, compiled in ((True, True), (True, False), (False, True)):
        args = argparse.Namespace(cuda_graphs=graphs, compile=compiled, **base)
        test, val = module.eval_command(args, 0, "test"), module.eval_command(args, 0, "val")
        assert ("--cuda_graphs" in test) == (graphs and compiled) and "--cuda_graphs" not in val
        if graphs and compiled:
            assert test[test.index("--cuda_graphs") + 1] == "true"
    assert "cuda_graphs" in module.SETTINGS and module.SETTING_DEFAULTS["cuda_graphs"] is False


def test_bench_quality_trains_each_seed_with_empty_compile_caches_of_its_own(tmp_path, monkeypatch):
    """A seed trained after another on one machine must not find its kernels compiled (about 25 s of a 400 s budget)."""
    import argparse

    module = bench_quality_module()
    seen = {}

    class Done:
        returncode = 0

        def wait(self):
            return 0

    def started(command, log, env=None):
        seed = command[command.index("--seed") + 1]
        seen[seed] = {key: sorted(p.name for p in Path(value).parent.iterdir()) for key, value in env.items()}
        seen[seed]["paths"] = env
        return Done()

    stale = tmp_path / "seed1_compile_cache" / "inductor"
    stale.mkdir(parents=True)
    (stale / "kernel.py").write_text("compiled by an earlier training")
    monkeypatch.setattr(module, "run_logged", started)
    args = argparse.Namespace(at_once=False, workdir=tmp_path, config_file=Path("c.txt"), scene_dir=tmp_path, seconds=1.0, train_args=[])
    module.train_seeds(args, [0, 1], "abc")
    assert set(seen) == {"0", "1"}
    for seed, found in seen.items():
        paths = found["paths"]
        assert set(paths) == {"TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"}
        assert all(Path(p).parent == tmp_path / f"seed{seed}_compile_cache" for p in paths.values())
        assert found["TORCHINDUCTOR_CACHE_DIR"] == [], "the cache starts empty"
    assert not (tmp_path / "seed1_compile_cache").exists(), "and is removed once the seed has trained"
    assert json.loads((tmp_path / "seed1_run.json").read_text())["commit"] == "abc"


def test_bench_quality_reads_the_training_pace_from_autoint_trains_own_report_lines(tmp_path, caplog):
    """The report lines autoint-train logs without a progress bar, parsed back: the median rate after the first report (the
    machine's pace) and the first report's seconds (compilation and warm-up), from its steps, N_rand and rate."""
    import logging

    from autoint_cli.train.periodic import Reporter

    module = bench_quality_module()
    reporter = Reporter(None, None, n_rays=1000, step=0)
    with caplog.at_level(logging.INFO, logger="autoint_cli.train.periodic"):
        for step in (100, 200, 300, 400):
            reporter.report(step, 0.01, 1e-3)
    log = tmp_path / "seed0_train.log"
    log.write_text("".join(f"autoint-train: {r.getMessage()}\n" for r in caplog.records))
    rates = [float(r.getMessage().rsplit(" ", 1)[1]) for r in caplog.records]
    assert len(rates) == 4
    (tmp_path / "args.txt").write_text("N_rand = 1000\nlrate = 0.001\n")
    pace = module.training_pace(log, tmp_path / "args.txt")
    assert pace["rays_per_sec_median"] == pytest.approx(np.median(rates[1:]))
    assert pace["first_report_seconds"] == pytest.approx(100 * 1000 / rates[0], abs=0.01)
    assert module.training_pace(log, tmp_path / "missing.txt") == {}
    log.write_text(log.read_text().splitlines()[0] + "\n")
    assert module.training_pace(log, tmp_path / "args.txt") == {}  # one report: no pace after it


def test_bench_quality_pools_a_json_from_before_refine_existed(tmp_path):
    """A JSON whose settings predate --refine means R = 1 only: it pools with the defaults, not with other R values."""
    module = bench_quality_module()
    settings = {key: f"value of {key}" for key in module.SETTINGS}
    old = {k: v for k, v in settings.items() if k not in module.SETTING_DEFAULTS}
    (tmp_path / "old.json").write_text(json.dumps({"settings": old, "seeds": {"0": {"steps": 1}}}))
    assert module.earlier_seeds(tmp_path / "old.json", {**settings, **module.SETTING_DEFAULTS}) == {"0": {"steps": 1}}
    with pytest.raises(SystemExit, match=r"other settings \(refine\)"):
        module.earlier_seeds(tmp_path / "old.json", {**settings, **module.SETTING_DEFAULTS, "refine": [1, 4]})
    # Runs made since the benchmark turned TensorBoard's validation renders off trained more steps: they do not pool.
    with pytest.raises(SystemExit, match=r"other settings \(i_img\)"):
        module.earlier_seeds(tmp_path / "old.json", {**settings, **module.SETTING_DEFAULTS, "i_img": 0})


def test_bench_quality_pools_configs_that_differ_only_in_comments(tmp_path):
    """A config whose comment lines changed (say, to quote a newer figure) trains the same: its runs pool; a changed key does not."""
    module = bench_quality_module()
    settings = {key: f"value of {key}" for key in module.SETTINGS}
    text = "# After 400 s: 24.79 dB\nexpname = lego\nlrate = 1e-3\n"
    (tmp_path / "old.json").write_text(json.dumps({"settings": {**settings, "config_text": text}, "seeds": {"0": {"steps": 1}}}))
    recommented = "# After 400 s: 25.46 dB on an H100,\n# two seeds\n\nexpname =  lego\nlrate = 1e-3\n"
    assert module.earlier_seeds(tmp_path / "old.json", {**settings, "config_text": recommented}) == {"0": {"steps": 1}}
    with pytest.raises(SystemExit, match=r"other settings \(config_text\)"):
        module.earlier_seeds(tmp_path / "old.json", {**settings, "config_text": text.replace("1e-3", "2e-3")})


def test_bench_quality_merges_seeds_of_separate_calls(tmp_path):
    """--merge pools seeds from JSONs of equal settings into one with their mean ± std; other settings or a seed twice are refused."""
    module = bench_quality_module()
    settings = {key: f"value of {key}" for key in module.SETTINGS}

    def seed_json(name, seed, psnr, **changed):
        scores = {"psnr": psnr, "ssim": 0.5, "psnr_p10": psnr - 1, "psnr_worst": psnr - 2, "ms_per_frame": 10.0}
        entry = {"steps": 100 + seed, "commit": "abc", "device": "cpu", "torch": "x", "splits": {"test": {"n_views": 2, "16": scores}}}
        report = {"settings": {**settings, "config": "c.txt", "seconds": 5.0, "splits": ["test"], "trainings_at_once": 1,
                                 **changed}, "seeds": {str(seed): entry}}
        (tmp_path / name).write_text(json.dumps(report))
        return str(tmp_path / name)

    a, b = seed_json("a.json", 0, 20.0), seed_json("b.json", 1, 22.0)
    proc = run("scripts/bench_quality.py", "--merge", a, b, "--out", str(tmp_path / "ab.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "ab.json").read_text())
    assert list(report["seeds"]) == ["0", "1"] and report["summary"]["steps_mean"] == 100.5
    assert report["summary"]["test"]["16"]["psnr_mean"] == pytest.approx(21.0) and report["summary"]["test"]["16"]["psnr_std"] == pytest.approx(1.0)
    assert "not a benchmark figure" not in module.table(report) and "shared the device" not in module.table(report)
    one = {**report, "seeds": {"0": report["seeds"]["0"]}, "summary": {**report["summary"], "n_seeds": 1}}
    assert "one seed: not a benchmark figure" in module.table(one)
    shared = {**report, "settings": {**report["settings"], "trainings_at_once": 2}}
    assert "2 trainings shared the device" in module.table(shared)
    other = seed_json("c.json", 2, 21.0, seconds=7)
    for files, message in (((a, other), "other settings (seconds); it cannot be pooled with"), ((a, a), "seed 0 is in an earlier file too"),
                           ((a, str(tmp_path / "none.json")), "none.json: no such file")):
        proc = run("scripts/bench_quality.py", "--merge", *files, "--out", str(tmp_path / "x.json"))
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_bench_arms_scores_each_arm_against_the_first_and_resumes(tmp_path):
    """Two arms of the smoke benchmark, one after another: each arm's JSON trains with its own flags only, the comparison's
    differences are the arms' means less the baseline's, and a second call trains nothing again."""
    args = ("scripts/bench_arms.py", "--workdir", str(tmp_path / "arms"), "--out", str(tmp_path / "cmp.json"), "--arm", "base=",
            "--arm", "w32=--netwidth 32", "--smoke", "--seconds", "3", "--seeds", "0", "--commit", "abc")
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    comparison = json.loads((tmp_path / "cmp.json").read_text())
    assert comparison["baseline"] == "base" and [a["name"] for a in comparison["arms"]] == ["base", "w32"]
    reports = {name: json.loads((tmp_path / "arms" / f"{name}.json").read_text()) for name in ("base", "w32")}
    assert reports["base"]["settings"]["train_args"] == [] and reports["w32"]["settings"]["train_args"] == ["--netwidth", "32"]
    base, arm = (reports[n]["summary"]["test"]["16"]["psnr_mean"] for n in ("base", "w32"))
    scores = [a["scores"]["test"]["16"] for a in comparison["arms"]]
    assert scores[0]["psnr_delta"] == 0.0 and scores[1]["psnr_delta"] == pytest.approx(arm - base, abs=1e-9)
    assert comparison["arms"][1]["trainings_at_once"] == 1 and comparison["arms"][1]["flags"] == ["--netwidth", "32"]
    assert "| w32 | --netwidth 32 | 1 |" in proc.stdout and "not a benchmark figure" in proc.stdout
    log = (tmp_path / "arms" / "w32" / "seed0_train.log").stat().st_mtime_ns
    again = run(*args)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "arms" / "w32" / "seed0_train.log").stat().st_mtime_ns == log


def test_bench_arms_at_once_reports_a_failed_arm_and_compares_the_rest(tmp_path):
    proc = run("scripts/bench_arms.py", "--workdir", str(tmp_path / "arms"), "--out", str(tmp_path / "cmp.json"), "--arms_at_once",
               "--arm", "base=", "--arm", "bad=--netwidth 0", "--smoke", "--seconds", "2", "--seeds", "0", "--commit", "abc",
               "--", "--lrate", "5e-4", "--i_print", "2")
    assert proc.returncode == 1 and "bench_arms: arm bad failed (exit 1)" in proc.stderr and "Traceback" not in proc.stderr
    # Flags after -- go to every arm's training, before the arm's own.
    base = json.loads((tmp_path / "arms" / "base.json").read_text())
    assert base["settings"]["train_args"] == ["--lrate", "5e-4", "--i_print", "2"]
    # The training's own report lines give its pace (here every 2 steps).
    assert base["seeds"]["0"]["rays_per_sec_median"] > 0 and base["seeds"]["0"]["first_report_seconds"] > 0
    comparison = json.loads((tmp_path / "cmp.json").read_text())
    assert [a["name"] for a in comparison["arms"]] == ["base"] and comparison["arms"][0]["trainings_at_once"] == 2
    assert "shared the device" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("--arm", "base"), "--arm 'base': expected NAME=FLAGS"),
    (("--arm", "a/b=--lrate 1"), "--arm 'a/b=--lrate 1': expected NAME=FLAGS"),
    (("--arm", "a=", "--arm", "a=--lrate 1"), "--arm a: named twice"),
    (("--arm", "a='--lrate"), "its flags do not parse"),
    (("--arm", "a=", "--alongside", "2"), "--alongside is set per arm by bench_arms"),
])
def test_bench_arms_bad_arguments(tmp_path, args, message):
    proc = run("scripts/bench_arms.py", "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "c.json"), *args, "--smoke")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "w").exists()


def test_bench_quality_keeps_each_splits_median_and_slowest_frame_and_calls_out_a_slow_one():
    """A frame three times the median (a compile inside the timed loop, say) is named in the table; the mean alone hides
    it. Results from before autoint-eval kept each view's time have neither figure."""
    module = bench_quality_module()
    views = [{"view": i, "psnr": 25.0 + i, "ssim": 0.9, "ms": ms} for i, ms in enumerate((10.0, 11.0, 12.0, 40.0))]
    stats = module.view_stats({"psnr": 26.5, "ssim": 0.9, "ms_per_frame": 18.25, "per_image": views})
    assert stats["ms_median"] == 11.5 and stats["ms_slowest"] == 40.0
    even = module.view_stats({"psnr": 26.5, "ssim": 0.9, "ms_per_frame": 11.0, "per_image": [dict(v, ms=11.0) for v in views]})
    older = module.view_stats({"psnr": 26.5, "ssim": 0.9, "ms_per_frame": 11.0, "per_image": [{"view": 0, "psnr": 25.0, "ssim": 0.9}]})
    assert "ms_median" not in older and "ms_slowest" not in older
    report = {"seeds": {"0": {"splits": {"test": {"n_views": 4, "16": stats, "32": even}}}, "1": {"splits": {"test": {"16": older}}}}}
    assert module.slow_frames(report) == [
        "  seed 0, test N=16: slowest frame 40.0 ms, 3.5 times the median: something ran inside the timed loop"]
    # Over seeds: the median frame's mean where every seed has one, beside the mean frame that the slow one pulls up.
    two = module.summarise({"0": {"steps": 1, "splits": {"test": {"n_views": 4, "16": stats}}},
                            "1": {"steps": 3, "splits": {"test": {"n_views": 4, "16": even}}}})["test"]["16"]
    assert two["ms_median_mean"] == (11.5 + 11.0) / 2 and two["ms_per_frame_mean"] == (18.25 + 11.0) / 2
    mixed = module.summarise({"0": {"steps": 1, "splits": {"test": {"n_views": 4, "16": stats}}},
                              "1": {"steps": 3, "splits": {"test": {"n_views": 1, "16": older}}}})["test"]["16"]
    assert "ms_median_mean" not in mixed


def bench_quality_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "scripts" / "bench_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args, message", [
    ((), "--config and --seconds are needed (or --smoke)"),
    (("--config", "configs/missing.txt", "--seconds", "5"), "--config configs/missing.txt: no such file"),
    (("--smoke", "--seconds", "0"), "--seconds must be positive, got 0"),
    (("--config", "configs/lego_shared.txt", "--seconds", "5", "--datadir", "no/such/folder"), "--datadir no/such/folder: no such folder"),
])
def test_bench_quality_bad_arguments(tmp_path, args, message):
    proc = run("scripts/bench_quality.py", *args, "--out", str(tmp_path / "q.json"))
    assert proc.returncode in (1, 2) and message in proc.stderr and "Traceback" not in proc.stderr
