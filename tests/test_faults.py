"""Fault injection: training killed with SIGKILL at random moments resumes to bit-identical weights."""
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from autoint_cli.checkpoint import latest_checkpoint, load_checkpoint
from autoint_cli.data.synthetic import DemoSceneSpec, write_demo_scene

TINY = ("n_sections = 4\nsamples_per_section = 2\nnetdepth = 2\nnetwidth = 16\nmultires = 3\nmultires_views = 1\n"
        "sampler_depth = 2\nsampler_width = 16\nN_rand = 64\nchunk = 64\ni_print = 5\ni_img = 1000\ni_weights = 2\n"
        "i_testset = 0\ni_video = 0\nprecision = fp32\nquiet = true\nn_iters = 150\n")


def command(config):
    return [sys.executable, "-m", "autoint_cli", "train", "--config", str(config), "--device", "cpu"]


def weights(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))["model"]


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    scene = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=4, n_val=1, n_test=1))
    reference_config = tmp_path / "reference.txt"
    reference_config.write_text(f"expname = run\nbasedir = {tmp_path / 'reference'}\ndatadir = {scene}\n" + TINY)
    subprocess.run(command(reference_config), check=True, capture_output=True, timeout=300)
    expected = weights(tmp_path / "reference" / "run")

    rng = random.Random(0)
    kills = 0
    for trial in range(5):
        config = tmp_path / f"trial{trial}.txt"
        run_dir = tmp_path / f"trial{trial}" / "run"
        config.write_text(f"expname = run\nbasedir = {tmp_path / f'trial{trial}'}\ndatadir = {scene}\n" + TINY)
        # Kill once or twice at random moments (start-up, mid-step, mid-checkpoint), then let it finish.
        for _ in range(rng.choice([1, 2])):
            proc = subprocess.Popen(command(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(2.0, 6.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=60)
        subprocess.run(command(config), check=True, capture_output=True, timeout=300)
        assert load_checkpoint(latest_checkpoint(run_dir))["step"] == 150
        got = weights(run_dir)
        assert all(torch.equal(got[k], expected[k]) for k in expected), f"trial {trial} differs"
        # Every checkpoint left behind is complete and loadable; only temp files may be partial.
        for path in (run_dir / "checkpoints").glob("*.pt"):
            load_checkpoint(path)
    assert kills >= 3, "the loop should have killed running trainings"


# Nothing lost, second round: each case through the commands, with the files on disk checked before and after.
from autoint_cli.cli import eval_main, render_main, scene_main, train_main  # noqa: E402

from helpers import folder_state, write_config  # noqa: E402


def tiny_scene(tmp_path):
    return write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=4, n_val=1, n_test=2))


def test_generate_demo_never_writes_over_a_users_folder(tmp_path, capsys):
    users = tmp_path / "mine"
    (users / "train").mkdir(parents=True)
    (users / "train" / "r_0.png").write_bytes(b"my photo")
    (users / "transforms_train.json").write_text("{}")
    before = folder_state(users)
    config = write_config(tmp_path, users, "generate_demo = True\n")
    assert train_main(["--config", str(config)]) == 2
    assert "refusing to write into it" in capsys.readouterr().err
    assert folder_state(users) == before
    # A command that only checks writes nothing, not even into a missing folder.
    assert scene_main(["--datadir", str(tmp_path / "absent"), "--generate_demo"]) == 2
    assert "the demo scene is not there yet" in capsys.readouterr().err
    assert not (tmp_path / "absent").exists()


