import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("autoint", deadline=None, max_examples=40, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "autoint"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
