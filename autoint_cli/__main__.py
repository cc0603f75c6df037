"""``python -m autoint_cli train|render|eval|scene|view|demo ...``: the console scripts without installing them."""
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


if __name__ == "__main__":
    sys.exit(main())
