#!/usr/bin/env python3
"""Quality per second of training, reproducibly: train a config for a wall-clock budget with several seeds, score every view.

For each seed the script runs ``autoint-train`` as a user would (its own
process; ``--max_train_seconds`` counts compilation and warm-up), then
``autoint-eval`` on each split asked for, and writes one JSON: per seed the
steps reached, PSNR and SSIM at each N, the 10th-percentile and worst view,
milliseconds per frame; over the seeds the mean and standard deviation; and
what makes a figure reproducible: the commit, the GPU, torch, the seeds and a
SHA-256 over the scene's files (so a figure can be tied to ``../shared/data``).

The JSON accumulates: seeds already in ``--out`` with the same settings are
kept and not run again, so seeds can be spread over several calls; ``--merge``
pools the JSONs of calls made elsewhere (one seed per machine, say) into one.
Flags after ``--`` go to autoint-train unchanged (``-- --random_bkgd true``).

    python3 scripts/bench_quality.py --config configs/lego_fast_n16_m2.txt \\
        --datadir ../shared/data/nerf_synthetic_400/lego --seconds 400 --seeds 0 1 --out docs/results/quality_lego.json
    python3 scripts/bench_quality.py --smoke --out /tmp/smoke.json      # CPU, the generated demo scene, under a minute
    python3 scripts/bench_quality.py --merge seed0.json seed1.json --out both.json   # nothing trained
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Runs from a checkout that is not installed too (as on a device machine): the package is found beside the script.
sys.path.insert(0, str(ROOT))
# What a --smoke run is: the demo config, a few seconds a seed, on the CPU.
SMOKE = {"config": str(ROOT / "configs" / "demo.txt"), "seconds": 6.0, "seeds": [0, 1], "precision": "fp32", "compile": False}
# Keys of the JSON that must agree for seeds of two calls to be pooled.
# (Not the datadir: a copy of the scene elsewhere, with the same SHA-256, is the same scene.)
SETTINGS = ("config", "config_text", "scene_sha256", "seconds", "train_args", "n_sections", "refine", "refine_sections", "splits",
            "precision", "compile", "trainings_at_once", "i_img", "compile_cache", "skip_empty", "window_sections",
            "cuda_graphs")
# What a JSON written before a setting existed meant by it (unrefined: no refine_sections, which changes nothing then; the
# config's own TensorBoard validation renders, every 500 steps in every recipe, inside the budget).
SETTING_DEFAULTS = {"refine": [1], "refine_sections": None, "i_img": None, "compile_cache": None, "skip_empty": False,
                    "window_sections": None, "cuda_graphs": False}
# The trainings render no TensorBoard validation image (autoint-train's i_img; 0: never), as they render no videos or test
# sets: on lego each cost 5-8% of a 400 s budget's steps (docs/QUALITY.md, fourteenth session).
I_IMG = 0
# Each training compiles into caches of its own, empty at its start: a seed trained after another on the same machine
# would otherwise find the kernels compiled and start training about 25 s sooner (lego, fourteenth session).
COMPILE_CACHE = "fresh per seed"
# autoint-train's report line without a progress bar (train/periodic.py, Reporter.report): the rate since the last report.
REPORT_LINE = re.compile(r"step (\d+) loss \S+ psnr \S+ rays/s (\d+)")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="autoint-train config file")
    parser.add_argument("--datadir", help="the scene (default: the config's)")
    parser.add_argument("--seconds", type=float, help="wall-clock training budget per seed, warm-up included")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds to train (default: 0 1)")
    parser.add_argument("--n_sections", type=int, nargs="+", default=[16], help="N values to score (default: 16)")
    parser.add_argument("--refine", type=int, nargs="+", default=[1],
                        help="R values to score each N at: R > 1 cuts the sections around each ray's surface in R (default: 1)")
    parser.add_argument("--refine_sections", type=int,
                        help="how many sections around the surface R > 1 cuts (default: autoint-eval's)")
    parser.add_argument("--splits", nargs="+", choices=("test", "val"), default=["test"], help="splits to score (default: test)")
    parser.add_argument("--testskip", type=int, default=1, help="blender: every k-th test view (default: 1, all 200)")
    parser.add_argument("--val_testskip", type=int, default=2, help="blender: every k-th val view (default: 2)")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), help="eval precision (default: bf16 with CUDA, else fp32)")
    parser.add_argument("--compile", type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=None,
                        help="eval with torch.compile (default: with CUDA)")
    parser.add_argument("--skip_empty", action="store_true",
                        help="score frames that skip empty space, as autoint-view draws them (autoint-eval --skip_empty)")
    parser.add_argument("--window_sections", type=int,
                        help="with --skip_empty: autoint-eval's --window_sections (default: autoint-eval's; 0: all N)")
    parser.add_argument("--cuda_graphs", action="store_true",
                        help="compiled test scores replay each piece of rays as a CUDA graph (autoint-eval --cuda_graphs): "
                             "frames that skip empty space are then not held up by the CPU's calls")
    parser.add_argument("--at_once", action="store_true",
                        help="train the seeds at the same time on one device (each gets a share of it: the JSON says so)")
    parser.add_argument("--alongside", type=int, default=0,
                        help="trainings that others run on the same device meanwhile (not started here; the JSON counts them)")
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: logs/bench_quality/<out's name>)")
    parser.add_argument("--commit", help="the commit measured (default: git rev-parse HEAD, where there is a .git)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write (and to add seeds to)")
    parser.add_argument("--smoke", action="store_true", help="the demo scene on the CPU, 6 s a seed, 2 seeds: a check that it all runs")
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="pool the seeds of these JSONs (same settings, no seed twice) into --out; nothing is trained")
    args = parser.parse_args(argv)
    args.train_args = train_args
    return fill_defaults(parser, args)


def fill_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """--smoke's settings and the device's defaults where the flags leave them open; one line for what is missing."""
    if args.merge:
        return args
    if args.smoke:
        for key, value in SMOKE.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if not args.config or args.seconds is None:
        parser.error("--config and --seconds are needed (or --smoke)")
    if not Path(args.config).is_file():
        parser.error(f"--config {args.config}: no such file")
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, got {args.seconds:g}")
    args.seeds = args.seeds or [0, 1]
    if args.refine_sections is None:
        from autoint_cli.volume.rendering import REFINE_SECTIONS  # torch, only once there is something to run

        args.refine_sections = REFINE_SECTIONS
    if args.window_sections is None:
        from autoint_cli.config import WINDOW_SECTIONS

        args.window_sections = WINDOW_SECTIONS
    cuda = cuda_available()
    args.precision = args.precision or ("bf16" if cuda else "fp32")
    args.compile = cuda if args.compile is None else args.compile
    # The trainings run in the checkout's root: paths given here are made absolute, and a config's datadir is the root's.
    args.config_file = Path(args.config).resolve()
    from_config = config_value(args.config_file, "datadir")
    args.datadir = args.datadir or from_config
    if not args.datadir:
        parser.error(f"--datadir: {args.config} names no datadir")
    args.scene_dir = ROOT / from_config if args.datadir == from_config and not Path(from_config).is_absolute() else Path(args.datadir).resolve()
    args.generate_demo = str(config_value(args.config_file, "generate_demo")).lower() in ("true", "yes", "1", "on")
    args.workdir = (args.workdir or ROOT / "logs" / "bench_quality" / args.out.stem).resolve()
    return args


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def config_value(path: Path, key: str) -> Optional[str]:
    """``key = value`` of a config file, or None."""
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key and not line.lstrip().startswith("#"):
            return value.strip()
    return None


def scene_sha256(datadir: Path) -> Dict:
    """SHA-256 over every file of the scene (its path relative to the folder, then its bytes, in sorted order)."""
    digest, count = hashlib.sha256(), 0
    for path in sorted(p for p in datadir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(datadir)).encode() + b"\0")
        digest.update(path.read_bytes())
        count += 1
    return {"sha256": digest.hexdigest(), "files": count}


def commit_of(given: Optional[str]) -> str:
    if given:
        return given
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
        return head + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def autoint(*args: str) -> List[str]:
    return [sys.executable, "-m", "autoint_cli", *args]


def train_command(args: argparse.Namespace, seed: int) -> List[str]:
    """autoint-train for one seed: the config, the budget, no videos, test or validation renders inside the budget, a fresh run."""
    return autoint("train", "--config", str(args.config_file), "--datadir", str(args.scene_dir), "--basedir", str(args.workdir),
                   "--expname", f"seed{seed}", "--seed", str(seed), "--max_train_seconds", f"{args.seconds:g}", "--n_iters", "1000000000",
                   "--i_video", "0", "--i_testset", "0", "--i_img", str(I_IMG), "--quiet", "--no_reload", *args.train_args)


def eval_command(args: argparse.Namespace, seed: int, split: str) -> List[str]:
    skip = args.testskip if split == "test" else args.val_testskip
    return autoint("eval", "--expdir", str(args.workdir / f"seed{seed}"), "--split", split, "--testskip", str(skip),
                   "--n_sections", *map(str, args.n_sections), "--refine", *map(str, args.refine), "--refine_sections",
                   str(args.refine_sections), "--quadrature_samples", "0", "--precision", args.precision, *skip_args(args),
                   *graph_args(args, split),
                   "--compile", str(args.compile and split == "test").lower(), "--out", str(args.workdir / f"seed{seed}_{split}.json"))


def graph_args(args: argparse.Namespace, split: str) -> List[str]:
    """autoint-eval's flag for CUDA graphs: asked for, on the compiled (test) scores only."""
    return ["--cuda_graphs", "true"] if args.cuda_graphs and args.compile and split == "test" else []


