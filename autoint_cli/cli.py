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
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import configargparse
import torch

from .config import (
    CONFIG_GROUPS,
    ConfigError,
    DataConfig,
    EvalConfig,
    EvalSpeedConfig,
    LoadConfig,
    RenderConfig,
    SpeedConfig,
    ViewConfig,
    ViewSpeedConfig,
    add_dataclass_args,
    check_train_config,
    from_namespace,
    invalid_value,
    train_config_from_namespace,
)
from .evaluate import evaluate, metrics_table, write_metrics
from .render.media import DepthMaps, write_frames
from .render.renderer import Renderer, render_settings
from .render.skipping import Skipping
from .render.views import depth_meaning, render_poses, split_poses
from .runs.checkpoint import CheckpointError
from .runs.loader import load_run
from .scene import DATASETS, SceneError, scene_from_config
from .scene.camera_path import read_camera_path
from .scene.colmap import CAMERA_MODELS, MATCHERS, ImportSettings, import_scene
from .scene.synthetic import DemoSceneSpec, write_demo_scene
from .train import TrainingError, train
from .utils.distributed import SINGLE, Distributed

USER_ERRORS = (SceneError, ConfigError, CheckpointError)
# Choices whose lists live above the config module.
CHOICES = {"dataset_type": sorted(DATASETS)}


class ArgumentParser(configargparse.ArgumentParser):
    """configargparse's parser, reporting a bad option in one line instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _run(prog: str, body: Callable[[], int]) -> int:
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
    except (MemoryError, RuntimeError) as err:
        # torch.OutOfMemoryError is a RuntimeError; the CPU allocator raises a plain one that says so.
        if not isinstance(err, (MemoryError, torch.OutOfMemoryError)) and "can't allocate memory" not in str(err):
            raise
        print(f"{prog}: error: out of memory ({_first_line(err)}); lower --n_sections, --n_samples or --chunk", file=sys.stderr)
        return 1
    except OSError as err:
        # A full disk or a folder that cannot be written, met while writing outputs: they are atomic, so the earlier files stand.
        where = f"{err.filename}: " if err.filename else ""
        print(f"{prog}: error: {where}{err.strerror or err}; earlier outputs were left as they were", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Outputs are written whole or not at all (autoint_cli.utils.atomic): nothing half-written is left behind.
        print(f"{prog}: interrupted; no output was left half-written", file=sys.stderr)
        return 130


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def scene_import_main(argv: Sequence[str]) -> int:
    """``autoint-scene import --images DIR --out SCENE [...]``: photos to an LLFF scene (structure from motion via pycolmap)."""
    parser = ArgumentParser(prog="autoint-scene import", description="Make an LLFF scene from photos: structure from motion through "
                            "pycolmap (or an existing COLMAP model), poses_bounds.npy, images/ and images_<K>/.")
    parser.add_argument("--images", type=Path, required=True, help="folder of the photos (.png, .jpg)")
    parser.add_argument("--out", type=Path, required=True, help="the new scene folder (must not exist or be empty)")
    parser.add_argument("--camera_model", choices=sorted(CAMERA_MODELS), default=ImportSettings.camera_model,
                        help="the shared camera's model for structure from motion")
    parser.add_argument("--matcher", choices=MATCHERS, default=ImportSettings.matcher, help="which photo pairs are matched")
    parser.add_argument("--factor", type=int, nargs="*", default=[], help="also write images_<K>/ downsized K times")
    parser.add_argument("--colmap_model", type=Path, default=None, help="convert this COLMAP model (.bin or .txt) instead of running SfM")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.factor):
        parser.error(f"--factor values must be at least 1, got {args.factor}")

    def body() -> int:
        settings = ImportSettings(args.camera_model, args.matcher, tuple(args.factor))
        out = import_scene(args.images, args.out, settings, args.colmap_model)
        print(f"wrote {out}: poses_bounds.npy, images/{''.join(f', images_{k}/' for k in sorted(set(args.factor)))} "
              f"(dataset_type = llff, datadir = {out})")
        return 0

    return _run("autoint-scene import", body)


def scene_main(argv: Optional[Sequence[str]] = None) -> int:
    """``autoint-scene``: load a scene as training would, and print what was loaded; ``autoint-scene import`` makes one."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["import"]:
        return scene_import_main(argv[1:])
    parser = ArgumentParser(
        prog="autoint-scene",
        description="Load a scene (a training config works too) and print its views, cameras and bounds.",
        ignore_unknown_config_file_keys=True,
    )
    parser.add_argument("--config", is_config_file=True, help="config file (key = value)")
    add_dataclass_args(parser, DataConfig, "data", CHOICES)
    config_path = _config_path(argv)
    if config_path is not None:
        _config_text(parser, config_path)
    args = parser.parse_args(argv)

    def body() -> int:
        # A command that checks never writes: not even the demo scene.
        scene = scene_from_config(from_namespace(DataConfig, args), write=False)
        print(scene.summary())
        return 0

    return _run("autoint-scene", body)


