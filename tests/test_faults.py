"""Fault injection: training killed with SIGKILL at random moments resumes to bit-identical weights."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from autoint_cli.runs.checkpoint import latest_checkpoint, load_checkpoint
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

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
    start = time.perf_counter()
    subprocess.run(command(reference_config), check=True, capture_output=True, timeout=300)
    # Kills are timed as shares of an uninterrupted run on this machine: fixed seconds killed nothing where a run is quick.
    duration = time.perf_counter() - start
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
            time.sleep(rng.uniform(0.3, 0.9) * duration)
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

from helpers import folder_state, wait_for, write_config  # noqa: E402


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
    wait_for(lambda: latest_checkpoint(run_dir) is not None)
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
    import autoint_cli.render.media as media

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
    monkeypatch.setattr("autoint_cli.utils.atomic.os.replace", full_disk)
    capsys.readouterr()
    assert eval_main(["--expdir", str(run_dir), "--n_sections", "4", "--quadrature_samples", "0"]) == 1
    assert capsys.readouterr().err.strip().endswith("No space left on device; earlier outputs were left as they were")
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


# Tracebacks that became one line (exit 2), each checked before the long work starts.
import json  # noqa: E402
import shutil  # noqa: E402

import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with checkpoints at steps 3 and 6, and its scene; tests copy it before damaging anything."""
    tmp_path = tmp_path_factory.mktemp("trained")
    scene = tiny_scene(tmp_path)
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    return tmp_path / "logs" / "tiny", scene, config


def copy_run(trained, tmp_path):
    run_dir = tmp_path / "logs" / "tiny"
    shutil.copytree(trained[0], run_dir)
    config = write_config(tmp_path, trained[1], "i_testset = 0\ni_video = 0\nn_iters = 9\n")
    return run_dir, config


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_truncated_latest_checkpoint_names_the_intact_earlier_one(trained, tmp_path, capsys):
    run_dir, config = copy_run(trained, tmp_path)
    latest = run_dir / "checkpoints" / "000006.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    intact = run_dir / "checkpoints" / "000003.pt"
    for main, argv in ((render_main, ["--expdir", str(run_dir)]), (eval_main, ["--expdir", str(run_dir)]), (train_main, ["--config", str(config)])):
        assert main(argv) == 2
        err = one_line(capsys)
        assert f"{latest}: not a readable checkpoint" in err and f"the latest intact checkpoint is {intact}" in err
    assert render_main(["--expdir", str(run_dir), "--ckpt", str(intact), "--out", str(tmp_path / "frames")]) == 0