def skip_args(args: argparse.Namespace) -> List[str]:
    """autoint-eval's flags for skipping empty space, when asked for."""
    return ["--skip_empty", "true", "--window_sections", str(args.window_sections)] if args.skip_empty else []


def run_logged(command: List[str], log: Path, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """``command`` started with its output in ``log``, with ``env`` added to the environment."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        return subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def fresh_compile_cache(folder: Path) -> Dict[str, str]:
    """Environment that points torch.compile's and Triton's caches at ``folder``, emptied first."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return {"TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"), "TRITON_CACHE_DIR": str(folder / "triton")}


def wait_all(processes: Dict[str, subprocess.Popen], logs: Dict[str, Path]) -> None:
    """Waits for every process; a failure stops the others and ends the benchmark with the tail of its log."""
    for name, process in processes.items():
        if process.wait() != 0:
            for other in processes.values():
                if other.poll() is None:
                    other.terminate()
            tail = logs[name].read_text().strip().splitlines()[-5:]
            raise SystemExit(f"bench_quality: {name} failed (exit {process.returncode}); {logs[name]} ends:\n  " + "\n  ".join(tail))


def train_seeds(args: argparse.Namespace, seeds: Sequence[int], commit: str) -> None:
    """Trains ``seeds`` one after another (or all at once with --at_once); each finished one leaves seed<S>_run.json (the commit
    and the wall-clock seconds of its training process) in the workdir, and the scores of an earlier training are removed."""
    groups = [list(seeds)] if args.at_once else [[s] for s in seeds]
    for group in groups:
        for seed in group:
            for stale in args.workdir.glob(f"seed{seed}_*.json"):
                stale.unlink()
        logs = {f"training seed {s}": args.workdir / f"seed{s}_train.log" for s in group}
        caches = {s: args.workdir / f"seed{s}_compile_cache" for s in group}
        envs = {s: fresh_compile_cache(caches[s]) for s in group}
        start = time.perf_counter()
        processes = {name: run_logged(train_command(args, s), log, envs[s]) for (name, log), s in zip(logs.items(), group)}
        wait_all(processes, logs)
        for seed in group:
            pace = training_pace(args.workdir / f"seed{seed}_train.log", args.workdir / f"seed{seed}" / "args.txt")
            write_json(args.workdir / f"seed{seed}_run.json", {"commit": commit, "wall_seconds": round(time.perf_counter() - start, 1), **pace})
            shutil.rmtree(caches[seed], ignore_errors=True)


def training_pace(log: Path, resolved: Path) -> Dict:
    """How fast a training went, from its log's report lines and its resolved settings (args.txt): the median rays a
    second over the reports after the first (the machine's pace), and the seconds to the first report (compilation and
    warm-up: its steps' rays at its rate); {} when the log has fewer than two reports or args.txt no N_rand."""
    reports = [(int(step), float(rate)) for step, rate in REPORT_LINE.findall(log.read_text())] if log.is_file() else []
    n_rand = config_value(resolved, "N_rand") if resolved.is_file() else None
    if len(reports) < 2 or n_rand is None:
        return {}
    (first_step, first_rate), later = reports[0], [rate for _, rate in reports[1:]]
    return {"rays_per_sec_median": float(np.median(later)), "first_report_seconds": round(first_step * int(n_rand) / first_rate, 2)}


def write_json(path: Path, value: Union[Dict, List]) -> None:
    from autoint_cli.utils.atomic import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(value, indent=1) + "\n")


