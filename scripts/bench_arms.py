#!/usr/bin/env python3
"""Levers against a baseline at equal training time: one bench_quality run per arm, then a table of the differences.

Each ``--arm NAME=FLAGS`` is the same benchmark with FLAGS added to autoint-train
(``--arm base=`` adds none); the first arm is the baseline. Every flag this
script does not know goes to ``scripts/bench_quality.py`` unchanged, for every
arm (``--config``, ``--seconds``, ``--seeds``, ``--splits``, ``--n_sections``,
flags after ``--`` for all arms' trainings, …). Arm NAME writes
``<workdir>/NAME.json`` and trains in ``<workdir>/NAME/``, so a call that
stopped part-way takes up where it was: bench_quality keeps the seeds it
finished. ``--out`` gets, per arm, its flags, steps and scores on each split
and N, and the difference to the baseline's mean.

    python3 scripts/bench_arms.py --workdir arms --out arms.json --arm base= --arm w128="--netwidth 128" \\
        --config configs/lego_fast_n32_m1.txt --seconds 140 --seeds 0 --splits val --n_sections 16 32

Arms run one after another, each alone on the device; ``--arms_at_once`` runs
them together (each JSON then records the others as sharing the device).
"""
import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
# Runs from a checkout that is not installed too (as on a device machine): the package is found beside the script.
sys.path.insert(0, str(ROOT))
BENCH_QUALITY = ROOT / "scripts" / "bench_quality.py"
# Flags bench_arms sets for each arm itself: given among the shared ones they would clash.
PER_ARM = ("--out", "--workdir", "--alongside", "--merge")
NAME = re.compile(r"[A-Za-z0-9_.-]+")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """This script's own flags; the rest, for bench_quality as given, in ``shared`` (its own flags) and ``train`` (those
    after ``--``, for every arm's training)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", action="append", required=True, metavar="NAME=FLAGS",
                        help="one arm: a name (letters, digits, '_', '.', '-') and the autoint-train flags it adds; the first is the baseline")
    parser.add_argument("--workdir", type=Path, required=True, help="each arm's runs and JSON go under it")
    parser.add_argument("--out", type=Path, required=True, help="the comparison JSON to write")
    parser.add_argument("--arms_at_once", action="store_true", help="train the arms at the same time on one device")
    args, args.shared = parser.parse_known_args(argv[:cut])
    args.train = argv[cut + 1:]
    clash = [flag for flag in PER_ARM if flag in args.shared]
    if clash:
        parser.error(f"{clash[0]} is set per arm by bench_arms; give --workdir and --out of the comparison instead")
    args.arms = [parse_arm(parser, text) for text in args.arm]
    args.workdir, args.out = args.workdir.resolve(), args.out.resolve()
    names = [name for name, _ in args.arms]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        parser.error(f"--arm {twice[0]}: named twice")
    return args


def parse_arm(parser: argparse.ArgumentParser, text: str) -> Tuple[str, List[str]]:
    """``NAME=FLAGS`` as (NAME, FLAGS split as a shell would); one line for anything else."""
    name, equals, flags = text.partition("=")
    if not equals or not NAME.fullmatch(name):
        parser.error(f"--arm {text!r}: expected NAME=FLAGS with a NAME of letters, digits, '_', '.' or '-'")
    try:
        return name, shlex.split(flags)
    except ValueError as err:
        parser.error(f"--arm {text!r}: its flags do not parse ({err})")


def arm_command(args: argparse.Namespace, name: str, flags: List[str]) -> List[str]:
    """bench_quality for one arm: the shared flags, its own workdir and JSON, and its flags after the shared training flags."""
    alongside = len(args.arms) - 1 if args.arms_at_once else 0
    return [sys.executable, str(BENCH_QUALITY), *args.shared, "--workdir", str(args.workdir / name), "--out", str(args.workdir / f"{name}.json"),
            "--alongside", str(alongside), "--", *args.train, *flags]


def run_arms(args: argparse.Namespace) -> List[str]:
    """Runs every arm's benchmark (in turn, or all at once); returns the names of those that failed, each told in one line."""
    commands = {name: arm_command(args, name, flags) for name, flags in args.arms}
    groups = [list(commands)] if args.arms_at_once else [[name] for name in commands]
    failed = []
    for group in groups:
        processes = {name: subprocess.Popen(commands[name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for name in group}
        for name, process in processes.items():
            out, err = process.communicate()
            if process.returncode != 0:
                lines = (err or out).strip().splitlines()
                print(f"bench_arms: arm {name} failed (exit {process.returncode}): {lines[-1] if lines else 'no output'}", file=sys.stderr)
                failed.append(name)
    return failed


def compare(args: argparse.Namespace, names: Sequence[str]) -> Dict:
    """Per arm (of ``names``, the baseline first) its flags, seeds, steps and scores, and each score's difference to the baseline."""
    reports = {name: json.loads((args.workdir / f"{name}.json").read_text()) for name in names}
    flags = dict(args.arms)
    base = reports[names[0]]["summary"]
    arms = []
    for name, report in reports.items():
        summary, scores = report["summary"], {}
        for split in report["settings"]["splits"]:
            scores[split] = {key: {"psnr_mean": v["psnr_mean"], "psnr_std": v["psnr_std"], "psnr_worst_mean": v["psnr_worst_mean"],
                                   "ms_per_frame_mean": v["ms_per_frame_mean"],
                                   "psnr_delta": v["psnr_mean"] - base[split][key]["psnr_mean"] if key in base.get(split, {}) else None}
                             for key, v in summary[split].items()}
        arms.append({"name": name, "flags": flags[name], "json": str(args.workdir / f"{name}.json"), "seeds": list(report["seeds"]),
                     "steps_mean": summary["steps_mean"], "trainings_at_once": report["settings"]["trainings_at_once"],
                     "commits": report["commits"], "devices": report["devices"], "scores": scores})
    return {"benchmark": "scripts/bench_arms.py", "baseline": names[0], "arms": arms}


def table(comparison: Dict) -> str:
    """The comparison as a Markdown table: one row per arm and split, PSNR and its difference to the baseline at each N."""
    arms = comparison["arms"]
    keys = [(split, key) for split, by_key in arms[0]["scores"].items() for key in by_key]
    head = "| arm | flags | seeds | steps | " + " | ".join(f"{split} N={key} (Δ)" for split, key in keys) + " |"
    lines = [head, "|" + "---|" * (4 + len(keys))]
    for arm in arms:
        cells = []
        for split, key in keys:
            v = arm["scores"].get(split, {}).get(key)
            delta = "" if v is None or v["psnr_delta"] is None else f" ({v['psnr_delta']:+.2f})"
            cells.append("n/a" if v is None else f"{v['psnr_mean']:.2f}{delta}")
        flags = " ".join(arm["flags"]) or "none"
        lines.append(f"| {arm['name']} | {flags} | {len(arm['seeds'])} | {arm['steps_mean']:.0f} | " + " | ".join(cells) + " |")
    if min(len(arm["seeds"]) for arm in arms) < 2:
        lines.append("One seed an arm: a proxy for choosing, not a benchmark figure.")
    if max(arm["trainings_at_once"] for arm in arms) > 1:
        lines.append("The arms shared the device: compare them with each other only.")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    failed = run_arms(args)
    done = [name for name, _ in args.arms if name not in failed]
    if not done or done[0] != args.arms[0][0]:
        print("bench_arms: the baseline did not finish: nothing to compare", file=sys.stderr)
        return 1
    comparison = compare(args, done)
    from autoint_cli.utils.atomic import write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(comparison, indent=1) + "\n")
    print(table(comparison))
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