@pytest.mark.parametrize("damage, main, message", [
    ("no optimizer", "train", "has no optimizer state, which resuming needs"),
    ("config disagrees", "train", "weights do not fit the architecture in its config"),
    ("config disagrees", "render", "weights do not fit the architecture in its config"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line(trained, tmp_path, capsys, damage, main, message):
    run_dir, config = copy_run(trained, tmp_path)
    path = run_dir / "checkpoints" / "000006.pt"
    payload = torch.load(path, weights_only=True)
    if damage == "no optimizer":
        del payload["optimizer"]
    else:
        payload["config"]["netwidth"] = 32  # the weights stay 16 wide
    torch.save(payload, path)
    widen = ["--netwidth", "32"] if damage == "config disagrees" else []
    argv = ["--config", str(config), *widen] if main == "train" else ["--expdir", str(run_dir)]
    assert {"train": train_main, "render": render_main}[main](argv) == 2
    assert f"{path}: {message}" in one_line(capsys)


def test_option_and_output_mistakes_are_refused_before_rendering(trained, tmp_path, capsys):
    run_dir, _ = copy_run(trained, tmp_path)
    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "a_folder").mkdir()
    cases = [
        (render_main, ["--expdir", str(run_dir), "--out", str(tmp_path / "a_file")], "a file is in the way; expected a folder"),
        (eval_main, ["--expdir", str(run_dir), "--out", str(tmp_path / "a_folder")], "is a folder; expected a file name"),
        (render_main, ["--expdir", str(run_dir), "--n_sections", "1000000000"], "n_sections 1000000000: one ray needs about"),
        (eval_main, ["--expdir", str(run_dir), "--n_sections", "4", "--quadrature_samples", "1000000000"], "n_samples 1000000000: one ray needs"),
    ]
    for main, argv, message in cases:
        before = folder_state(tmp_path)
        assert main(argv) == 2
        assert message in one_line(capsys)
        assert folder_state(tmp_path) == before
    assert (tmp_path / "a_file").read_text() == "mine"
    if os.geteuid() != 0:  # root writes anywhere: the mode check means nothing there
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert render_main(["--expdir", str(run_dir), "--out", str(locked / "frames")]) == 2
        assert f"{locked}: not writable" in one_line(capsys)


def test_impossible_n_rand_and_non_utf8_configs_are_refused(trained, tmp_path, capsys):
    _, config = copy_run(trained, tmp_path)
    assert train_main(["--config", str(config), "--N_rand", "10000000"]) == 2
    assert "N_rand 10000000 is more than the 576 training pixels of scene; use at most 576" in one_line(capsys)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(config.read_bytes() + "# café\n".encode("latin-1"))
    for main in (train_main, scene_main):
        with pytest.raises(SystemExit) as stop:
            main(["--config", str(bad)])
        assert stop.value.code == 2
        assert f"{bad}: not a UTF-8 text file (byte 0xe9" in one_line(capsys)


def test_an_empty_llff_test_split_is_refused_before_rendering(tmp_path, capsys):
    from test_scene_llff import make_capture

    make_capture(tmp_path / "cap", n=4)
    config = write_config(tmp_path, tmp_path / "cap", "dataset_type = llff\nfactor = 1\nllffhold = 0\nn_iters = 2\ni_img = 100\ni_weights = 100\n"
                          "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config)]) == 0
    run_dir = tmp_path / "logs" / "tiny"
    for main in (render_main, eval_main):
        assert main(["--expdir", str(run_dir)]) == 2
        assert "the test split has no views (for an LLFF scene, llffhold = 0 holds none out)" in one_line(capsys)
    assert render_main(["--expdir", str(run_dir), "--split", "train", "--out", str(tmp_path / "frames")]) == 0


def edit_transforms(scene, split, change):
    path = scene / f"transforms_{split}.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(camera_angle_x=0), "'camera_angle_x' is 0, expected a field of view in radians between 0 and pi"),
    (lambda m: m.update(camera_angle_x="wide"), "'camera_angle_x' is 'wide', expected a finite number"),
    (lambda m: m["frames"].append(7), "frame 2 is int, expected a JSON object"),
])
def test_blender_scene_mistakes_are_one_line(tmp_path, capsys, change, message):
    scene = tiny_scene(tmp_path)
    path = edit_transforms(scene, "test", change)
    assert scene_main(["--datadir", str(scene)]) == 2
    assert f"{path}: {message}" in one_line(capsys)


def test_rgb_images_beside_rgba_ones_are_made_opaque(tmp_path):
    from autoint_cli.scene import load_blender

    scene = tiny_scene(tmp_path)
    meta = json.loads((scene / "transforms_test.json").read_text())
    image = scene / (meta["frames"][0]["file_path"] + ".png")
    rgba = iio.imread(image)
    assert rgba.shape[-1] == 4
    iio.imwrite(image, rgba[..., :3])  # one RGB image among RGBA ones
    loaded = load_blender(scene, white_bkgd=True)
    view = loaded.images[loaded.i_test[0]].numpy()
    np.testing.assert_allclose(view, rgba[..., :3] / 255.0, rtol=0, atol=1e-6)  # opaque: its colours as they are


def test_keep_checkpoints_keeps_the_latest_and_every_i_keep_th(tmp_path):
    from autoint_cli.config import RunConfig
    from autoint_cli.train.guards import checkpoints_on_disk

    scene = tiny_scene(tmp_path)
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\ni_weights = 1\nn_iters = 9\nkeep_checkpoints = 2\ni_keep = 4\n")
    assert train_main(["--config", str(config)]) == 0
    assert sorted(p.name for p in (tmp_path / "logs" / "tiny" / "checkpoints").iterdir()) == ["000004.pt", "000008.pt", "000009.pt"]
    # The start-up disk check counts what a run keeps at once, plus the one being written.
    assert checkpoints_on_disk(RunConfig(expname="x", n_iters=9, i_weights=1, keep_checkpoints=2, i_keep=4)) == 2 + 2 + 1
    assert checkpoints_on_disk(RunConfig(expname="x", n_iters=100, i_weights=10, keep_checkpoints=0)) == 11 + 1
    assert checkpoints_on_disk(RunConfig(expname="x", n_iters=100, i_weights=10, keep_checkpoints=50)) == 11 + 1


# Real processes and real signals.
def test_sigint_inside_a_long_step_stops_within_seconds(tmp_path):
    """A step of 2,880 sub-batches (N_rand 92,160, chunk 32) takes far longer than the wait: SIGINT ends it between two of them."""
    scene = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=96, n_train=10, n_val=1, n_test=1))
    config = write_config(tmp_path, scene, "N_rand = 92160\nchunk = 32\nn_iters = 3\ni_img = 100\ni_testset = 0\ni_video = 0\n")
    proc = subprocess.Popen(command(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "logs" / "tiny"
    assert wait_for(lambda: (run_dir / "args.txt").is_file())  # written once every check has passed, just before the first step
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.time() - sent < 10
    assert "step 1 abandoned on a signal; the weights are those of step 0" in err
    assert load_checkpoint(latest_checkpoint(run_dir))["step"] == 0


def test_ctrl_c_in_a_real_render_leaves_no_output(trained, tmp_path):
    run_dir = trained[0]
    out = tmp_path / "frames"
    # The quadrature renderer at 20,000 samples per ray: seconds a view, so the signal comes mid-render.
    argv = [sys.executable, "-m", "autoint_cli", "render", "--expdir", str(run_dir), "--split", "path", "--renderer", "quadrature",
            "--n_samples", "20000", "--out", str(out), "--device", "cpu"]
    # SIGINT at its default in the child, however this test was started (a background job inherits it ignored).
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = ""
    while "autoint-render: rendering" not in started and proc.poll() is None:  # said after loading and checking, as it starts
        started += proc.stderr.readline()
    assert "path views" in started, started
    time.sleep(2.0)
    assert proc.poll() is None, "the render ended before the signal"
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    err = started + rest
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "autoint-render: interrupted; no output was left half-written"
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".frames*"))


