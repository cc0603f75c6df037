#!/usr/bin/env python3
"""autoint-view's speed on the server side, and what ``autoint-train --viewer`` costs the training.

``frames``: serves a trained run (``--expdir``) as autoint-view does and
connects one client, in a process of its own, over viser's websocket: a
stand-in for the browser. It
sends the scene's video-path cameras at ``--send_hz`` (a fast drag) and counts
the frames that come back. Every frame is drawn at full size (no smaller
previews while moving), with empty space skipped and not. Reports frames per
second received, and the viewer's own milliseconds per frame: the render (pose
to image on the host) and the JPEG encoding with the hand-over to viser; and
the render's milliseconds called directly, without viewer or client. It
also reports how far a skipped frame is from the full one (PSNR, 8-bit) along
the path.

``train``: runs ``python -m autoint_cli train ARGS`` (with ``--viewer`` unless
``--viewer off``); the client connects as soon as the page is served and, until
the run ends, drags for a second and rests for two, again and again, so that
the viewer draws previews and full-size frames (on a circle 30° above the
origin at radius 4: a Blender scene's cameras). Reports steps per second.

The client speaks viser's wire format (msgpack camera messages in; zstd-
compressed msgpack out), as viser 1.1 has it. Prints one JSON line last.
"""
import argparse
import json
import multiprocessing
import queue
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch

from autoint_cli.config import SpeedConfig, ViewConfig
from autoint_cli.render.renderer import render_settings
from autoint_cli.render.views import view_rays
from autoint_cli.runs.loader import load_run
from autoint_cli.scene.camera_path import vertical_fov
from autoint_cli.scene.poses import spherical_pose
from autoint_cli.utils.metrics import psnr
from autoint_cli.render.skipping import first_pass
from autoint_cli.viewer.frames import FrameRenderer, viewer_from_c2w, viewer_intrinsics
from autoint_cli.viewer.server import FrameLog, ViewerOptions, start_viewer

from bench_common import bench_device, device_label


class ViewerClient:
    """One stand-in browser on ws://127.0.0.1:port: sends camera poses, notes when each background image arrives."""

    def __init__(self, port: int, height: int, width: int, fov_degrees: float, timeout: float = 120.0,
                 alive: Callable[[], bool] = lambda: True):
        import msgspec
        import viser
        import zstandard
        from websockets.sync.client import connect

        self._encode, self._decode = msgspec.msgpack.encode, msgspec.msgpack.decode
        self._zstd = zstandard.ZstdDecompressor()
        self.height, self.width, self.fov = height, width, float(np.radians(fov_degrees))
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._socket = connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"], max_size=None)
                break
            except OSError:
                if time.monotonic() > deadline or not alive():
                    raise
                time.sleep(0.2)
        self.arrivals: List[float] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def send(self, c2w: np.ndarray) -> None:
        wxyz, position = viewer_from_c2w(c2w)
        ahead = position - 4.0 * np.asarray(c2w)[:, 2]  # a point it looks at (our cameras look along −z), for viser's orbit
        self._socket.send(self._encode({
            "type": "ViewerCameraMessage", "wxyz": wxyz.tolist(), "position": position.tolist(), "fov": self.fov, "near": 0.01,
            "far": 1000.0, "image_height": self.height, "image_width": self.width, "look_at": ahead.tolist(),
            "up_direction": np.asarray(c2w)[:, 1].tolist()}))

    def _read(self) -> None:
        try:
            for raw in self._socket:
                inner, compressed = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
                payload = self._decode(self._zstd.decompress(raw[16:16 + compressed], max_output_size=inner))
                now = time.perf_counter()
                self.arrivals += [now for m in payload["messages"] if m.get("type") == "BackgroundImageMessage"]
        except Exception:  # the server went away: the run ended
            return

    def close(self) -> None:
        self._socket.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def drag(client: ViewerClient, poses: np.ndarray, seconds: float, send_hz: float, start: int = 0) -> int:
    """Sends poses[start], poses[start + 1], ... at ``send_hz`` for ``seconds``; returns the next index."""
    end, i = time.perf_counter() + seconds, start
    while time.perf_counter() < end:
        client.send(poses[i % len(poses)])
        i += 1
        time.sleep(1.0 / send_hz)
    return i


def stats(frames, arrivals: List[float], start: float, stop: float) -> dict:
    """Frames sent by the viewer and received by the client between ``start`` and ``stop`` (time.perf_counter)."""
    sent = [f for f in frames if start <= f.sent_at < stop]
    seconds = stop - start
    render = [f.render_ms for f in sent]
    encode = [f.encode_ms for f in sent]
    total = [f.render_ms + f.encode_ms for f in sent]
    return {"frames_received_per_sec": sum(start <= t < stop for t in arrivals) / seconds,
            "frames_sent_per_sec": len(sent) / seconds,
            "render_ms_median": float(np.median(render)) if sent else None,
            "encode_ms_median": float(np.median(encode)) if sent else None,
            "render_plus_encode_ms_median": float(np.median(total)) if sent else None,
            "sizes": sorted({f"{f.width}x{f.height}" for f in sent})}


