"""The three CLIs end to end on a tiny generated scene: train, resume, render, evaluate."""
import json
import logging
import re

import pytest
import torch

from autoint_cli.cli import eval_main, render_main, train_main
from autoint_cli.config import ModelConfig
from autoint_cli.runs.checkpoint import latest_checkpoint, load_checkpoint
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

from helpers import write_config


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_demo_scene(tmp_path_factory.mktemp("scene") / "tiny", DemoSceneSpec(size=12, n_train=4, n_val=1, n_test=2))


def test_train_writes_the_run_folder(tmp_path, scene, capsys):
    config = write_config(tmp_path, scene)
    assert train_main(["--config", str(config)]) == 0
    assert "tiny: step 6" in capsys.readouterr().out
    run = tmp_path / "logs" / "tiny"
    assert (run / "config.txt").read_text() == config.read_text()
    args = dict(line.split(" = ", 1) for line in (run / "args.txt").read_text().splitlines())
    assert args["n_sections"] == "4" and args["lrate"] == "0.0005" and args["expname"] == "tiny" and len(args) > 40
    assert args["val_view"] == "[-1]"  # a list as a config file writes one
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["000003.pt", "000006.pt"]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (run / "testset_000006").iterdir()) == ["disp_000.png", "disp_001.png", "rgb_000.png", "rgb_001.png"]
    assert (run / "tiny_spiral_000006_rgb.mp4").stat().st_size > 0 and (run / "tiny_spiral_000006_disp.mp4").stat().st_size > 0
    payload = load_checkpoint(run / "checkpoints" / "000006.pt")
    assert payload["step"] == 6 and payload["config"]["netwidth"] == 16 and set(payload) >= {"model", "optimizer", "rng", "config"}



@pytest.mark.parametrize("i_img, rendered", [(3, [3, 6]), (0, [])])
def test_i_img_sets_the_validation_renders_and_zero_turns_them_off(tmp_path, scene, monkeypatch, i_img, rendered):
    """i_img 0 is how a benchmark keeps TensorBoard's validation image out of its time budget."""
    from autoint_cli.train.periodic import ViewRenders

    steps = []
    monkeypatch.setattr(ViewRenders, "validation", lambda self, writer, step: steps.append(step))
    config = write_config(tmp_path, scene)
    assert train_main(["--config", str(config), "--i_img", str(i_img), "--i_testset", "0", "--i_video", "0"]) == 0
    assert steps == rendered

def test_resume_continues_from_the_saved_step(tmp_path, scene, capsys, caplog):
    config = write_config(tmp_path, scene)
    assert train_main(["--config", str(config)]) == 0
    with caplog.at_level(logging.INFO):
        assert train_main(["--config", str(config), "--n_iters", "9", "--i_testset", "0", "--i_video", "0"]) == 0
    assert "tiny: step 9" in capsys.readouterr().out
    assert "resuming tiny from step 6" in caplog.text
    assert (tmp_path / "logs" / "tiny" / "checkpoints" / "000009.pt").is_file()


def test_killed_and_resumed_run_is_bit_identical(tmp_path, scene):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = write_config(tmp_path / "a", scene)
    assert train_main(["--config", str(straight), "--i_weights", "100", "--i_testset", "0", "--i_video", "0"]) == 0
    split = write_config(tmp_path / "b", scene)
    assert train_main(["--config", str(split), "--n_iters", "3", "--i_testset", "0", "--i_video", "0"]) == 0
    assert train_main(["--config", str(split), "--i_testset", "0", "--i_video", "0"]) == 0
    a = load_checkpoint(tmp_path / "a" / "logs" / "tiny" / "checkpoints" / "000006.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "logs" / "tiny" / "checkpoints" / "000006.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_random_background_runs_resume_bit_identically(tmp_path, scene):
    """random_bkgd (a config key and a flag): the colours come from the run's own generator, so a resumed run draws the same ones."""
    quiet = ["--i_testset", "0", "--i_video", "0"]
    for name in ("a", "b", "plain"):
        (tmp_path / name).mkdir()
    straight = write_config(tmp_path / "a", scene, "random_bkgd = true\n")
    assert train_main(["--config", str(straight), "--i_weights", "100", *quiet]) == 0
    split = write_config(tmp_path / "b", scene)
    assert train_main(["--config", str(split), "--random_bkgd", "--n_iters", "3", *quiet]) == 0
    assert train_main(["--config", str(split), "--random_bkgd", *quiet]) == 0
    plain = write_config(tmp_path / "plain", scene)
    assert train_main(["--config", str(plain), "--i_weights", "100", *quiet]) == 0
    a, b, c = (load_checkpoint(tmp_path / n / "logs" / "tiny" / "checkpoints" / "000006.pt") for n in ("a", "b", "plain"))
    assert a["config"]["random_bkgd"] is True and c["config"]["random_bkgd"] is False
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])