def view_stats(result: Dict) -> Dict:
    """One N's scores from an autoint-eval result: mean PSNR and SSIM, the 10th-percentile and worst view, ms per frame, and
    (where autoint-eval kept each view's time) the median and slowest frame's ms."""
    psnrs = np.array([v["psnr"] for v in result["per_image"]])
    stats = {"psnr": result["psnr"], "ssim": result["ssim"], "psnr_p10": float(np.percentile(psnrs, 10)), "psnr_worst": float(psnrs.min()),
             "worst_view": int(psnrs.argmin()), "ms_per_frame": result["ms_per_frame"], "per_view_psnr": [round(float(p), 3) for p in psnrs]}
    ms = [v["ms"] for v in result["per_image"] if "ms" in v]
    if ms:
        stats.update(ms_median=float(np.median(ms)), ms_slowest=float(max(ms)))
    return stats


# A frame this many times slower than the split's median frame is called out in the table: a compile or another
# program's work inside the timed loop, which the mean hides.
SLOW_FRAME = 3.0


def slow_frames(report: Dict) -> List[str]:
    """Table lines for each seed, split and N whose slowest frame took :data:`SLOW_FRAME` times its median or more."""
    lines = []
    for seed, entry in report["seeds"].items():
        for split, scores in entry.get("splits", {}).items():
            for n, v in scores.items():
                if isinstance(v, dict) and v.get("ms_median") and v["ms_slowest"] >= SLOW_FRAME * v["ms_median"]:
                    lines.append(f"  seed {seed}, {split} N={n}: slowest frame {v['ms_slowest']:.1f} ms, "
                                 f"{v['ms_slowest'] / v['ms_median']:.1f} times the median: something ran inside the timed loop")
    return lines


