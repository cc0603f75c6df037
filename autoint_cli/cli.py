"""Command-line entry points: the only place that reads argv, parses configs or picks a device.

Each ``*_main(argv=None) -> int`` parses its arguments, calls one library
function and returns an exit code. A user's mistake (bad option, bad data)
ends in one line on stderr and exit code 2, never a traceback.
"""
import contextlib
import difflib
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import configargparse
import torch

from .checkpoint import CheckpointError
from .config import (
    CONFIG_GROUPS,
    ConfigError,
    DataConfig,
    add_dataclass_args,
    check_train_config,
    from_namespace,
    parse_bool,
    scene_from_config,
    train_config_from_namespace,
)
from .data import SceneError
from .data.synthetic import DemoSceneSpec, write_demo_scene
from .distributed import SINGLE, Distributed
from .models import COMPILE_MODES

USER_ERRORS = (SceneError, ConfigError, CheckpointError)


class ArgumentParser(configargparse.ArgumentParser):
    """configargparse's parser, reporting a bad option in one line instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _run(prog: str, body: Callable[[], int]) -> int:
    from .train import TrainingError

    rank = _torchrun_rank()
    # Under torchrun rank 0 reports; the others speak only of trouble, and say who they are.
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format=f"{prog}{f' (rank {rank})' if rank else ''}: %(message)s", stream=sys.stderr)
    try:
        return body()
    except USER_ERRORS as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1


def scene_main(argv: Optional[Sequence[str]] = None) -> int:
    """``autoint-scene``: load a scene as training would, and print what was loaded."""
    parser = ArgumentParser(
        prog="autoint-scene",
        description="Load a scene (a training config works too) and print its views, cameras and bounds.",
        ignore_unknown_config_file_keys=True,
    )
    parser.add_argument("--config", is_config_file=True, help="config file (key = value)")
    add_dataclass_args(parser, DataConfig, "data")
    args = parser.parse_args(argv)

    def body() -> int:
        scene = scene_from_config(from_namespace(DataConfig, args))
        print(scene.summary())
        return 0

    return _run("autoint-scene", body)


def demo_scene_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m autoint_cli.data.synthetic``: render the demo scene into a folder."""
    defaults = DemoSceneSpec()
    parser = ArgumentParser(prog="python -m autoint_cli.data.synthetic", description="Write the generated demo scene in Blender format.")
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder (default: data/demo)")
    parser.add_argument("--size", type=int, default=defaults.size, help="image width and height in pixels")
    parser.add_argument("--n_train", type=int, default=defaults.n_train)
    parser.add_argument("--n_val", type=int, default=defaults.n_val)
    parser.add_argument("--n_test", type=int, default=defaults.n_test)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the camera positions")
    args = parser.parse_args(argv)
    for name in ("size", "n_train", "n_val", "n_test"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")

    def body() -> int:
        spec = DemoSceneSpec(size=args.size, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed)
        try:
            out = write_demo_scene(args.out, spec)
        except OSError as err:
            raise SceneError(f"{args.out}: cannot write the scene ({err.strerror})") from None
        print(f"wrote {spec.n_train + spec.n_val + spec.n_test} views of {spec.size}x{spec.size} px to {out}")
        return 0

    return _run("autoint_cli.data.synthetic", body)


def _add_run_args(parser) -> None:
    """The options of the commands that load a trained run."""
    parser.add_argument("--expdir", type=Path, required=True, help="the run folder, logs/<expname>")
    parser.add_argument("--ckpt", type=Path, default=None, help="a checkpoint file (default: the latest of the run)")
    parser.add_argument("--max_views", type=int, default=None, help="only the first views of the split")
    parser.add_argument("--testskip", type=int, default=None,
                        help="blender: every k-th test and val view (default: the run's; NeRF's 25-view protocol is 8)")
    parser.add_argument("--chunk", type=_chunk_arg, default=None, metavar="N|auto",
                        help="rays rendered together (default auto: measured to fit half the free GPU memory; 32768 on the CPU)")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default=None,
                        help="matrix precision (default: the run's; bf16 keeps Phi and its differences in float32)")
    parser.add_argument("--compile", type=parse_bool, nargs="?", const=True, default=False, metavar="BOOL",
                        help="torch.compile the whole chunk renderer (CUDA; pays a warm-up per setting)")
    parser.add_argument("--compile_mode", choices=COMPILE_MODES, default="default",
                        help="torch.compile mode with --compile; reduce-overhead replays CUDA graphs of the fixed-shape chunks "
                             "(the max-autotune modes search Triton GEMMs: a long warm-up, no gain measured on an H100)")
    parser.add_argument("--fused_mlp", type=parse_bool, nargs="?", const=True, default=True, metavar="BOOL",
                        help="with --precision bf16 on CUDA, run Phi's MLP as one fused Triton kernel (default true; "
                             "same precision: bf16 products, Phi's output layer in float32)")
    _add_device_args(parser)


