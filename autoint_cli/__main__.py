"""``python -m autoint_cli train|render|eval|scene|demo ...``: the console scripts without installing them."""
import sys

from .cli import demo_scene_main, eval_main, render_main, scene_main, train_main

COMMANDS = {"train": train_main, "render": render_main, "eval": eval_main, "scene": scene_main, "demo": demo_scene_main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m autoint_cli {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