def result_key(result: Dict) -> str:
    """How the JSON names one renderer's scores: N ("16"), or N and R when refined ("16x4")."""
    refine = result.get("refine", 1)
    return f"{result['n_sections']}" + (f"x{refine}" if refine > 1 else "")


def evaluate_seed(args: argparse.Namespace, seed: int, entry: Dict, save: Callable[[], None]) -> None:
    """autoint-eval on each split of one trained seed, into the seed's ``entry`` of the JSON, saved after each split.

    The val split, for choosing settings, is scored without compiling (the same images up to rounding, no second warm-up).
    """
    for split in args.splits:
        log, scores = args.workdir / f"seed{seed}_{split}_eval.log", args.workdir / f"seed{seed}_{split}.json"
        name, command = f"eval of seed {seed} ({split})", eval_command(args, seed, split)
        # Scores left by an earlier call are kept only if they were rendered as this call would render them.
        how = args.workdir / f"seed{seed}_{split}_eval_args.json"
        if not (scores.is_file() and how.is_file() and json.loads(how.read_text()) == command[1:]):
            wait_all({name: run_logged(command, log)}, {name: log})
            write_json(how, command[1:])
        metrics = json.loads(scores.read_text())
        entry.update(steps=metrics["step"], device=metrics["device"], torch=metrics["torch"])
        entry.setdefault("splits", {})[split] = {"n_views": metrics["n_views"], **{result_key(r): view_stats(r) for r in metrics["results"]}}
        save()