def _load_for_rendering(args, device: torch.device):
    """The run, on ``device``, with the precision asked for; returns (run, precision, compile mode or None)."""
    from .render_views import load_run

    run = load_run(args.expdir, device, args.ckpt, args.testskip)
    precision = args.precision or run.config.run.precision
    _set_precision(precision)
    return run, precision, args.compile_mode if args.compile else None


def _chunk_arg(text: str) -> Optional[int]:
    """``auto`` (None) or a positive number of rays."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise configargparse.ArgumentTypeError(f"expected a number of rays or auto, got {text!r}") from None
    if value < 1:
        raise configargparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_device_args(parser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def _torchrun_rank() -> int:
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def _distributed(device_name: str):
    """Yields (Distributed, device): rank r of torchrun's K processes on cuda:LOCAL_RANK (NCCL) or the CPU (gloo).

    Outside torchrun it is a single process on the device asked for. The
    process group is torn down on the way out, errors included.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield SINGLE, _device(device_name)
        return
    import torch.distributed as torch_dist

    rank, local_rank = _torchrun_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices; lower --nproc_per_node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch_dist.init_process_group(backend, rank=rank, world_size=world_size, device_id=device if device.type == "cuda" else None)
    try:
        yield Distributed(rank, world_size, device), device
    finally:
        torch_dist.destroy_process_group()


def _set_precision(precision: str) -> None:
    """TF32 matrix products for tf32 and bf16 runs (bf16 autocast itself applies inside training)."""
    torch.backends.cuda.matmul.allow_tf32 = precision in ("tf32", "bf16")
    torch.backends.cudnn.allow_tf32 = precision in ("tf32", "bf16")


def _check_keys(parser, argv: Sequence[str]) -> None:
    """Refuses unknown keys in the config file and unknown flags, naming the closest known one."""
    known = sorted({a.dest for a in parser._actions if a.option_strings})
    config_path = None
    for i, item in enumerate(argv):
        if item == "--config" and i + 1 < len(argv):
            config_path = argv[i + 1]
        elif item.startswith("--config="):
            config_path = item.split("=", 1)[1]
    if config_path is not None:
        path = Path(config_path)
        if not path.is_file():
            parser.error(f"{path}: config file not found")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            key = re.split(r"[=:\s]", text, maxsplit=1)[0].strip()
            if key not in known:
                parser.error(f"{path}:{number}: unknown key '{key}'{_closest(key, known)}")
    for item in argv:
        if item.startswith("--"):
            key = item[2:].split("=", 1)[0]
            if key not in known and key != "help":
                parser.error(f"unknown option --{key}{_closest(key, known)}")


