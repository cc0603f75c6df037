"""Camera-path files: nerfstudio's export and our keyframes, read into per-frame poses and cameras."""
import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from autoint_cli.scene.camera_path import CameraPathError, focal_from_fov, read_camera_path, vertical_fov
from autoint_cli.volume.rays import Intrinsics

CAMERA = Intrinsics.from_focal(30, 40, 50.0)  # the scene's: H 30, W 40


def pose(yaw_degrees, position):
    """A 3x4 camera-to-world pose: a turn about y by ``yaw_degrees`` at ``position``."""
    rotation = Rotation.from_euler("y", yaw_degrees, degrees=True).as_matrix()
    return np.concatenate((rotation, np.asarray(position, float)[:, None]), 1)


def write(tmp_path, data, name="path.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


KEYS = [(0.0, 0, [0, 0, 4]), (0.5, 40, [1, 0.5, 3]), (1.5, 100, [2, -1, 3]), (2.0, 170, [0, 0, -4])]


def keyframe_file(tmp_path, fps=10, seconds=2.5, with_times=True, **extra):
    keys = [{"c2w": pose(yaw, position).tolist(), **({"time": t} if with_times else {})} for t, yaw, position in KEYS]
    return write(tmp_path, {"keyframes": keys, "fps": fps, "seconds": seconds, **extra})


def test_a_keyframe_path_passes_through_its_keyframes_at_their_times(tmp_path):
    path = read_camera_path(keyframe_file(tmp_path), CAMERA)
    assert path.n_frames == 25 and path.fps == 10  # fps x seconds
    for t, yaw, position in KEYS:
        torch.testing.assert_close(path.c2w[round(t * 10)], torch.from_numpy(pose(yaw, position)).float(), rtol=0, atol=1e-5)
    # After the last keyframe the camera stays there; every frame's rotation is a rotation.
    torch.testing.assert_close(path.c2w[-1], path.c2w[20], rtol=0, atol=0)
    rotations = path.c2w[:, :, :3].double()
    torch.testing.assert_close(rotations.transpose(1, 2) @ rotations, torch.eye(3, dtype=torch.float64).expand(25, 3, 3), rtol=0, atol=1e-5)


def test_between_two_keyframes_orientation_is_the_slerp_and_position_a_line(tmp_path):
    keys = [{"c2w": pose(0, [0, 0, 0]).tolist(), "time": 0}, {"c2w": pose(90, [2, 4, 6]).tolist(), "time": 1}]
    path = read_camera_path(write(tmp_path, {"keyframes": keys, "fps": 4, "seconds": 1.25}), CAMERA)
    assert path.n_frames == 5
    for i in range(5):
        torch.testing.assert_close(path.c2w[i], torch.from_numpy(pose(22.5 * i, [0.5 * i, i, 1.5 * i])).float(), rtol=0, atol=1e-5)


def test_keyframes_without_times_span_the_first_to_the_last_frame_and_fov_is_interpolated(tmp_path):
    keys = [{"c2w": pose(yaw, p).tolist(), "fov": fov} for (_, yaw, p), fov in zip(KEYS[:2], (30.0, 60.0))]
    path = read_camera_path(write(tmp_path, {"keyframes": keys, "fps": 5, "seconds": 1, "width": 8, "height": 6}), CAMERA)
    assert path.n_frames == 5
    torch.testing.assert_close(path.c2w[0], torch.from_numpy(pose(*KEYS[0][1:])).float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(path.c2w[4], torch.from_numpy(pose(*KEYS[1][1:])).float(), rtol=0, atol=1e-5)
    assert [(c.W, c.H) for c in path.intrinsics] == [(8, 6)] * 5
    fovs = [vertical_fov(c) for c in path.intrinsics]
    np.testing.assert_allclose(fovs, [30.0, 37.5, 45.0, 52.5, 60.0], atol=1e-9)


def test_fps_and_seconds_from_the_command_line_replace_the_files(tmp_path):
    path = read_camera_path(keyframe_file(tmp_path), CAMERA, fps=4, seconds=3)
    assert path.n_frames == 12 and path.fps == 4
    # Without a fov or size, the scene's camera.
    assert all((c.W, c.H, c.fy) == (40, 30, pytest.approx(50.0)) for c in path.intrinsics)


def test_a_nerfstudio_camera_path(tmp_path):
    frames = [{"camera_to_world": np.vstack((pose(yaw, [0, 0, 4]), [0, 0, 0, 1])).reshape(-1).tolist(), "fov": 50, "aspect": 1.5}
              for yaw in (0, 10, 20)]
    path = read_camera_path(write(tmp_path, {"camera_path": frames, "render_width": 48, "render_height": 32, "fps": 24,
                                             "seconds": 0.125}), CAMERA)
    assert path.n_frames == 3 and path.fps == 24
    torch.testing.assert_close(path.c2w[2], torch.from_numpy(pose(20, [0, 0, 4])).float(), rtol=0, atol=1e-6)
    camera = path.intrinsics[1]
    assert (camera.W, camera.H, camera.cx, camera.cy) == (48, 32, 24, 16)
    assert camera.fy == pytest.approx(16 / math.tan(math.radians(25))) == pytest.approx(focal_from_fov(50, 32))


@pytest.mark.parametrize("data, message", [
    ({"frames": []}, "expected a JSON object with camera_path (nerfstudio) or keyframes"),
    ({"keyframes": [{"c2w": pose(0, [0, 0, 0]).tolist()}], "fps": 10, "seconds": 1}, "keyframes must be a list of at least 2 objects"),
    ({"keyframes": [{"c2w": [[1, 0], [0, 1]]}, {"c2w": pose(0, [0, 0, 0]).tolist()}], "fps": 10, "seconds": 1},
     "keyframes[0].c2w: expected a finite 3x4 or 4x4 camera-to-world matrix (or 16 numbers), got shape [2, 2]"),
    ({"keyframes": [{"c2w": (2 * pose(0, [0, 0, 0])).tolist()}, {"c2w": pose(0, [0, 0, 0]).tolist()}], "fps": 10, "seconds": 1},
     "keyframes[0].c2w: its 3x3 rotation is not a rotation"),
    ({"keyframes": [{"c2w": pose(0, [0, 0, 0]).tolist(), "time": 1}, {"c2w": pose(0, [0, 0, 0]).tolist(), "time": 1}], "fps": 10,
      "seconds": 1}, "keyframe times must increase, got [1.0, 1.0]"),
    ({"keyframes": [{"c2w": pose(0, [0, 0, 0]).tolist(), "time": 0}, {"c2w": pose(0, [0, 0, 0]).tolist()}], "fps": 10, "seconds": 1},
     "give a time to every keyframe or to none"),
    ({"keyframes": [{"c2w": pose(0, [0, 0, 0]).tolist()}] * 2, "fps": 10}, "seconds must be a number above 0, got None"),
    ({"keyframes": [{"c2w": pose(0, [0, 0, 0]).tolist(), "fov": 180}] * 2, "fps": 10, "seconds": 1},
     "keyframes[0].fov must be a number between 0 and 180, got 180"),
    ({"camera_path": [{"fov": 50}]}, "camera_path[0] has no camera_to_world"),
])
def test_bad_camera_paths_name_the_file_and_what_was_expected(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(CameraPathError) as error:
        read_camera_path(path, CAMERA)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "path.json"
    path.write_text("{ not json")
    with pytest.raises(CameraPathError, match=r"path.json: cannot read a camera path \(JSONDecodeError"):
        read_camera_path(path, CAMERA)