def demo_scene_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m autoint_cli demo``: render the demo scene into a folder."""
    defaults = DemoSceneSpec()
    parser = ArgumentParser(prog="python -m autoint_cli demo", description="Write the generated demo scene in Blender format.")
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder (default: data/demo)")
    parser.add_argument("--size", type=int, default=defaults.size, help="image width and height in pixels")
    parser.add_argument("--n_train", type=int, default=defaults.n_train)
    parser.add_argument("--n_val", type=int, default=defaults.n_val)
    parser.add_argument("--n_test", type=int, default=defaults.n_test)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the camera positions")
    parser.add_argument("--train_elevation", type=float, nargs=2, default=defaults.train_elevation, metavar=("LOW", "HIGH"),
                        help="degrees above the horizon between which the training (and val) cameras lie")
    parser.add_argument("--holdout_elevation", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="put the val and test cameras between these elevations instead: views unlike the training ones")
    parser.add_argument("--opaque_density", type=float, default=defaults.opaque_density,
                        help="give every shape this density, so that only surfaces are seen (0: the demo's own, partly translucent)")
    args = parser.parse_args(argv)
    for name in ("size", "n_train", "n_val", "n_test"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("train_elevation", "holdout_elevation"):
        band = getattr(args, name)
        if band is not None and not 0 <= band[0] < band[1] <= 90:
            parser.error(f"--{name} must be two elevations 0 <= LOW < HIGH <= 90, got {band[0]:g} {band[1]:g}")
    if args.opaque_density < 0:
        parser.error(f"--opaque_density must be at least 0, got {args.opaque_density:g}")

    def body() -> int:
        holdout = None if args.holdout_elevation is None else tuple(args.holdout_elevation)
        spec = DemoSceneSpec(size=args.size, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed,
                             train_elevation=tuple(args.train_elevation), holdout_elevation=holdout, opaque_density=args.opaque_density)
        try:
            out = write_demo_scene(args.out, spec)
        except OSError as err:
            raise SceneError(f"{args.out}: cannot write the scene ({err.strerror})") from None
        print(f"wrote {spec.n_train + spec.n_val + spec.n_test} views of {spec.size}x{spec.size} px to {out}")
        return 0

    return _run("autoint_cli demo", body)


def _parse_loaded(parser, argv, *groups) -> tuple:
    """The flags of ``groups`` (dataclasses) and --device, parsed into one instance of each and the device name."""
    for cls in groups:
        add_dataclass_args(parser, cls, cls.__name__.replace("Config", "").lower())
    _add_device_args(parser)
    args = parser.parse_args(argv)
    configs = tuple(from_namespace(cls, args) for cls in groups)
    for config in configs:
        problem = invalid_value(config)
        if problem:
            parser.error(problem)
    return (*configs, args.device)


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
        # No rank tears its connections down while another is still inside a collective.
        torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()


def _check_keys(parser, argv: Sequence[str]) -> None:
    """Refuses unknown keys in the config file and unknown flags, naming the closest known one."""
    known = sorted({a.dest for a in parser._actions if a.option_strings})
    config_path = _config_path(argv)
    if config_path is not None:
        for number, line in enumerate(_config_text(parser, config_path).splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            key = re.split(r"[=:\s]", text, maxsplit=1)[0].strip()
            if key not in known:
                parser.error(f"{config_path}:{number}: unknown key '{key}'{_closest(key, known)}")
    for item in argv:
        if item.startswith("--"):
            key = item[2:].split("=", 1)[0]
            if key not in known and key != "help":
                parser.error(f"unknown option --{key}{_closest(key, known)}")


def _config_path(argv: Sequence[str]) -> Optional[Path]:
    """The file given as ``--config FILE`` or ``--config=FILE`` (the last one), if any."""
    config_path = None
    for i, item in enumerate(argv):
        if item == "--config" and i + 1 < len(argv):
            config_path = argv[i + 1]
        elif item.startswith("--config="):
            config_path = item.split("=", 1)[1]
    return None if config_path is None else Path(config_path)


def _config_text(parser, path: Path) -> str:
    """The text of a config file, or one line naming it when it is missing or not UTF-8 text."""
    if not path.is_file():
        parser.error(f"{path}: config file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        parser.error(f"{path}: not a UTF-8 text file (byte 0x{err.object[err.start]:02x} at offset {err.start})")
    except OSError as err:
        parser.error(f"{path}: cannot read the config file ({err.strerror})")


def _closest(key: str, known: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    """``autoint-train --config FILE [--KEY VALUE ...]``."""
    parser = ArgumentParser(prog="autoint-train", description="Train AutoInt grad networks on a scene; resumes from the latest checkpoint.")
    parser.add_argument("--config", is_config_file=True, help="config file (key = value); flags override it")
    for name, cls in CONFIG_GROUPS.items():
        add_dataclass_args(parser, cls, name, CHOICES)
    _add_device_args(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    _check_keys(parser, argv)
    args = parser.parse_args(argv)

    def body() -> int:
        config = train_config_from_namespace(args)
        check_train_config(config)
        config_text = Path(args.config).read_text(encoding="utf-8") if args.config else None
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


def _check_output(path: Path, folder: bool) -> None:
    """Refuses, before any rendering, an output that could not be written: a file where a folder goes (or the reverse), or a
    location that is not writable."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: a file is in the way; expected a folder (new or earlier output)")
    if not folder and path.is_dir():
        raise ConfigError(f"--out {path}: is a folder; expected a file name such as {path / 'metrics.json'}")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{existing}: not writable, so {path} cannot be written; choose another --out")


