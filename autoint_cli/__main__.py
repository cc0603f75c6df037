"""``python -m autoint_cli train|render|eval|scene|view|demo ...``: the console scripts without installing them."""
import logging
import os
import sys

NAMES = ("train", "render", "eval", "scene", "view", "demo")


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in NAMES:
        print(f"usage: python -m autoint_cli {{{','.join(NAMES)}}} [options]", file=sys.stderr)
        return 2
    try:
        # torch takes seconds to import: a Ctrl-C meanwhile ends in one line too.
        from . import cli
    except KeyboardInterrupt:
        print(f"autoint-{sys.argv[1]}: interrupted while starting; nothing was written", file=sys.stderr)
        return 130
    commands = {"train": cli.train_main, "render": cli.render_main, "eval": cli.eval_main, "scene": cli.scene_main, "view": cli.view_main,
                "demo": cli.demo_scene_main}
    return commands[sys.argv[1]](sys.argv[2:])


def leave(code: int) -> None:
    """Exits with ``code``; a torchrun worker skips the interpreter's teardown once its output is flushed.

    Everything a command writes is complete by now (files are renamed into
    place). Gloo's threads have, rarely, aborted a finished CPU worker during
    teardown, and torchrun then reports the whole run as failed.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    leave(main())
