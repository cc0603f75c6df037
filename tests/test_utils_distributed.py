"""Several processes under torchrun (gloo on the CPU) against one process doing the same work."""
import json
import subprocess
import sys

import pytest
import torch

from autoint_cli.cli import eval_main, render_main, train_main
from autoint_cli.runs.checkpoint import load_checkpoint
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene
from autoint_cli.utils.distributed import SINGLE, Distributed, merge_shards

from helpers import write_config

TIMINGS = {"ms_per_frame", "rays_per_sec", "frames_per_sec"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_demo_scene(tmp_path_factory.mktemp("scene") / "tiny", DemoSceneSpec(size=12, n_train=4, n_val=1, n_test=3))


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "autoint_cli", *args, "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(run_dir, step):
    return load_checkpoint(run_dir / "checkpoints" / f"{step:06d}.pt")["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        # Float32 sums over rays in another order: differences of a few ulps, carried through Adam for a few steps.
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_shards_cover_every_item_once_and_merge_back_in_order():
    for world_size in (1, 2, 3, 5):
        ranks = [Distributed(r, world_size) for r in range(world_size)]
        shards = [r.shard(11) for r in ranks]
        assert sorted(sum(shards, [])) == list(range(11))
        assert merge_shards(shards, world_size) == list(range(11))
        blocks = [list(range(12))[r.split(12)] for r in ranks] if 12 % world_size == 0 else None
        if blocks:
            assert sum(blocks, []) == list(range(12))
    with pytest.raises(ValueError, match="does not split evenly over 5"):
        Distributed(0, 5).split(12)
    assert SINGLE.max([3, 0]) == [3.0, 0.0] and SINGLE.gather("x") == ["x"] and not SINGLE.active


def test_two_processes_train_as_one_on_the_same_total_batch_and_resume_under_any_count(tmp_path, scene, capsys):
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\ni_weights = 3\n")
    logs = tmp_path / "logs"
    flags = ["--config", str(config), "--n_iters", "6"]
    assert train_main(flags + ["--expname", "one"]) == 0

    done = torchrun("train", *flags, "--expname", "two")
    assert "2 processes; N_rand 64 rays per step in total (32 per process)" in done.stderr
    assert_same_weights(weights(logs / "two", 6), weights(logs / "one", 6))
    # Rank 0 alone wrote the run folder: the same files as one process.
    assert sorted(p.name for p in (logs / "two" / "checkpoints").iterdir()) == ["000003.pt", "000006.pt"]
    assert len(list((logs / "two" / "tensorboard").iterdir())) == 1

    # Two processes stop at 3, one process finishes; and the other way round.
    torchrun("train", "--config", str(config), "--n_iters", "3", "--expname", "two_then_one")
    assert train_main(flags + ["--expname", "two_then_one"]) == 0
    assert_same_weights(weights(logs / "two_then_one", 6), weights(logs / "one", 6))
    assert train_main(["--config", str(config), "--n_iters", "3", "--expname", "one_then_two"]) == 0
    done = torchrun("train", *flags, "--expname", "one_then_two")
    assert "resuming one_then_two from step 3" in done.stderr
    assert_same_weights(weights(logs / "one_then_two", 6), weights(logs / "one", 6))


def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path, scene):
    config = write_config(tmp_path, scene, "N_rand = 63\n")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "autoint_cli", "train", "--config", str(config), "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "N_rand 63 does not split evenly over 2 processes" in done.stderr


def test_distributed_eval_and_render_write_what_one_process_writes(tmp_path, scene, capsys):
    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    assert train_main(["--config", str(config), "--n_iters", "3"]) == 0
    run = tmp_path / "logs" / "tiny"
    eval_flags = ["--expdir", str(run), "--n_sections", "4", "8", "--quadrature_samples", "16"]
    assert eval_main(eval_flags + ["--out", str(tmp_path / "one.json"), "--device", "cpu"]) == 0
    torchrun("eval", *eval_flags, "--out", str(tmp_path / "two.json"), processes=3)

    def comparable(path):
        metrics = json.loads(path.read_text())
        # The CPU description names the thread count, which torchrun sets per process.
        assert metrics.pop("processes") == (1 if path.stem == "one" else 3) and metrics.pop("device")
        metrics["results"] = [{k: v for k, v in r.items() if k not in TIMINGS} for r in metrics["results"]]
        for result in metrics["results"]:  # each view's time too, and only that
            assert all(view.pop("ms") > 0 for view in result["per_image"])
        return metrics

    one, three = comparable(tmp_path / "one.json"), comparable(tmp_path / "two.json")
    assert len(one["results"][0]["per_image"]) == 3
    assert one == three

    assert render_main(["--expdir", str(run), "--split", "test", "--out", str(tmp_path / "r1"), "--device", "cpu"]) == 0
    done = torchrun("render", "--expdir", str(run), "--split", "test", "--out", str(tmp_path / "r2"))
    assert "3 test views" in done.stdout and "2 processes" in done.stdout
    files = sorted(p.name for p in (tmp_path / "r1").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "r2").iterdir()) and len(files) == 6
    for name in files:
        assert (tmp_path / "r1" / name).read_bytes() == (tmp_path / "r2" / name).read_bytes(), name


def test_sigterm_to_torchrun_checkpoints_every_rank_at_the_same_step(tmp_path, scene):
    import re
    import signal
    import time

    from autoint_cli.runs.checkpoint import latest_checkpoint

    config = write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "autoint_cli", "train",
               "--config", str(config), "--n_iters", "100000", "--i_weights", "5", "--device", "cpu"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "logs" / "tiny"
    deadline = time.time() + 300
    while latest_checkpoint(run) is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    _, err = proc.communicate(timeout=120)
    match = re.search(r"interrupted by SIGTERM at step (\d+); checkpoint (\S+)\. Resume with: torchrun --nproc_per_node=K -m autoint_cli train", err)
    assert match, err[-3000:]
    step = int(match.group(1))
    assert load_checkpoint(latest_checkpoint(run))["step"] == step
    assert train_main(["--config", str(config), "--n_iters", str(step + 1)]) == 0
