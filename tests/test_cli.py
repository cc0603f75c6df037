"""The command-line entry points: summaries, and every bad input ending in one line and exit 2."""
import json
import shutil
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from autoint_cli.cli import demo_scene_main, scene_main
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

from helpers import folder_state


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_demo_scene(tmp_path_factory.mktemp("cli") / "tiny", DemoSceneSpec(size=8, n_train=3, n_val=2, n_test=2))


def test_scene_summary(tiny, capsys):
    assert scene_main(["--datadir", str(tiny), "--testskip", "2"]) == 0
    out = capsys.readouterr().out
    assert "scene tiny: 5 images of 8x8 px (train 3, val 1, test 1)" in out
    assert "near 2, far 6, ndc False" in out


def test_scene_reads_a_training_config(tiny, tmp_path, capsys):
    config = tmp_path / "train.txt"
    config.write_text(f"expname = x\ndatadir = {tiny}\nlrate = 5e-4\nn_sections = 16\n")
    assert scene_main(["--config", str(config)]) == 0
    assert "scene tiny" in capsys.readouterr().out


def edit_json(path, change):
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def set_nan(meta):
    meta["frames"][1]["transform_matrix"][0][3] = float("nan")


def empty_split(meta):
    meta["frames"] = []


BLENDER_CASES = {
    "missing_folder": (lambda d: shutil.rmtree(d), r"{d}: no such folder"),
    "missing_json": (lambda d: (d / "transforms_val.json").unlink(), r"{d}/transforms_val.json: transforms file missing"),
    "bad_json": (lambda d: (d / "transforms_test.json").write_text("{not json"), r"{d}/transforms_test.json: not valid JSON"),
    "missing_image": (lambda d: (d / "train" / "r_1.png").unlink(), r"{d}/train/r_1.png: image missing (frame 1 of transforms_train.json)"),
    "unreadable_image": (lambda d: (d / "train" / "r_2.png").write_bytes(b"garbage"), r"{d}/train/r_2.png: unreadable image (frame 2 of transforms_train.json)"),
    "differing_sizes": (
        lambda d: iio.imwrite(d / "test" / "r_1.png", np.zeros((9, 8, 4), np.uint8)),
        r"{d}/test/r_1.png: image is 8x9 with 4 channels, but r_0.png in the same split is 8x8 with 4",
    ),
    "nan_pose": (lambda d: edit_json(d / "transforms_train.json", set_nan), r"{d}/transforms_train.json: frame 1 'transform_matrix' has NaN or inf"),
    "empty_split": (lambda d: edit_json(d / "transforms_val.json", empty_split), r"{d}/transforms_val.json: the split has no frames"),
}


