"""Open a rendered report in headless Chromium and check it, with no Python dependency beyond the standard
library: the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
NUL-separated JSON messages).

:func:`check_page` loads a page, collects console errors, uncaught exceptions and failed resource loads,
waits for every ``<img>`` to decode, reports each image's natural size, and takes a full-page screenshot.
Used by ``tests/test_report_browser.py`` and by ``python -m bkbench.harness.report.browser PAGE [SHOT.png]``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

IMAGES_JS = """
(async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return JSON.stringify({
    images: imgs.map(i => ({src: i.getAttribute('src').slice(0, 120), w: i.naturalWidth, h: i.naturalHeight,
                            complete: i.complete})),
    title: document.title,
    text: document.body ? document.body.innerText : '',
    height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
    width: Math.max(document.body.scrollWidth, document.documentElement.scrollWidth),
  });
})()
"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageCheck:
    """What the browser saw. ``errors``: console errors, uncaught exceptions, failed loads (one line each);
    ``images``: dicts with src, w, h (natural size); ``screenshot``: PNG bytes of the full page."""

    errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    text: str = ""
    screenshot: bytes = b""
    version: str = ""


class _Pipe:
    def __init__(self, exe: str, user_dir: str) -> None:
        r_child, w_parent = os.pipe()  # parent -> browser (browser reads fd 3)
        r_parent, w_child = os.pipe()  # browser -> parent (browser writes fd 4)

        def setup() -> None:
            os.dup2(r_child, 3)
            os.dup2(w_child, 4)

        args = [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                "--allow-file-access-from-files", f"--user-data-dir={user_dir}", "about:blank"]
        # the child's fds are closed after preexec_fn runs, except pass_fds: keep exactly 3 and 4
        self.proc = subprocess.Popen(args, preexec_fn=setup, pass_fds=(3, 4),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_child)
        os.close(w_child)
        self.w = os.fdopen(w_parent, "wb", buffering=0)
        self.r = os.fdopen(r_parent, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium: no reply over the DevTools pipe in time")
            chunk = os.read(self.r.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium: DevTools pipe closed (exit code {self.proc.poll()})")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == mid:
                if "error" in reply:
                    raise RuntimeError(f"chromium: {method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            ev = self._read_message(deadline)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.w.close()
        self.r.close()


def check_page(page: str | Path, width: int = 1400, exe: str | None = None, timeout: float = 90.0) -> PageCheck:
    """Load ``page`` (a local HTML file) in headless Chromium and report what happened."""
    exe = exe or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium: no Chromium executable found; apt-get install -y chromium, or set $CHROMIUM")
    url = Path(page).resolve().as_uri()
    out = PageCheck()
    with tempfile.TemporaryDirectory(prefix="bkbench-chromium-") as user_dir:
        pipe = _Pipe(exe, user_dir)
        try:
            out.version = pipe.call("Browser.getVersion", timeout=timeout).get("product", "")
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            sid = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=sid)
            pipe.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=sid)
            pipe.call("Page.navigate", {"url": url}, session=sid)
            pipe.wait_event("Page.loadEventFired", timeout=timeout)
            res = pipe.call("Runtime.evaluate", {"expression": IMAGES_JS, "awaitPromise": True,
                                                 "returnByValue": True}, session=sid, timeout=timeout)
            info = json.loads(res["result"]["value"])
            out.images, out.title, out.text = info["images"], info["title"], info["text"]
            height = int(min(info["height"], 30000))
            pipe.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sid)
            shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                             session=sid, timeout=timeout)
            out.screenshot = base64.b64decode(shot["data"])
            # drain pending events (console messages logged during load)
            pipe.call("Runtime.evaluate", {"expression": "1"}, session=sid)
        finally:
            events = list(pipe.events)
            pipe.close()
    for ev in events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.errors.append(f"console.{p.get('type')}: {args}")
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.errors.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            out.errors.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}")
        elif m == "Network.loadingFailed":
            out.errors.append(f"load failed: {p.get('errorText')} (request {p.get('requestId')})")
    return out


def screenshot_stats(png: bytes) -> dict[str, float]:
    """Size and content of a PNG screenshot: width, height, fraction of non-white pixels, distinct grey levels."""
    import io

    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(io.BytesIO(png), format="png")
    rgb = img[..., :3]
    grey = rgb.mean(axis=2)
    return {"width": float(img.shape[1]), "height": float(img.shape[0]),
            "non_white": float((grey < 0.97).mean()), "levels": float(np.unique((grey * 255).astype(int)).size),
            "std": float(grey.std())}


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m bkbench.harness.report.browser PAGE.html [SCREENSHOT.png]")
        return 2
    res = check_page(args[0])
    print(res.version)
    print(f"title: {res.title}")
    print(f"errors: {len(res.errors)}")
    for e in res.errors:
        print("  ", e)
    bad = [i for i in res.images if not i["w"]]
    print(f"images: {len(res.images)}, not loaded: {len(bad)}")
    print(f"screenshot: {screenshot_stats(res.screenshot)}")
    if len(args) > 1:
        Path(args[1]).write_bytes(res.screenshot)
    return 1 if res.errors or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
