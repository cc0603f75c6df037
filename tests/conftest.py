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
