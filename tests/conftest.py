import os

# Without a GPU, Triton kernels run in Triton's CPU interpreter (read when triton is first imported).
if not os.path.exists("/dev/nvidia0") and "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings

settings.register_profile("autoint", deadline=None, max_examples=40, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "autoint"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(folder, run folder) of the demo scene at 12×12 trained for 20 steps: for tests of what reads a trained run."""
    from autoint_cli.cli import train_main
    from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

    from helpers import write_config

    tmp_path = tmp_path_factory.mktemp("tiny_run")
    scene = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=4, n_val=1, n_test=2))
    assert train_main(["--config", str(write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\nn_iters = 20\n"))]) == 0
    return tmp_path, tmp_path / "logs" / "tiny"
