"""Command-line entry points: the only place that reads argv, parses configs or picks a device.

Each ``*_main(argv=None) -> int`` parses its arguments, calls one library
function and returns an exit code. A user's mistake (bad option, bad data)
ends in one line on stderr and exit code 2, never a traceback.
"""
import logging
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import configargparse

from .config import DataConfig, add_dataclass_args, from_namespace, scene_from_config
from .data import SceneError
from .data.synthetic import DemoSceneSpec, write_demo_scene

USER_ERRORS = (SceneError,)


class ArgumentParser(configargparse.ArgumentParser):
    """configargparse's parser, reporting a bad option in one line instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _run(prog: str, body: Callable[[], int]) -> int:
    logging.basicConfig(level=logging.INFO, format=f"{prog}: %(message)s", stream=sys.stderr)
    try:
        return body()
    except USER_ERRORS as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


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