def _render_views(scene, options: RenderConfig, max_views: Optional[int]):
    """(label, poses, cameras or None, fps) of what ``autoint-render`` renders: a split, or the frames of --camera_path."""
    for name in ("fps", "seconds"):
        value = getattr(options, name)
        if value is not None and not value > 0:
            raise ConfigError(f"--{name} must be positive, got {value}")
    if options.camera_path is None:
        return options.split, split_poses(scene, options.split)[:max_views], None, 30.0
    path = read_camera_path(options.camera_path, scene.intrinsics, options.fps, options.seconds)
    return "camera_path", path.c2w[:max_views], path.intrinsics[:max_views], path.fps


def render_main(argv: Optional[Sequence[str]] = None) -> int:
    """``autoint-render --expdir logs/<expname> [...]``: PNG frames (and MP4) of a split or the camera path."""
    parser = ArgumentParser(prog="autoint-render", description="Render a trained run's test/val/train views or its camera path.")
    load, speed, options, device_name = _parse_loaded(parser, argv, LoadConfig, SpeedConfig, RenderConfig)

    def body() -> int:
        with _distributed(device_name) as (dist, device):
            run = load_run(load.expdir, device, load.ckpt, load.testskip)
            label, poses, cameras, fps = _render_views(run.scene, options, load.max_views)
            out = options.out or load.expdir / f"render_{label}_{run.step:06d}"
            _check_output(out, folder=True)
            settings = render_settings(speed, run.config.run.precision, renderer=options.renderer, n_sections=options.n_sections,
                                       n_samples=options.n_samples, refine=options.refine, refine_sections=options.refine_sections)
            renderer = Renderer(run.model, torch.tensor(run.scene.background, device=device), settings)
            what = f"N={options.n_sections or run.config.model.n_sections}" if options.renderer == "integral" else f"K={options.n_samples}"
            if options.refine > 1:
                cut = options.refine_sections
                what += f", {cut} section{'s' if cut > 1 else ''} refined x{options.refine}"
            width, height = (cameras[0].W, cameras[0].H) if cameras else (run.scene.W, run.scene.H)
            logging.getLogger(__name__).info("rendering %d %s views (%dx%d, %s %s) to %s", len(poses), label, width, height,
                                             options.renderer, what, out)
            views = render_poses(run.scene, poses, renderer, dist=dist, intrinsics=cameras)
        if views is None:  # another rank than 0: rank 0 writes the files
            return 0
        depth = DepthMaps(views.depth, views.acc, depth_meaning(run.scene)) if options.depth else None
        video = label in ("path", "camera_path") if options.video is None else options.video
        write_frames(out, views.rgb, views.disparity, video, depth=depth, fps=fps)
        ms = sum(views.ms_per_frame) / len(views.ms_per_frame)
        procs = f", {dist.world_size} processes" if dist.active else ""
        print(f"{len(poses)} {label} views, {options.renderer} {what}: {ms:.1f} ms per frame ({width}x{height}), "
              f"{views.frames_per_sec:.3g} frames/s in all{procs} -> {out}")
        return 0

    return _run("autoint-render", body)