def _closest(key: str, known: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    """``autoint-train --config FILE [--KEY VALUE ...]``."""
    from .train import train

    parser = ArgumentParser(prog="autoint-train", description="Train AutoInt grad networks on a scene; resumes from the latest checkpoint.")
    parser.add_argument("--config", is_config_file=True, help="config file (key = value); flags override it")
    for name, cls in CONFIG_GROUPS.items():
        add_dataclass_args(parser, cls, name)
    _add_device_args(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    _check_keys(parser, argv)
    args = parser.parse_args(argv)

    def body() -> int:
        config = train_config_from_namespace(args)
        check_train_config(config)
        _set_precision(config.run.precision)
        config_text = Path(args.config).read_text() if args.config else None
        with _distributed(args.device) as (dist, device):
            result = train(config, device, config_text, dist)
        code = 128 + int(getattr(signal, result.interrupted_by)) if result.interrupted_by else 0
        if not dist.is_main:
            return code
        if result.interrupted_by is not None:
            # Under torchrun, any number of processes can take over from the checkpoint.
            launcher = "torchrun --nproc_per_node=K -m autoint_cli train" if dist.active else "autoint-train"
            command = " ".join([launcher, *argv])
            print(f"{config.run.expname}: interrupted by {result.interrupted_by} at step {result.step}; checkpoint {result.checkpoint}. "
                  f"Resume with: {command}", file=sys.stderr)
            return code
        print(f"{config.run.expname}: step {result.step}, loss {result.loss:.4g}, {result.seconds:.1f} s on {device}; checkpoint {result.checkpoint}")
        return 0

    return _run("autoint-train", body)


def render_main(argv: Optional[Sequence[str]] = None) -> int:
    """``autoint-render --expdir logs/<expname> [...]``: PNG frames (and MP4) of a split or the camera path."""
    from .render_views import chunk_for_view, make_renderer, render_poses, split_poses, write_views

    parser = ArgumentParser(prog="autoint-render", description="Render a trained run's test/val/train views or its camera path.")
    _add_run_args(parser)
    parser.add_argument("--split", choices=("test", "val", "train", "path"), default="test")
    parser.add_argument("--renderer", choices=("integral", "quadrature"), default="integral")
    parser.add_argument("--n_sections", type=int, default=None, help="N sections for the integral renderer (default: as trained)")
    parser.add_argument("--n_samples", type=int, default=128, help="K samples per ray for the quadrature renderer")
    parser.add_argument("--video", type=parse_bool, nargs="?", const=True, default=None, metavar="BOOL", help="also write rgb.mp4 and disp.mp4 (default: only for path)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: EXPDIR/render_<split>_<step>)")
    args = parser.parse_args(argv)
    _check_positive(parser, args, ("n_sections", "n_samples", "max_views"))

    def body() -> int:
        with _distributed(args.device) as (dist, device):
            run, precision, compile_mode = _load_for_rendering(args, device)
            poses = split_poses(run.scene, args.split)[: args.max_views]
            background = torch.tensor(run.scene.background, device=device)
            render = make_renderer(run.model, background, args.renderer, args.n_sections, args.n_samples, precision == "bf16", compile_mode,
                                   args.fused_mlp)
            chunk = args.chunk or chunk_for_view(run.scene, poses[0], render, device)
            views = render_poses(run.scene, poses, render, chunk, device, dist=dist)
        if views is None:  # another rank than 0: rank 0 writes the files
            return 0
        out = args.out or args.expdir / f"render_{args.split}_{run.step:06d}"
        video = args.split == "path" if args.video is None else args.video
        write_views(views, out, video)
        what = f"N={args.n_sections or run.config.model.n_sections}" if args.renderer == "integral" else f"K={args.n_samples}"
        ms = sum(views.ms_per_frame) / len(views.ms_per_frame)
        procs = f", {dist.world_size} processes" if dist.active else ""
        print(f"{len(poses)} {args.split} views, {args.renderer} {what}: {ms:.1f} ms per frame ({run.scene.W}x{run.scene.H}), "
              f"{views.frames_per_sec:.3g} frames/s in all{procs} -> {out}")
        return 0

    return _run("autoint-render", body)


def eval_main(argv: Optional[Sequence[str]] = None) -> int:
    """``autoint-eval --expdir logs/<expname> [...]``: PSNR/SSIM/LPIPS and timings as JSON, Markdown and a plot."""
    from .evaluate import evaluate, metrics_table, write_metrics

    parser = ArgumentParser(prog="autoint-eval", description="Evaluate a trained run: integral rendering at several N against quadrature.")
    _add_run_args(parser)
    parser.add_argument("--n_sections", type=int, nargs="+", default=[8, 16, 32], help="N values for the integral renderer")
    parser.add_argument("--quadrature_samples", type=int, default=128, help="K for the quadrature renderer (0: skip it)")
    parser.add_argument("--split", choices=("test", "val", "train"), default="test")
    parser.add_argument("--out", type=Path, default=None, help="metrics file (default: EXPDIR/metrics.json)")
    args = parser.parse_args(argv)
    _check_positive(parser, args, ("max_views",))
    if min(args.n_sections) < 1 or args.quadrature_samples < 0:
        parser.error("--n_sections must be at least 1 and --quadrature_samples 0 or more")

    def body() -> int:
        with _distributed(args.device) as (dist, device):
            run, precision, compile_mode = _load_for_rendering(args, device)
            metrics = evaluate(run, device, args.n_sections, args.quadrature_samples, args.split, args.chunk, args.max_views, precision, dist,
                               compile_mode, args.fused_mlp)
        if metrics is None:  # another rank than 0: rank 0 writes the metrics
            return 0
        written = write_metrics(metrics, args.out or args.expdir / "metrics.json")
        print(metrics_table(metrics), end="")
        print("wrote " + ", ".join(str(p) for p in written))
        return 0

    return _run("autoint-eval", body)


def _check_positive(parser, args, names) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")
