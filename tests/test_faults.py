"""Fault injection: training killed with SIGKILL at random moments resumes to bit-identical weights."""
import random
import signal
import subprocess
import sys
import time

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