def _warm_up_viewer(frames, height: int, speed: SpeedConfig) -> None:
    """Compiles and captures the viewer's renderer before the page is served, saying so: it takes a while."""
    what = " and ".join(name for name, on in (("compiling", speed.compile), ("capturing CUDA graphs of", speed.cuda_graphs)) if on)
    logging.getLogger(__name__).info("%s the renderer before serving (about a minute the first time with --compile)", what)
    logging.getLogger(__name__).info("renderer ready in %.0f s", frames.warm_up(height))


def view_main(argv: Optional[Sequence[str]] = None) -> int:
    """``autoint-view --expdir logs/<expname> [...]``: the trained scene in the browser, drawn by the integral renderer."""
    parser = ArgumentParser(prog="autoint-view", description="Serve a trained run to the browser: orbit, pan and zoom, change N, "
                            "see rgb, depth or opacity, and keep keyframes as a camera path.")
    load, view_speed, options, device_name = _parse_loaded(parser, argv, LoadConfig, ViewSpeedConfig, ViewConfig)

    def body() -> int:
        from .viewer.frames import FrameRenderer
        from .viewer.server import ViewerOptions, check_port, start_viewer, viser_module

        viser_module()
        check_port(options.host, options.port)
        if options.host not in ("127.0.0.1", "localhost", "::1"):
            logging.getLogger(__name__).warning("serving on %s: anyone who can reach this machine can see the scene", options.host)
        device = _device(device_name)
        run = load_run(load.expdir, device, load.ckpt)
        speed = view_speed.resolved(device.type == "cuda")
        settings = render_settings(speed, run.config.run.precision, n_sections=options.n_sections, refine=options.refine,
                                   refine_sections=options.refine_sections)
        # A new N on the page is compiled on a thread of its own; eager frames meanwhile, not a frozen page.
        frames = FrameRenderer(run, settings, device, warm_in_background=True, window=options.window_sections or None)
        height = options.max_height or (800 if device.type == "cuda" else 64)
        if frames.pieces:
            _warm_up_viewer(frames, height, speed)
        server = start_viewer(frames, options.host, options.port, ViewerOptions(max_height=height, skip_empty=options.skip_empty),
                              load.expdir / "camera_paths")
        print(f"autoint-view: http://{options.host}:{options.port} ({run.config.run.expname}, step {run.step}); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(1.0)
        finally:
            server.stop()

    return _run("autoint-view", body)


def eval_main(argv: Optional[Sequence[str]] = None) -> int:
    """``autoint-eval --expdir logs/<expname> [...]``: PSNR/SSIM/LPIPS and timings as JSON, Markdown and a plot."""
    parser = ArgumentParser(prog="autoint-eval", description="Evaluate a trained run: integral rendering at several N against quadrature.")
    load, eval_speed, options, device_name = _parse_loaded(parser, argv, LoadConfig, EvalSpeedConfig, EvalConfig)

    def body() -> int:
        with _distributed(device_name) as (dist, device):
            speed = eval_speed.resolved(device.type == "cuda", options.skip_empty)
            out = options.out or load.expdir / "metrics.json"
            _check_output(out, folder=False)
            run = load_run(load.expdir, device, load.ckpt, load.testskip)
            base = render_settings(speed, run.config.run.precision, refine_sections=options.refine_sections)
            # An evaluation's frames share one size: its first pass can be one piece of its own (see Skipping).
            skipping = Skipping(window=options.window_sections or None, whole_first_pass=True) if options.skip_empty else None
            metrics = evaluate(run, device, base, options.n_sections, options.quadrature_samples, options.split, load.max_views, dist,
                               options.refine, skipping)
        if metrics is None:  # another rank than 0: rank 0 writes the metrics
            return 0
        written = write_metrics(metrics, out)
        print(metrics_table(metrics), end="")
        print("wrote " + ", ".join(str(p) for p in written))
        return 0

    return _run("autoint-eval", body)
