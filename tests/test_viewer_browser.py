"""autoint-view in a real browser: headless Chromium (SwiftShader WebGL on the CPU), driven over its DevTools protocol, opens the
page a viewer serves on 127.0.0.1; the 3-D view shows the rendered scene, and a mouse drag makes the server draw a new view."""
import base64
import json
import shutil
import subprocess
import time
import urllib.request

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from autoint_cli.cli import train_main
from autoint_cli.render.renderer import RenderSettings
from autoint_cli.runs.loader import load_run
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene

from helpers import free_port, wait_for, write_config

BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
pytestmark = [pytest.mark.skipif(BROWSER is None, reason="no Chromium here (apt-get install chromium; .ci/run installs it when it can)")]
viser = pytest.importorskip("viser", reason="viser is the viewer extra (pip install -e '.[viewer]')")

from autoint_cli.viewer.server import FrameRenderer, ViewerOptions, start_viewer  # noqa: E402


class DevTools:
    """The few DevTools-protocol calls the test needs, over one page's websocket."""

    def __init__(self, url):
        from websockets.sync.client import connect

        self.socket, self.next_id = connect(url, max_size=2**26), 0

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def screenshot(self) -> np.ndarray:
        return iio.imread(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))[..., :3].astype(np.float64)

    def drag(self, x0, y0, dx):
        for kind, x in (("mousePressed", x0), ("mouseMoved", x0 + dx / 2), ("mouseMoved", x0 + dx), ("mouseReleased", x0 + dx)):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y0, button="left", buttons=0 if kind == "mouseReleased" else 1, clickCount=1)
            time.sleep(0.05)


@pytest.fixture
def browser(tmp_path):
    port = free_port()
    process = subprocess.Popen([BROWSER, "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                                f"--remote-debugging-port={port}", "--window-size=640,480", f"--user-data-dir={tmp_path / 'profile'}",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    targets = []

    def listed():
        try:
            targets[:] = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2).read())
        except OSError:
            return False
        return any(t["type"] == "page" for t in targets)

    try:
        assert wait_for(listed, 30), "Chromium did not open its DevTools port"
        yield DevTools(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
    finally:
        process.terminate()
        process.wait(10)


def test_the_page_shows_the_scene_and_a_drag_draws_a_new_view(tmp_path, browser):
    scene = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=24, n_train=8, n_val=1, n_test=1))
    assert train_main(["--config", str(write_config(tmp_path, scene, "i_testset = 0\ni_video = 0\nn_iters = 150\n"))]) == 0
    frames = FrameRenderer(load_run(tmp_path / "logs" / "tiny", torch.device("cpu")), RenderSettings(), torch.device("cpu"))
    drawn = []
    render = frames.render

    def recording(*args, **kwargs):
        image, ms = render(*args, **kwargs)
        drawn.append(image)
        return image, ms

    frames.render = recording
    port = free_port()
    # Depth in the turbo map: the frame spans the whole colour map, whatever the training reached.
    server = start_viewer(frames, "127.0.0.1", port, ViewerOptions(max_height=48, settle_seconds=0.1, output="depth"), tmp_path / "paths")
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        assert wait_for(lambda: len(drawn) >= 2), "the viewer drew nothing for the browser's camera"
        time.sleep(3)  # the page shows the last frame
        before = browser.screenshot()
        # Left of the controls and below the notice the page shows only the 3-D view: the full-size frame, stretched to it.
        view = before[150:330, 20:300]
        expected = cv2.resize(drawn[-1], (before.shape[1], before.shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float64)[150:330, 20:300]
        assert view.std() > 10, "the 3-D view is blank"
        correlation = np.corrcoef(view.mean(-1).ravel(), expected.mean(-1).ravel())[0, 1]
        assert correlation > 0.5, f"the view does not look like the rendered frame (correlation {correlation:.2f})"
        count = len(drawn)
        browser.drag(80, 260, 120)  # in the 3-D view, left of the controls and below the notice
        assert wait_for(lambda: len(drawn) >= count + 2), "a drag drew no new view"
        time.sleep(3)
        after = browser.screenshot()
        assert np.abs(after[150:330, 20:300] - view).mean() > 3, "the view did not change after the drag"
    finally:
        server.stop()
