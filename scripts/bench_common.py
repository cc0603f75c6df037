"""What the GPU benchmark scripts share: the device, its name, the camera they render, the timing loop and an argument type."""
import argparse
import math
import statistics
import time
from typing import Any, Callable, Optional, Tuple

import torch

from autoint_cli.scene.poses import spherical_pose
from autoint_cli.volume.rays import Intrinsics

# nerf_synthetic's horizontal field of view, so a frame costs what a Blender test view costs.
BLENDER_CAMERA_ANGLE_X = 0.6911112070083618


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero (a network's depth or width)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above zero, got {text!r}")
    return value


def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_label(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def blender_view(size: int, device: torch.device, height: Optional[int] = None) -> Tuple[Intrinsics, torch.Tensor]:
    """A Blender-style camera ``size`` pixels wide (and ``height`` high; square by default) at radius 4, 30° above the object."""
    intrinsics = Intrinsics.from_focal(height or size, size, 0.5 * size / math.tan(0.5 * BLENDER_CAMERA_ANGLE_X))
    return intrinsics, torch.from_numpy(spherical_pose(30.0, -30.0, 4.0)).float().to(device)


def time_calls(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> Tuple[float, Any]:
    """(median milliseconds of ``repeats`` calls after ``warmup`` untimed ones, the last call's result).

    Each timed call is closed by a device synchronisation; the peak-memory
    counter is reset after the warm-up, so it covers the timed calls only.
    """
    out = None
    for _ in range(warmup):
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), out