def summarise(seeds: Dict[str, Dict]) -> Dict:
    """Mean and standard deviation over the seeds of each split and N (of PSNR, SSIM, 10th-percentile and worst view, ms, steps)."""
    entries = list(seeds.values())
    summary: Dict = {"n_seeds": len(entries), "steps_mean": float(np.mean([e["steps"] for e in entries]))}
    for split, first in entries[0]["splits"].items():
        summary[split] = {}
        for n in (k for k in first if k != "n_views"):
            stats = [e["splits"][split][n] for e in entries]
            # The median frame too where every seed kept each view's time: one stalled frame moves the mean, not it.
            keys = ("psnr", "ssim", "psnr_p10", "psnr_worst", "ms_per_frame") + (("ms_median",) if all("ms_median" in s for s in stats) else ())
            summary[split][n] = {f"{key}_{how}": float(fn([s[key] for s in stats])) for key in keys
                                 for how, fn in (("mean", np.mean), ("std", np.std))}
    return summary


def settings_of(args: argparse.Namespace, scene: Dict) -> Dict:
    inside = args.config_file.is_relative_to(ROOT)  # recorded from the checkout's root, the same on every machine
    return {"config": str(args.config_file.relative_to(ROOT)) if inside else str(args.config_file), "config_text": args.config_file.read_text(), "datadir": str(args.datadir),
            "scene_sha256": scene["sha256"], "scene_files": scene["files"],
            "seconds": args.seconds, "train_args": args.train_args, "n_sections": args.n_sections, "refine": args.refine,
            "refine_sections": args.refine_sections, "splits": args.splits,
            "testskip": args.testskip, "val_testskip": args.val_testskip, "precision": args.precision, "compile": args.compile,
            "trainings_at_once": (len(args.seeds) if args.at_once else 1) + args.alongside, "i_img": I_IMG,
            "compile_cache": COMPILE_CACHE, "skip_empty": args.skip_empty, "window_sections": args.window_sections if args.skip_empty else None,
            "cuda_graphs": args.cuda_graphs}


def earlier_seeds(out: Path, settings: Dict, instead: str = "choose another --out") -> Dict[str, Dict]:
    """The seeds already in ``out``, when it was written with the same settings; a different one is refused in one line."""
    if not out.is_file():
        return {}
    try:
        earlier = json.loads(out.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"bench_quality: {out}: not valid JSON ({err}); move it away or choose another --out")
    unrefined = settings["refine"] == [1]  # then refine_sections changes nothing
    differ = [k for k in SETTINGS if comparable(k, earlier.get("settings", {}).get(k, SETTING_DEFAULTS.get(k))) != comparable(k, settings[k])
              and not (k == "refine_sections" and unrefined)]
    if differ:
        raise SystemExit(f"bench_quality: {out} holds runs with other settings ({', '.join(differ)}); {instead}")
    return earlier.get("seeds", {})


def comparable(key: str, value):
    """A setting as runs are pooled by it: a config's text without its comments and blank lines (a comment that quotes a
    newer figure trains nothing differently), every other setting as it is."""
    if key != "config_text" or not isinstance(value, str):
        return value
    lines = (line.strip() for line in value.splitlines())
    return [" ".join(line.split()) for line in lines if line and not line.startswith(("#", ";"))]


