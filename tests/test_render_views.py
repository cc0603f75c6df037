"""Whole views: the rays of a camera other than the scene's, in NDC through the scene's own camera."""
import dataclasses

import torch

from autoint_cli.config import DataConfig
from autoint_cli.render.views import view_rays
from autoint_cli.scene import scene_from_config
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene
from autoint_cli.volume.rays import Intrinsics, camera_rays, to_ndc


def test_another_camera_maps_to_ndc_through_the_scenes_camera(tmp_path):
    scene = scene_from_config(DataConfig(datadir=str(write_demo_scene(tmp_path / "s", DemoSceneSpec(size=10, n_train=2, n_val=1, n_test=1))),
                                         dataset_type="blender"))
    ndc_scene = dataclasses.replace(scene, ndc=True)
    c2w = scene.c2w[0]
    cpu = torch.device("cpu")
    # The scene's own camera, given explicitly, is the default path.
    same, default = view_rays(ndc_scene, c2w, cpu, scene.intrinsics), view_rays(ndc_scene, c2w, cpu)
    torch.testing.assert_close(same.origins, default.origins, rtol=0, atol=1e-6)
    torch.testing.assert_close(same.directions, default.directions, rtol=0, atol=1e-6)
    # A wider, smaller camera: its world rays, mapped by the scene's camera (not its own), which defines the NDC space.
    other = Intrinsics.from_focal(6, 8, 4.0)
    rays = view_rays(ndc_scene, c2w, cpu, other)
    world = camera_rays(c2w, other, scene.near, scene.far)
    expected = to_ndc(world.origins, world.directions, scene.intrinsics)
    assert rays.shape == (6, 8)
    torch.testing.assert_close(rays.origins, expected.origins, rtol=0, atol=0)
    wrong = to_ndc(world.origins, world.directions, other)
    assert not torch.allclose(rays.origins, wrong.origins)
    # Without NDC the camera is simply used.
    plain = view_rays(scene, c2w, cpu, other)
    torch.testing.assert_close(plain.directions, world.directions, rtol=0, atol=0)