def skipped_quality(frames: FrameRenderer, poses: np.ndarray, camera, n_sections: int, count: int = 8) -> dict:
    """At ``count`` poses along the path: the share of pixels the skipping colour view renders at full size, and the PSNR
    (8-bit) and largest difference of its frames against full ones."""
    renderer = frames.renderer(n_sections, "integral")
    psnrs, shares, worst = [], [], 0
    for c2w in poses[:: max(1, len(poses) // count)][:count]:
        full, _ = frames.render(c2w, camera, n_sections=n_sections)
        skipped, _ = frames.render(c2w, camera, n_sections=n_sections, skip_empty=True)
        rays = view_rays(frames.run.scene, torch.as_tensor(c2w, dtype=torch.float32), frames.device, camera)
        shares.append(float(first_pass(renderer, rays, frames.skip_block, "rgb", pieces=frames.pieces)[1].float().mean()))
        psnrs.append(psnr(skipped / 255.0, full / 255.0))
        worst = max(worst, int(np.abs(full.astype(np.int64) - skipped.astype(np.int64)).max()))
    return {"psnr_min": min(psnrs), "psnr_mean": float(np.mean([min(p, 100.0) for p in psnrs])), "max_abs_diff": worst,
            "rendered_share_mean": float(np.mean(shares))}


def direct_render_ms(frames: FrameRenderer, poses: np.ndarray, camera, skip_empty: bool, rounds: int = 2) -> dict:
    """FrameRenderer.render's milliseconds along the path, called directly (no viewer, no client): median and quartiles."""
    frames.render(poses[0], camera, skip_empty=skip_empty)
    ms = [frames.render(c2w, camera, skip_empty=skip_empty)[1] for _ in range(rounds) for c2w in poses]
    return {"median": float(np.median(ms)), "p25": float(np.percentile(ms, 25)), "p75": float(np.percentile(ms, 75))}


def client_process(port: int, height: int, width: int, fov: float, poses: np.ndarray, args, answers) -> None:
    """The stand-in browser of ``frames``: drags for ``args.warmup`` seconds, then ``args.seconds`` timed; puts (arrival
    times, start, stop) on ``answers`` (time.perf_counter is the system's monotonic clock, shared with the viewer)."""
    client = ViewerClient(port, height, width, fov)
    index = drag(client, poses, args.warmup, args.send_hz)
    start = time.perf_counter()
    drag(client, poses, args.seconds, args.send_hz, index)
    stop = time.perf_counter()
    time.sleep(0.5)
    client.close()
    answers.put((client.arrivals, start, stop))


def answer_of(process, answers):
    """What ``process`` puts on ``answers``; one line and exit if it dies first."""
    while True:
        try:
            return answers.get(timeout=1.0)
        except queue.Empty:
            if not process.is_alive():
                raise SystemExit(f"bench_viewer: the stand-in browser ended without an answer (exit code {process.exitcode}); "
                                 "its error is above") from None


def frames_main(args) -> dict:
    device = bench_device()
    run = load_run(Path(args.expdir), device)
    speed = SpeedConfig(precision=args.precision, compile=args.compile, fused_mlp=True, cuda_graphs=args.cuda_graphs)
    frames = FrameRenderer(run, render_settings(speed, run.config.run.precision, n_sections=args.n_sections), device, args.block,
                           window=args.window_sections or None)
    width, height = (int(v) for v in args.resolution.split("x"))
    fov = vertical_fov(run.scene.intrinsics)
    poses = run.scene.render_c2w.double().numpy()
    result = {"device": device_label(device), "torch": torch.__version__, "expdir": args.expdir, "step": run.step,
              "resolution": args.resolution, "n_sections": args.n_sections, "precision": frames.settings.precision,
              "compile": args.compile, "cuda_graphs": args.cuda_graphs, "block": args.block,
              "window_sections": args.window_sections, "send_hz": args.send_hz, "runs": []}
    result["warm_up_seconds"] = frames.warm_up(height) if frames.pieces else 0.0
    camera = viewer_intrinsics(np.radians(fov), width / height, height)
    result["direct"] = {skip: direct_render_ms(frames, poses, camera, skip == "on") for skip in args.skip_empty}
    spawn = multiprocessing.get_context("spawn")
    for skip in args.skip_empty:
        log, port = FrameLog(), free_port()
        options = ViewerOptions(max_height=height, preview_scale=1, skip_empty=skip == "on")
        server = start_viewer(frames, "127.0.0.1", port, options, Path(args.expdir) / "camera_paths", log)
        try:
            # The stand-in browser runs in a process of its own, as a browser does: its decoding holds no lock of the viewer's.
            answers = spawn.Queue()
            client = spawn.Process(target=client_process, args=(port, height, width, fov, poses, args, answers), daemon=True)
            client.start()
            arrivals, start, stop = answer_of(client, answers)
            client.join(30)
        finally:
            server.stop()
        result["runs"].append({"skip_empty": skip == "on", **stats(log.frames(), arrivals, start, stop)})
    result["skipped_vs_full"] = skipped_quality(frames, poses, camera, args.n_sections)
    return result


def train_main(args) -> dict:
    command = [sys.executable, "-m", "autoint_cli", "train", *shlex.split(args.train_args)]
    port = free_port()
    if args.viewer == "on":
        command += ["--viewer", "--viewer_port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    client: Optional[ViewerClient] = None
    if args.viewer == "on":
        try:
            client = ViewerClient(port, 800, 800, 40.0, timeout=600.0, alive=lambda: process.poll() is None)
        except OSError:
            process.wait()
            reader.join(10)
            raise SystemExit(f"bench_viewer: the viewer of the training run never answered:\n{''.join(lines)[-2000:]}") from None
        # A circle 30° above the origin at radius 4, where Blender scenes stand.
        poses = np.stack([spherical_pose(theta, -30.0, 4.0) for theta in np.arange(0.0, 360.0, 3.0)])
        from websockets.exceptions import ConnectionClosed

        index = 0
        try:
            while process.poll() is None:
                index = drag(client, poses, 1.0, 30.0, index)
                time.sleep(2.0)
        except ConnectionClosed:  # the run ended and its viewer with it
            pass
    process.wait()
    reader.join(10)
    text = "".join(lines)
    stopped = re.search(r"stopping at step (\d+): max_train_seconds ([\d.e+]+)", text)
    if process.returncode != 0 or stopped is None:
        raise SystemExit(f"bench_viewer: the training run failed or did not stop on max_train_seconds:\n{text[-2000:]}")
    steps, seconds = int(stopped.group(1)), float(stopped.group(2))
    return {"device": device_label(bench_device()), "viewer": args.viewer == "on", "train_args": args.train_args, "steps": steps,
            "seconds": seconds, "steps_per_sec": steps / seconds, "frames_received": len(client.arrivals) if client else 0}


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    frames = modes.add_parser("frames", help="frames per second of autoint-view for one client")
    frames.add_argument("--expdir", required=True, help="a trained run (logs/<expname>)")
    frames.add_argument("--resolution", default="800x800", help="WxH of the frames (default 800x800)")
    frames.add_argument("--n_sections", type=int, default=8)
    frames.add_argument("--precision", default="bf16")
    frames.add_argument("--compile", action="store_true", help="torch.compile the renderer (as autoint-view --compile)")
    frames.add_argument("--cuda_graphs", action="store_true", help="replay each chunk shape as a CUDA graph (as autoint-view --cuda_graphs)")
    frames.add_argument("--skip_empty", nargs="+", choices=("on", "off"), default=["on", "off"])
    frames.add_argument("--block", type=int, default=4, help="pixels a side of the first pass's blocks when skipping (default 4)")
    frames.add_argument("--window_sections", type=int, default=ViewConfig.window_sections,
                        help=f"as autoint-view --window_sections (default {ViewConfig.window_sections}; 0: all N)")
    frames.add_argument("--send_hz", type=float, default=240.0, help="camera messages per second (faster than frames come)")
    frames.add_argument("--warmup", type=float, default=5.0, help="seconds of dragging before timing (the renderer is compiled and "
                        "captured before that, as autoint-view does)")
    frames.add_argument("--seconds", type=float, default=10.0, help="seconds timed")
    train = modes.add_parser("train", help="steps per second of autoint-train with and without --viewer")
    train.add_argument("--train_args", required=True, help="autoint-train's arguments, one string (include --max_train_seconds)")
    train.add_argument("--viewer", choices=("on", "off"), default="on")
    args = parser.parse_args(argv)
    if args.mode == "frames" and not re.fullmatch(r"\d+x\d+", args.resolution):
        parser.error(f"--resolution {args.resolution}: expected WxH, e.g. 800x800")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    result = frames_main(args) if args.mode == "frames" else train_main(args)
    if args.mode == "frames":
        for run in result["runs"]:
            skip = "on" if run["skip_empty"] else "off"
            print(f"skip_empty {skip:<3}: {run['frames_received_per_sec']:.1f} frames/s received, "
                  f"{run['frames_sent_per_sec']:.1f} sent; render {run['render_ms_median']} ms + encode {run['encode_ms_median']} ms "
                  f"(median) at {run['sizes']}; called directly: render {result['direct'][skip]['median']:.2f} ms (median)")
        print(f"skipped vs full: {result['skipped_vs_full']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