def merge(paths: Sequence[Path], out: Path) -> Dict:
    """The seeds of several JSONs written with the same settings, as one JSON at ``out``; one line for a mismatch."""
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"bench_quality: --merge {path}: no such file")
    first = json.loads(paths[0].read_text()).get("settings")
    if not isinstance(first, dict):
        raise SystemExit(f"bench_quality: --merge {paths[0]}: not a bench_quality JSON (no settings)")
    settings = {**SETTING_DEFAULTS, **first}
    seeds: Dict[str, Dict] = {}
    for path in paths:
        found = earlier_seeds(path, settings, f"it cannot be pooled with {paths[0]}")
        twice = sorted(set(found) & set(seeds), key=int)
        if twice:
            raise SystemExit(f"bench_quality: --merge {path}: seed {', '.join(twice)} is in an earlier file too")
        seeds.update(found)
    return save(out, settings, seeds)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.merge:
        print(table(merge(args.merge, args.out)))
        print(f"wrote {args.out}")
        return 0
    if args.generate_demo and not args.scene_dir.exists():
        from autoint_cli.scene.synthetic import ensure_demo_scene

        ensure_demo_scene(args.scene_dir)  # as autoint-train would, before the scene is hashed
    if not args.scene_dir.is_dir():
        raise SystemExit(f"bench_quality: --datadir {args.datadir}: no such folder")
    settings = settings_of(args, scene_sha256(args.scene_dir))
    seeds = earlier_seeds(args.out, settings)
    todo = [s for s in args.seeds if str(s) not in seeds]
    # A seed whose training finished in an earlier call (seed<S>_run.json in the workdir) is scored, not trained again.
    train_seeds(args, [s for s in todo if not (args.workdir / f"seed{s}_run.json").is_file()], commit_of(args.commit))
    for seed in todo:
        seeds[str(seed)] = entry = json.loads((args.workdir / f"seed{seed}_run.json").read_text())
        evaluate_seed(args, seed, entry, lambda: save(args.out, settings, seeds))
    report = save(args.out, settings, seeds)
    print(table(report))
    print(f"wrote {args.out}")
    return 0


def save(out: Path, settings: Dict, seeds: Dict[str, Dict]) -> Dict:
    """The JSON of the seeds scored so far (on every split), written atomically; returns it."""
    done = {k: v for k, v in sorted(seeds.items(), key=lambda kv: int(kv[0])) if set(v.get("splits", {})) == set(settings["splits"])}
    partial = {k: v for k, v in seeds.items() if k not in done}
    report = {"benchmark": "scripts/bench_quality.py", "settings": settings, "commits": sorted({e["commit"] for e in done.values()}),
              "devices": sorted({e["device"] for e in done.values()}), "torch": sorted({e["torch"] for e in done.values()}),
              "summary": summarise(done) if done else None, "seeds": done}
    if partial:
        report["unfinished_seeds"] = partial
    write_json(out, report)
    return report


def table(report: Dict) -> str:
    """The summary as lines a person reads: per split and N, mean ± std over the seeds."""
    s, summary = report["settings"], report["summary"]
    lines = [f"{s['config']} for {s['seconds']:g} s, {summary['n_seeds']} seeds ({', '.join(report['seeds'])}), "
             f"{summary['steps_mean']:.0f} steps on average, {', '.join(report['devices'])}, commit {', '.join(report['commits'])}"]
    paces = [e["rays_per_sec_median"] for e in report["seeds"].values() if "rays_per_sec_median" in e]
    if paces:
        firsts = ", ".join(f"{e['first_report_seconds']:.1f}" for e in report["seeds"].values() if "first_report_seconds" in e)
        lines.append(f"  training pace: median {np.mean(paces):,.0f} rays/s; first report after {firsts} s (compile and warm-up)")
    if summary["n_seeds"] < 2:
        lines.append("  one seed: not a benchmark figure (a figure is a mean over at least two seeds)")
    if s["trainings_at_once"] > 1:
        lines.append(f"  {s['trainings_at_once']} trainings shared the device: not comparable with trainings run alone")
    if s.get("skip_empty"):
        lines.append(f"  frames skip empty space (section windows of {s['window_sections'] or 'all N'}), as autoint-view draws them")
    if s.get("cuda_graphs"):
        lines.append("  compiled frames replayed as CUDA graphs")
    for split in s["splits"]:
        for n, v in summary[split].items():
            lines.append(f"  {split} N={n}: PSNR {v['psnr_mean']:.2f} ± {v['psnr_std']:.2f} dB, SSIM {v['ssim_mean']:.4f}, "
                         f"10th percentile {v['psnr_p10_mean']:.2f}, worst {v['psnr_worst_mean']:.2f}, {v['ms_per_frame_mean']:.1f} ms/frame"
                         + (f" (median frame {v['ms_median_mean']:.1f})" if "ms_median_mean" in v else ""))
    return "\n".join(lines + slow_frames(report))


if __name__ == "__main__":
    sys.exit(main())