def test_a_second_trainer_on_the_same_run_folder_is_refused(tmp_path):
    scene = tiny_scene(tmp_path)
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\ni_weights = 1\ni_print = 1\n")
    first = subprocess.Popen(command(config) + ["--n_iters", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "logs" / "tiny"
    deadline = time.time() + 120
    while latest_checkpoint(run_dir) is None and time.time() < deadline:
        time.sleep(0.2)
    second = subprocess.run(command(config) + ["--n_iters", "100000"], capture_output=True, text=True, timeout=120)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert second.returncode == 2
    assert f"another autoint-train is writing this run folder (process {first.pid})" in second.stderr
    assert second.stderr.count("\n") == 1
    # The lock went with its process: the next trainer takes the folder over.
    assert subprocess.run(command(config) + ["--n_iters", "2"], capture_output=True, timeout=120).returncode == 0


def test_a_refused_resume_changes_no_file(tmp_path, capsys):
    scene = tiny_scene(tmp_path)
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    run_dir = tmp_path / "logs" / "tiny"

    def files():  # the lock file is touched by every trainer that takes the folder; everything else must stay
        return {k: v for k, v in folder_state(run_dir).items() if k != ".lock"}

    before = files()
    assert train_main(["--config", str(config), "--netwidth", "32", "--n_iters", "9"]) == 2
    assert "different architecture" in capsys.readouterr().err
    assert files() == before
    assert train_main(["--config", str(config)]) == 0  # finished: nothing rewritten either
    assert files() == before


def test_interrupted_render_and_failed_eval_leave_no_partial_output(tmp_path, capsys, monkeypatch):
    import autoint_cli.media as media

    scene = tiny_scene(tmp_path)
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    run_dir = tmp_path / "logs" / "tiny"
    real = media.iio.imwrite
    calls = {"n": 0}

    def ctrl_c_on_the_third(path, image, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(path, image, **kwargs)

    monkeypatch.setattr(media.iio, "imwrite", ctrl_c_on_the_third)
    assert render_main(["--expdir", str(run_dir), "--out", str(tmp_path / "frames")]) == 130
    assert capsys.readouterr().err.strip() == "autoint-render: interrupted; no output was left half-written"
    assert not list(tmp_path.glob("frames/*")) and not list(tmp_path.glob(".frames.*"))
    monkeypatch.setattr(media.iio, "imwrite", real)

    assert eval_main(["--expdir", str(run_dir), "--n_sections", "4", "--quadrature_samples", "0"]) == 0
    good = (run_dir / "metrics.json").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("autoint_cli.evaluate.json.dumps", lambda *a, **k: "{\"partial\": ")
    monkeypatch.setattr("autoint_cli.atomic.os.replace", full_disk)
    with pytest.raises(OSError):
        eval_main(["--expdir", str(run_dir), "--n_sections", "4", "--quadrature_samples", "0"])
    assert (run_dir / "metrics.json").read_bytes() == good
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".metrics")]


def test_auxiliary_outputs_never_stop_training(tmp_path, caplog, monkeypatch):
    import logging

    import autoint_cli.train.loop as loop
    import autoint_cli.train.periodic as periodic

    scene = tiny_scene(tmp_path)
    config = write_config(tmp_path, scene)  # test renders and videos at step 6
    monkeypatch.setattr(loop, "video_writer_missing", lambda: "imageio-ffmpeg is not installed")

    def broken(self, *args):
        raise RuntimeError("the test render broke")

    monkeypatch.setattr(periodic.ViewRenders, "test_set", broken)
    with caplog.at_level(logging.WARNING):
        assert train_main(["--config", str(config)]) == 0
    assert "i_video 6: no videos will be written (imageio-ffmpeg is not installed)" in caplog.text
    assert "step 6: the test-set render failed (the test render broke); training goes on" in caplog.text
    assert (tmp_path / "logs" / "tiny" / "checkpoints" / "000006.pt").is_file()


def test_no_reload_sets_the_old_checkpoints_aside(tmp_path, caplog):
    import logging

    scene = tiny_scene(tmp_path)
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    run_dir = tmp_path / "logs" / "tiny"
    old = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    with caplog.at_level(logging.WARNING):
        assert train_main(["--config", str(config), "--no_reload", "--n_iters", "3", "--seed", "1"]) == 0
    (aside,) = run_dir.glob("checkpoints_replaced_*")
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == old
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["000003.pt"]
    assert "are kept in" in caplog.text
    # The new run resumes from its own step 3, not from the old run's step 6.
    assert train_main(["--config", str(config), "--n_iters", "5", "--seed", "1"]) == 0
    assert load_checkpoint(latest_checkpoint(run_dir))["step"] == 5