def in_small_tmpfs(script: str, size: str, tmp_path) -> subprocess.CompletedProcess:
    """Runs ``script`` (sh) with a real tmpfs of ``size`` mounted at tmp_path/disk, in a user and mount namespace; skips where
    the machine does not allow one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {disk}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no small tmpfs here (unshare/mount: {probe.stderr.strip()[:120]})")
    proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs {disk} && {script}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script's children too
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a private tmpfs")
def test_a_really_full_disk_stops_training_in_one_line_and_keeps_outputs(trained, tmp_path):
    """On a real tmpfs: once the disk is full the next checkpoint cannot be written; the run stops in one line and the latest
    checkpoint on disk loads. Then autoint-eval on the full disk leaves the earlier metrics.json as it was."""
    disk = tmp_path / "disk"
    config = write_config(tmp_path, trained[1], f"basedir = {disk / 'logs'}\ni_weights = 1\ni_print = 1000\ni_img = 100000\n"
                          "n_iters = 100000\ni_testset = 0\ni_video = 0\n")
    python = sys.executable
    check = (f"{python} -c \"import sys; from autoint_cli.runs.checkpoint import latest_checkpoint, load_checkpoint; "
             f"print('intact', load_checkpoint(latest_checkpoint(sys.argv[1]))['step'])\" {disk / 'logs' / 'tiny'}")
    evaluate = f"{python} -m autoint_cli eval --expdir {disk / 'logs' / 'tiny'} --n_sections 4 --quadrature_samples 0 --device cpu"
    script = (
        f"{python} -m autoint_cli train --config {config} --device cpu > {tmp_path}/train.out 2> {tmp_path}/train.err & pid=$!; "
        f"while ! ls {disk}/logs/tiny/checkpoints/*.pt > /dev/null 2>&1; do sleep 0.1; done; "
        f"{evaluate} > /dev/null 2>&1; cp {disk}/logs/tiny/metrics.json {tmp_path}/metrics.before; "
        f"cat /dev/zero > {disk}/filler 2>/dev/null; wait $pid; echo train_rc=$?; {check}; "
        f"{evaluate} > /dev/null 2> {tmp_path}/eval.err; echo eval_rc=$?; cmp {disk}/logs/tiny/metrics.json {tmp_path}/metrics.before && echo same"
    )
    result = in_small_tmpfs(script, "8m", tmp_path)
    lines = result.stdout.split()
    train_err = (tmp_path / "train.err").read_text()
    assert "train_rc=1" in lines, (result.stdout, result.stderr, train_err)
    assert "Traceback" not in train_err and "could not write the checkpoint of step" in train_err
    assert "No space left on device" in train_err and "free space and run the same command to resume" in train_err
    assert "intact" in lines
    assert "eval_rc=1" in lines and "same" in lines
    eval_err = (tmp_path / "eval.err").read_text()
    assert "Traceback" not in eval_err and "No space left on device; earlier outputs were left as they were" in eval_err
