"""What keeps a training run safe: clean stops on signals, NaN/inf steps skipped and counted, the run folder checked first."""
import fcntl
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..config import ConfigError, ModelConfig, RunConfig, TrainConfig, flatten
from ..render.chunks import available_memory
from ..runs.checkpoint import checkpoint_dir
from ..scene import Scene
from ..utils.atomic import write_text

logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stays NaN); the message says what was kept."""


class StopRequest:
    """Turns SIGINT and SIGTERM into a flag the loop checks between steps, so a checkpoint is written before exiting."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: Optional[int] = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def nonfinite_flag(grads: Sequence[Tensor]) -> Tensor:
    """1.0 when any of ``grads`` holds a NaN or inf (their total norm is not finite), else 0.0: a device tensor, no sync."""
    return (~torch.isfinite(torch.nn.utils.get_total_norm(grads))).float()


class NonfiniteSteps:
    """Counts, on the device, the steps whose gradients held a NaN or inf; the host reads the counts now and then.

    Each step's flag (from :func:`nonfinite_flag`) also went to fused Adam,
    which then left the weights and its moments untouched. Reading the
    counts synchronises with the device, so it happens every few steps.
    """

    def __init__(self, device: torch.device, limit: int, step: int):
        self.limit = limit
        self.skipped = torch.zeros((), device=device)
        self.streak = torch.zeros((), device=device)
        self.reported = 0
        self.since = step

    def record(self, found: Tensor) -> None:
        """Adds one step's flag (1.0: skipped) to the counts."""
        self.skipped += found
        self.streak = (self.streak + 1) * found

    def check(self, step: int, last_saved: Optional[Path]) -> None:
        """Warns of steps skipped since the last check; stops when ``limit`` came in a row."""
        skipped, streak = (int(x) for x in torch.stack([self.skipped, self.streak]).tolist())
        if skipped > self.reported:
            logger.warning("steps %d-%d: %d with NaN or inf in the loss or gradients; skipped (weights unchanged)", self.since + 1, step, skipped - self.reported)
            self.reported = skipped
        self.since = step
        if streak >= self.limit:
            kept = f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was written"
            raise TrainingError(f"{streak} steps in a row with NaN/inf up to step {step}; stopped ({kept}); lower lrate or check the data")


def check_batch(run: RunConfig, model: ModelConfig, scene: Scene, device: torch.device) -> None:
    """Refuses an ``N_rand`` larger than the training pixels, or whose batch (rays, pixels, sample offsets) would not fit in half
    the memory available, before the first step: such a step would run for minutes or fail deep inside."""
    pixels = len(scene.i_train) * scene.H * scene.W
    if run.N_rand > pixels:
        raise ConfigError(f"N_rand {run.N_rand} is more than the {pixels:,} training pixels of {scene.name}; use at most {pixels}")
    # Per ray, float32: origins, directions, near, far, target (11 values), the sample offsets (N·M) and the σ noise (N).
    needed = 4.0 * run.N_rand * (11 + model.n_sections * (model.samples_per_section + 1))
    free = available_memory(device)
    if free is not None and needed > 0.5 * free:
        raise ConfigError(f"N_rand {run.N_rand}: one step's batch needs about {needed / 2**30:.3g} GiB, more than half of the "
                          f"{free / 2**30:.3g} GiB available on {device}; lower N_rand")


def checkpoints_on_disk(run: RunConfig) -> int:
    """The most checkpoints a run holds at once: the latest ``keep_checkpoints`` (or every one), those kept for good every
    ``i_keep`` steps, the final one, and one more being written."""
    written = run.n_iters // run.i_weights + 1
    if not run.keep_checkpoints:
        return written + 1
    kept_for_good = run.n_iters // math.lcm(run.i_weights, run.i_keep) if run.i_keep else 0
    return min(written, run.keep_checkpoints + kept_for_good) + 1


def check_run_dir(run_dir: Path, n_parameter_bytes: int, run: RunConfig) -> None:
    """Before any training: the run folder can be written, and holds room for the checkpoints the run will keep.

    A checkpoint holds the weights and Adam's two moments: about 3x the parameter bytes.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write_check."):
            pass
    except OSError as err:
        raise ConfigError(f"{run_dir}: cannot write the run folder ({err.strerror}); check basedir") from None
    count = checkpoints_on_disk(run)
    needed = count * 3 * n_parameter_bytes
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise ConfigError(f"{run_dir}: {free / 2**20:.0f} MiB free, but {count} checkpoints need about {needed / 2**20:.0f} MiB; "
                          "free space, change basedir or lower keep_checkpoints")


def write_run_files(run_dir: Path, config: TrainConfig, config_text: Optional[str]) -> None:
    """config.txt (the file as given) and args.txt (every resolved value, sorted)."""
    if config_text is not None:
        write_text(run_dir / "config.txt", config_text)
    # A tuple as a config file writes a list ([4, 10]), so that the line reads back as the same value.
    lines = [f"{key} = {list(value) if isinstance(value, tuple) else value}" for key, value in sorted(flatten(config).items())]
    write_text(run_dir / "args.txt", "\n".join(lines) + "\n")


class RunLock:
    """An exclusive lock on a run folder while one trainer writes it (``flock`` on ``run_dir/.lock``).

    A second trainer on the same folder is refused at once, naming the
    process that holds it. The operating system drops the lock when its
    process dies, so a lock file left by a killed run is simply taken over
    (said in the log). Renders and evaluations never take it.
    """

    NAME = ".lock"

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / self.NAME
        self.handle = None

    def __enter__(self) -> "RunLock":
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise ConfigError(f"{self.path.parent}: another autoint-train is writing this run folder (process {holder}); "
                              "wait for it to finish, stop it, or use another expname") from None
        self.handle.seek(0)
        previous = self.handle.read().strip()
        if previous and previous != str(os.getpid()):
            logger.info("%s: taking over the lock of process %s, which no longer runs", self.path.parent, previous)
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.close()


def set_aside_checkpoints(run_dir: Path) -> Optional[Path]:
    """For ``no_reload``: moves an earlier run's checkpoints to ``checkpoints_replaced_<time>/`` (said in the log).

    The new run then starts from an empty checkpoints folder, so renders and resumes see only its
    checkpoints, and nothing of the old run is overwritten or lost. Returns the new folder, if any.
    """
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    aside = run_dir / f"checkpoints_replaced_{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while aside.exists():
        n += 1
        aside = run_dir / f"checkpoints_replaced_{time.strftime('%Y%m%d-%H%M%S')}_{n}"
    os.replace(folder, aside)
    logger.warning("no_reload: the earlier checkpoints of %s are kept in %s; this run starts afresh", run_dir, aside)
    return aside