def test_render_and_eval_outputs(tmp_path, scene, capsys):
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    run = tmp_path / "logs" / "tiny"

    assert render_main(["--expdir", str(run), "--split", "path", "--n_sections", "8", "--max_views", "5"]) == 0
    out = run / "render_path_000006"
    assert len(list(out.glob("rgb_*.png"))) == 5 and len(list(out.glob("disp_*.png"))) == 5
    assert (out / "rgb.mp4").is_file() and (out / "disp.mp4").is_file()
    assert "5 path views, integral N=8:" in capsys.readouterr().out

    assert render_main(["--expdir", str(run), "--renderer", "quadrature", "--n_samples", "16", "--out", str(tmp_path / "q")]) == 0
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["disp_000.png", "disp_001.png", "rgb_000.png", "rgb_001.png"]

    assert eval_main(["--expdir", str(run), "--n_sections", "2", "4", "--quadrature_samples", "16"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {k: metrics[k] for k in ("scene", "expname", "step", "split", "n_views", "resolution")} == {
        "scene": "tiny", "expname": "tiny", "step": 6, "split": "test", "n_views": 2, "resolution": [12, 12]}
    assert metrics["device"].startswith("cpu")
    assert [(r["renderer"], r.get("n_sections"), r.get("n_samples")) for r in metrics["results"]] == [
        ("integral", 2, None), ("integral", 4, None), ("quadrature", None, 16)]
    for r in metrics["results"]:
        assert {"psnr", "psnr_std", "ssim", "lpips", "ms_per_frame", "rays_per_sec", "per_image"} <= set(r)
        assert [e["view"] for e in r["per_image"]] == [0, 1] and all({"psnr", "ssim", "ms"} <= set(e) for e in r["per_image"])
        assert abs(r["psnr"] - sum(e["psnr"] for e in r["per_image"]) / 2) < 1e-9
        assert r["lpips"] is not None or "lpips_note" in r
        assert r["ms_per_frame"] > 0 and r["rays_per_sec"] == pytest.approx(144 / (r["ms_per_frame"] / 1e3))
        assert r["ms_per_frame"] == pytest.approx(sum(e["ms"] for e in r["per_image"]) / 2)  # the mean of the views' times
    table = (run / "metrics.md").read_text()
    assert "| integral N=4 |" in table and "| quadrature K=16 |" in table
    assert (run / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"

    # A refined N next to the plain one: its own row, its own label, R and the sections cut recorded.
    assert eval_main(["--expdir", str(run), "--n_sections", "4", "--refine", "1", "3", "--refine_sections", "1", "--quadrature_samples", "0",
                      "--out", str(tmp_path / "refined.json")]) == 0
    refined = json.loads((tmp_path / "refined.json").read_text())["results"]
    assert [(r["n_sections"], r.get("refine"), r.get("refine_sections")) for r in refined] == [(4, None, None), (4, 3, 1)]
    assert "| integral N=4, 1 refined x3 |" in (tmp_path / "refined.md").read_text()
    assert render_main(["--expdir", str(run), "--n_sections", "4", "--refine", "2", "--out", str(tmp_path / "r")]) == 0
    assert "integral N=4, 1 section refined x2:" in capsys.readouterr().out  # the default: the section of most weight
    assert render_main(["--expdir", str(run), "--n_sections", "4", "--refine", "2", "--refine_sections", "2", "--out", str(tmp_path / "r2")]) == 0
    assert "integral N=4, 2 sections refined x2:" in capsys.readouterr().out
    assert render_main(["--expdir", str(run), "--n_sections", "4", "--refine", "2", "--refine_sections", "5", "--out", str(tmp_path / "r5")]) == 2
    err = capsys.readouterr().err
    assert "refine_sections 5: at most the 4 sections rendered" in err and err.count("\n") == 1

    # NeRF's 25-view protocol is every 8th test view; here every 2nd of 2.
    assert eval_main(["--expdir", str(run), "--n_sections", "2", "--quadrature_samples", "0", "--testskip", "2", "--out", str(tmp_path / "skip.json")]) == 0
    assert json.loads((tmp_path / "skip.json").read_text())["n_views"] == 1
    capsys.readouterr()
    assert eval_main(["--expdir", str(run), "--testskip", "0"]) == 2
    err = capsys.readouterr().err
    assert "testskip must be at least 1, got 0" in err and err.count("\n") == 1


def test_training_beats_an_untrained_model(tmp_path):
    """The same run at step 0 and after 300 steps: integral PSNR on held-out views must rise clearly."""
    scene = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=24, n_val=1, n_test=3))
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\nlrate = 3e-3\nN_rand = 256\nchunk = 256\nnetdepth = 4\nnetwidth = 32\n")
    run = tmp_path / "logs" / "tiny"
    assert train_main(["--config", str(config), "--n_iters", "0"]) == 0
    assert eval_main(["--expdir", str(run), "--n_sections", "4", "--quadrature_samples", "0", "--out", str(tmp_path / "untrained.json")]) == 0
    assert train_main(["--config", str(config), "--n_iters", "300", "--i_weights", "300"]) == 0
    assert eval_main(["--expdir", str(run), "--n_sections", "4", "--quadrature_samples", "0", "--out", str(tmp_path / "trained.json")]) == 0
    before = json.loads((tmp_path / "untrained.json").read_text())["results"][0]["psnr"]
    after = json.loads((tmp_path / "trained.json").read_text())["results"][0]["psnr"]
    assert after > before + 5, (before, after)
    assert {"untrained.md", "untrained_tradeoff.png", "trained.md", "trained_tradeoff.png"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize("argv, message", [
    (["--n_sections", "0"], "autoint-train: error: n_sections must be at least 1, got 0"),
    (["--lrate", "-1"], "autoint-train: error: lrate must be positive, got -1.0"),
    (["--expname", "../escape"], "autoint-train: error: expname must be a plain folder name"),
    (["--error_iters", "100"], "autoint-train: error: error_iters 100 shapes the rays that sample_by_error draws: set sample_by_error too"),
    (["--sample_by_error", "1.5"], "autoint-train: error: sample_by_error is a share of the rays: it must be in [0, 1], got 1.5"),
    (["--error_alpha", "1"], "autoint-train: error: error_alpha 1 shapes the rays that sample_by_error draws: set sample_by_error too"),
])
def test_train_bad_values(tmp_path, scene, capsys, argv, message):
    assert train_main(["--config", str(write_config(tmp_path, scene)), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "logs").exists()


def test_train_bad_choice(tmp_path, scene, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--config", str(write_config(tmp_path, scene)), "--precision", "fp8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("autoint-train: error: argument --precision: invalid choice: 'fp8'") and err.count("\n") == 1


def test_resume_into_another_architecture_is_refused(tmp_path, scene, capsys):
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    assert train_main(["--config", str(config), "--netwidth", "32", "--n_iters", "9"]) == 2
    assert "saved with a different architecture (netwidth 16 -> 32)" in capsys.readouterr().err


def test_compiled_rendering_matches_eager(tmp_path, scene):
    """--compile with a compile mode renders the same frames as eager (CPU inductor here; on CUDA the modes differ more)."""
    import imageio.v3 as iio

    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config), "--n_iters", "3"]) == 0
    run = tmp_path / "logs" / "tiny"
    assert render_main(["--expdir", str(run), "--out", str(tmp_path / "eager"), "--chunk", "64"]) == 0
    assert render_main(["--expdir", str(run), "--out", str(tmp_path / "compiled"), "--chunk", "64", "--compile", "--compile_mode", "reduce-overhead"]) == 0
    for name in ("rgb_000.png", "rgb_001.png"):
        eager, compiled = (iio.imread(tmp_path / kind / name).astype(int) for kind in ("eager", "compiled"))
        assert abs(eager - compiled).max() <= 1, name  # 8-bit rounding of float32 results that differ in the last bits
    # Evaluation compiles each setting's renderer, the quadrature one (grad networks) too.
    scores = {}
    for kind, flags in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / f"{kind}.json"
        assert eval_main(["--expdir", str(run), "--n_sections", "4", "--quadrature_samples", "8", "--chunk", "64", "--out", str(out), *flags]) == 0
        scores[kind] = [r["psnr"] for r in json.loads(out.read_text())["results"]]
    assert scores["compiled"] == pytest.approx(scores["eager"], abs=1e-3)


@pytest.mark.parametrize("main", [render_main, eval_main])
@pytest.mark.parametrize("value, message", [("0", "must be at least 1, got 0"), ("lots", "expected a number of rays or auto, got 'lots'")])
def test_bad_chunk_is_one_line(tmp_path, capsys, main, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--expdir", str(tmp_path), "--chunk", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --chunk: {message}" in err and err.count("\n") == 1


def test_render_and_eval_without_a_run(tmp_path, capsys):
    assert render_main(["--expdir", str(tmp_path / "nothing")]) == 2
    assert "no checkpoints/NNNNNN.pt" in capsys.readouterr().err
    assert eval_main(["--expdir", str(tmp_path), "--ckpt", str(tmp_path / "x.pt")]) == 2
    assert "x.pt: checkpoint missing" in capsys.readouterr().err


def test_state_dict_keys_are_stable():
    """Checkpoint keys derive from the architecture alone (no per-instance ids)."""
    from autoint_cli.models import SceneModel

    config = ModelConfig(netdepth=2, netwidth=8, sampler_depth=2, sampler_width=8, n_sections=4)
    keys = list(SceneModel(config).state_dict())
    assert keys == list(SceneModel(config).state_dict())
    assert keys == [
        "field.networks.0.body.layers.1.layers.0.weight", "field.networks.0.body.layers.1.layers.0.bias",
        "field.networks.0.body.layers.1.layers.2.weight", "field.networks.0.body.layers.1.layers.2.bias",
        "field.networks.1.body.layers.1.layers.0.weight", "field.networks.1.body.layers.1.layers.0.bias",
        "field.networks.1.body.layers.1.layers.2.weight", "field.networks.1.body.layers.1.layers.2.bias",
        "sampler.mlp.0.weight", "sampler.mlp.0.bias", "sampler.mlp.2.weight", "sampler.mlp.2.bias",
    ]


def test_bf16_rendering_stays_close_to_float32(tmp_path, scene, capsys):
    """autoint-eval --precision bf16: the same run's PSNR within 0.5 dB of float32 (CPU autocast)."""
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    run = tmp_path / "logs" / "tiny"
    scores = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.json"
        assert eval_main(["--expdir", str(run), "--n_sections", "4", "--quadrature_samples", "0", "--precision", precision, "--out", str(out)]) == 0
        metrics = json.loads(out.read_text())
        assert metrics["precision"] == precision
        scores[precision] = metrics["results"][0]["psnr"]
    assert abs(scores["bf16"] - scores["fp32"]) < 0.5, scores


@pytest.mark.parametrize("extra, argv, message", [
    ("lrat = 1e-3\n", [], "tiny.txt:{line}: unknown key 'lrat' (did you mean 'lrate'?)"),
    ("", ["--n_section", "4"], "unknown option --n_section (did you mean 'n_sections'?)"),
])
def test_unknown_keys_name_the_closest(tmp_path, scene, capsys, extra, argv, message):
    config = write_config(tmp_path, scene, extra)
    line = len(config.read_text().splitlines())
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--config", str(config), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message.format(line=line) in err and err.count("\n") == 1
    assert not (tmp_path / "logs").exists()


def test_missing_config_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--config", str(tmp_path / "nope.txt")])
    assert "nope.txt: config file not found" in capsys.readouterr().err


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path, scene):
    import signal
    import subprocess
    import sys
    import time

    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    command = [sys.executable, "-m", "autoint_cli", "train", "--config", str(config), "--n_iters", "100000", "--i_print", "1", "--i_weights", "1", "--quiet", "false"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    checkpoints = tmp_path / "logs" / "tiny" / "checkpoints"
    # Signal once training is under way (a first checkpoint exists), however slow the machine is.
    deadline = time.time() + 300
    while latest_checkpoint(tmp_path / "logs" / "tiny") is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM at step" in err and "Resume with: autoint-train --config" in err
    step = load_checkpoint(latest_checkpoint(tmp_path / "logs" / "tiny"))["step"]
    assert step > 0
    assert train_main(["--config", str(config), "--n_iters", str(step + 2)]) == 0
    assert (checkpoints / f"{step + 2:06d}.pt").is_file()


def test_nonfinite_steps_are_skipped_then_stop(tmp_path, scene, capsys, caplog, monkeypatch):
    import autoint_cli.train.step as train_module

    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\nmax_nonfinite_steps = 3\n")
    assert train_main(["--config", str(config), "--n_iters", "3", "--i_weights", "3"]) == 0
    real = train_module.render_training
    poisoned = {"left": 3}  # two chunks a step: calls 1-2 spoil one step, call 3 the next

    def sometimes_nan(*args, **kwargs):
        out = real(*args, **kwargs)
        if poisoned["left"] > 0:
            poisoned["left"] -= 1
            return type(out)(out.rgb * float("nan"), out.acc, out.depth, out.weights)
        return out

    monkeypatch.setattr(train_module, "render_training", sometimes_nan)
    with caplog.at_level(logging.WARNING):
        assert train_main(["--config", str(config), "--n_iters", "6", "--i_weights", "100"]) == 0
    # Read back from the device every few steps: steps 4 and 5 skipped, the weights left as they were.
    reports = re.findall(r"steps (\d+)-(\d+): (\d+) with NaN or inf in the loss or gradients; skipped \(weights unchanged\)", caplog.text)
    assert sum(int(n) for _, _, n in reports) == 2 and int(reports[0][0]) == 4
    weights = load_checkpoint(tmp_path / "logs" / "tiny" / "checkpoints" / "000006.pt")["model"]
    assert all(torch.isfinite(v).all() for v in weights.values())

    monkeypatch.setattr(train_module, "render_training", lambda *a, **k: type(real(*a, **k))(real(*a, **k).rgb * float("nan"), None, None, None))
    before = load_checkpoint(tmp_path / "logs" / "tiny" / "checkpoints" / "000006.pt")["model"]
    assert train_main(["--config", str(config), "--n_iters", "20"]) == 1
    assert "steps in a row with NaN/inf up to step" in capsys.readouterr().err
    # Checkpoints written during the streak hold the weights of step 6, untouched.
    later = sorted((tmp_path / "logs" / "tiny" / "checkpoints").iterdir())[2:]
    assert later
    for path in later:
        after = load_checkpoint(path)["model"]
        assert all(torch.equal(before[k], after[k]) for k in before)


def test_unwritable_basedir_is_refused_before_training(tmp_path, scene, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config = write_config(tmp_path, scene)
    assert train_main(["--config", str(config), "--basedir", str(blocker / "logs")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the run folder" in err and "check basedir" in err and err.count("\n") == 1


def test_checkpoint_of_another_architecture_names_the_shapes(tmp_path, scene, capsys):
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    run = tmp_path / "logs" / "tiny"
    path = run / "checkpoints" / "000006.pt"
    payload = torch.load(path, weights_only=True)
    payload["config"]["netwidth"] = 32
    torch.save(payload, tmp_path / "other.pt")
    assert render_main(["--expdir", str(run), "--ckpt", str(tmp_path / "other.pt")]) == 2
    err = capsys.readouterr().err
    assert "weights do not fit the architecture in its config: field.networks.0.body.layers.1.layers.0.bias (16,) (expected (32,))" in err
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    assert eval_main(["--expdir", str(run), "--ckpt", str(truncated)]) == 2
    assert "truncated.pt: not a readable checkpoint" in capsys.readouterr().err


def test_rerunning_a_finished_run_is_a_no_op(tmp_path, scene, capsys):
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    before = sorted(p.name for p in (tmp_path / "logs" / "tiny" / "checkpoints").iterdir())
    assert train_main(["--config", str(config)]) == 0
    assert "tiny: step 6, loss nan" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "logs" / "tiny" / "checkpoints").iterdir()) == before


@pytest.mark.parametrize("share, recorded", [(0.5, 6), (0.0, 0)])
def test_sample_by_error_records_every_steps_errors(tmp_path, scene, monkeypatch, share, recorded):
    """With sample_by_error the loop hands each step's ray errors (finite, one per ray) to the sampler's table; without it
    there is no table."""
    from autoint_cli.train.step import PixelErrors

    seen = []
    keep = PixelErrors.record
    monkeypatch.setattr(PixelErrors, "record", lambda self, pixels, errors: (seen.append(errors.clone()), keep(self, pixels, errors)))
    config = write_config(tmp_path, scene)
    argv = ["--config", str(config), "--sample_by_error", str(share), "--error_alpha", str(share), "--i_testset", "0", "--i_video", "0"]
    assert train_main(argv) == 0
    assert len(seen) == recorded and all(e.shape == (64,) and torch.isfinite(e).all() and (e >= 0).all() for e in seen)


def test_sample_by_error_is_refused_under_torchrun(tmp_path, scene):
    """The pixels' errors live in one process: two ranks would draw different batches, so the run is refused in one line."""
    from autoint_cli.config import ConfigError, DataConfig, RunConfig, TrainConfig
    from autoint_cli.train import train
    from autoint_cli.utils.distributed import Distributed

    config = TrainConfig(DataConfig(datadir=str(scene)), ModelConfig(), RunConfig(expname="x", basedir=str(tmp_path), sample_by_error=0.5))
    with pytest.raises(ConfigError, match="sample_by_error 0.5 keeps the pixels' errors in one process"):
        train(config, torch.device("cpu"), dist=Distributed(0, 2))
    assert not (tmp_path / "x").exists()