@pytest.mark.parametrize("case", sorted(BLENDER_CASES))
def test_bad_blender_scenes(tiny, tmp_path, capsys, case):
    folder = tmp_path / "scene"
    shutil.copytree(tiny, folder)
    damage, message = BLENDER_CASES[case]
    damage(folder)
    before = folder_state(tmp_path)
    assert scene_main(["--datadir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autoint-scene: error: ") and err.count("\n") == 1
    assert message.format(d=folder) in err
    assert folder_state(tmp_path) == before


def test_bad_llff_scene_through_the_cli(tmp_path, capsys):
    folder = tmp_path / "cap"
    folder.mkdir()
    np.save(folder / "poses_bounds.npy", np.zeros((3, 12)))
    assert scene_main(["--datadir", str(folder), "--dataset_type", "llff"]) == 2
    assert "poses_bounds.npy: expected an array of shape [n_images, 17]" in capsys.readouterr().err


def test_unknown_dataset_type(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        scene_main(["--datadir", str(tmp_path), "--dataset_type", "colmap"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("autoint-scene: error: argument --dataset_type: invalid choice: 'colmap'") and err.count("\n") == 1


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from autoint_cli.cli import scene_main; sys.exit(scene_main())", "--datadir", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"autoint-scene: error: {tmp_path / 'none'}: no such folder"


def test_demo_scene_command(tmp_path, capsys):
    assert demo_scene_main(["--out", str(tmp_path / "demo"), "--size", "8", "--n_train", "2", "--n_val", "1", "--n_test", "1"]) == 0
    assert "wrote 4 views of 8x8 px" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        ".autoint_demo", "test", "train", "transforms_test.json", "transforms_train.json", "transforms_val.json", "val"]
    # Run again over its own scene: allowed (the marker says it is a demo scene); over anything else: refused, untouched.
    assert demo_scene_main(["--out", str(tmp_path / "demo"), "--size", "8", "--n_train", "2", "--n_val", "1", "--n_test", "1"]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.png").write_bytes(b"x")
    assert demo_scene_main(["--out", str(tmp_path / "mine")]) == 2
    assert "exists and is not a demo scene" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["photo.png"]
    # The held-out-views variant: its flags reach the scene (the marker records them); bad bands are refused in one line.
    assert demo_scene_main(["--out", str(tmp_path / "low"), "--size", "8", "--n_train", "2", "--n_val", "1", "--n_test", "1",
                            "--train_elevation", "20", "75", "--holdout_elevation", "5", "12", "--opaque_density", "300"]) == 0
    marker = json.loads((tmp_path / "low" / ".autoint_demo").read_text())
    assert (marker["train_elevation"], marker["holdout_elevation"], marker["opaque_density"]) == ([20, 75], [5, 12], 300)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        demo_scene_main(["--out", str(tmp_path / "bad"), "--holdout_elevation", "12", "5"])
    err = capsys.readouterr().err
    assert "--holdout_elevation must be two elevations 0 <= LOW < HIGH <= 90, got 12 5" in err and "Traceback" not in err


def test_demo_scene_module_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "autoint_cli", "demo", "--out", str(tmp_path / "d"), "--size", "4", "--n_train", "1", "--n_val", "1", "--n_test", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d" / "train" / "r_0.png").is_file()


def test_demo_scene_unwritable(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert demo_scene_main(["--out", str(blocker / "demo"), "--size", "4"]) == 2
    assert "cannot write the scene" in capsys.readouterr().err


def test_render_depth_writes_float_maps_that_match_the_renderer(tmp_path):
    """--depth: float32 depth and opacity per view, equal to the renderer's own output; a sidecar saying what they hold."""
    import torch

    from autoint_cli.cli import render_main, train_main
    from autoint_cli.render.renderer import Renderer, RenderSettings
    from autoint_cli.render.views import view_rays
    from autoint_cli.runs.loader import load_run

    from helpers import write_config

    scene = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=4, n_val=1, n_test=2))
    assert train_main(["--config", str(write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\n"))]) == 0
    run_dir, out = tmp_path / "logs" / "tiny", tmp_path / "frames"
    assert render_main(["--expdir", str(run_dir), "--depth", "--out", str(out)]) == 0
    run = load_run(run_dir, torch.device("cpu"))
    expected = Renderer(run.model, torch.tensor(run.scene.background), RenderSettings(precision="fp32")).render(
        view_rays(run.scene, run.scene.c2w[run.scene.i_test[1]], torch.device("cpu")))
    depth, acc = np.load(out / "depth_001.npy"), np.load(out / "acc_001.npy")
    assert depth.dtype == np.float32 and depth.shape == (12, 12) and acc.shape == (12, 12)
    np.testing.assert_allclose(depth, expected.depth[..., 0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(acc, expected.acc[..., 0].numpy(), rtol=0, atol=1e-6)
    meaning = json.loads((out / "depth.json").read_text())
    assert meaning["ndc"] is False and "z-depth" in meaning["unit"] and (meaning["near"], meaning["far"]) == (2.0, 6.0)
    assert iio.imread(out / "depth_001.png").shape == (12, 12, 3)
    # Without --depth, none of it.
    assert render_main(["--expdir", str(run_dir), "--out", str(tmp_path / "plain")]) == 0
    assert not list((tmp_path / "plain").glob("depth*")) and not list((tmp_path / "plain").glob("acc*"))


def test_render_a_camera_path_file(tmp_path, capsys):
    """--camera_path: a nerfstudio path through a test view with the scene's own camera renders that view; a keyframe path
    gives fps x seconds frames and a video at the file's rate; a bad file or --fps is one line and exit 2."""
    import torch

    from autoint_cli.cli import render_main, train_main
    from autoint_cli.runs.loader import load_run
    from autoint_cli.scene.camera_path import vertical_fov

    from helpers import write_config

    scene = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=4, n_val=1, n_test=2))
    assert train_main(["--config", str(write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\nn_iters = 20\n"))]) == 0
    run_dir = tmp_path / "logs" / "tiny"
    run = load_run(run_dir, torch.device("cpu"))
    test_pose = run.scene.c2w[run.scene.i_test[1]].numpy()
    frame = {"camera_to_world": np.vstack((test_pose, [0, 0, 0, 1])).reshape(-1).tolist(), "fov": vertical_fov(run.scene.intrinsics)}
    (tmp_path / "ns.json").write_text(json.dumps({"camera_path": [frame, frame], "render_width": 12, "render_height": 12, "fps": 12}))
    assert render_main(["--expdir", str(run_dir), "--out", str(tmp_path / "split"), "--renderer", "integral"]) == 0
    assert render_main(["--expdir", str(run_dir), "--camera_path", str(tmp_path / "ns.json"), "--out", str(tmp_path / "ns"), "--video", "False"]) == 0
    assert sorted(p.name for p in (tmp_path / "ns").glob("rgb_*.png")) == ["rgb_000.png", "rgb_001.png"]
    np.testing.assert_array_equal(iio.imread(tmp_path / "ns" / "rgb_000.png"), iio.imread(tmp_path / "split" / "rgb_001.png"))
    keys = {"keyframes": [{"c2w": test_pose.tolist()}, {"c2w": run.scene.c2w[run.scene.i_test[0]].numpy().tolist()}], "fps": 5,
            "seconds": 1.2, "width": 10, "height": 8}
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    assert render_main(["--expdir", str(run_dir), "--camera_path", str(tmp_path / "keys.json")]) == 0
    out = run_dir / f"render_camera_path_{run.step:06d}"
    assert len(list(out.glob("rgb_*.png"))) == 6 and iio.imread(out / "rgb_005.png").shape == (8, 10, 3)
    assert iio.immeta(out / "rgb.mp4")["fps"] == 5
    capsys.readouterr()
    assert render_main(["--expdir", str(run_dir), "--camera_path", str(tmp_path / "keys.json"), "--fps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "autoint-render: error: --fps must be positive, got 0.0"
    (tmp_path / "bad.json").write_text(json.dumps({"keyframes": []}))
    assert render_main(["--expdir", str(run_dir), "--camera_path", str(tmp_path / "bad.json")]) == 2
    assert capsys.readouterr().err.strip() == f"autoint-render: error: {tmp_path / 'bad.json'}: keyframes must be a list of at least 2 objects"

