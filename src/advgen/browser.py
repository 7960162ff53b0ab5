"""Open an HTML file in headless Chromium and report what a reader would see.

:func:`inspect_page` launches ``chromium --headless=new`` on a free DevTools port, talks the
Chrome DevTools Protocol over a websocket (the ``websocket-client`` package, a test
dependency), loads the page, and returns a :class:`PageReport`: console errors (console
``error`` calls, uncaught exceptions, and ``Log`` errors such as an image that failed to load),
the status of every ``<img>``, the row count of a table, the number of ``<script>`` elements,
the page's visible text, and optionally a full-page PNG screenshot. The browser is always
killed, and every wait has a deadline.

From the command line (exit status 1 when the page has console errors or broken images)::

    python -m advgen.browser reports/index.html --screenshot /tmp/report.png
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")
MAX_SCREENSHOT_HEIGHT = 40_000  # CSS pixels; a longer page is cut


class BrowserError(RuntimeError):
    """Chromium could not be started, or did not answer in time."""


def find_chromium() -> str | None:
    """The Chromium executable: ``$ADVGEN_CHROMIUM``, else the first of :data:`CHROMIUM_NAMES` on PATH."""
    for name in (os.environ.get("ADVGEN_CHROMIUM"), *CHROMIUM_NAMES):
        if not name:
            continue
        if found := shutil.which(name):
            return found
    return None


@dataclass
class ImageStatus:
    src: str
    loaded: bool  # complete and naturalWidth > 0
    natural_width: int
    natural_height: int


@dataclass
class PageReport:
    url: str
    console_errors: list[str] = field(default_factory=list)
    images: list[ImageStatus] = field(default_factory=list)
    table_rows: int | None = None  # body rows of the table with id ``table_id``; None: no such table
    script_elements: int = 0
    text: str = ""  # document.body.innerText
    title: str = ""
    screenshot: Path | None = None

    @property
    def broken_images(self) -> list[ImageStatus]:
        return [i for i in self.images if not i.loaded]

    @property
    def ok(self) -> bool:
        return not self.console_errors and not self.broken_images


class _CDP:
    """A minimal DevTools client over one websocket, with flattened target sessions."""

    def __init__(self, ws_url: str, deadline: float) -> None:
        import websocket  # a test dependency: imported only when a browser is driven

        self._websocket = websocket
        self.deadline = deadline
        self.ws = websocket.create_connection(ws_url, timeout=self._left(), suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BrowserError("timed out waiting for Chromium")
        return left

    def _recv(self) -> dict:
        self.ws.settimeout(self._left())
        try:
            return json.loads(self.ws.recv())
        except self._websocket.WebSocketTimeoutException as exc:
            raise BrowserError("timed out waiting for Chromium") from exc

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and return its result; events that arrive meanwhile are kept."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.settimeout(self._left())
        self.ws.send(json.dumps(msg))
        while True:
            reply = self._recv()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, session: str | None = None, **params: Any) -> dict:
        """Wait for event ``method`` whose params include ``params`` (kept events first)."""
        def match(ev: dict) -> bool:
            return (ev["method"] == method and ev.get("sessionId") == session
                    and all(ev.get("params", {}).get(k) == v for k, v in params.items()))

        for ev in self.events:
            if match(ev):
                return ev
        while True:
            ev = self._recv()
            if "method" not in ev:
                continue
            self.events.append(ev)
            if match(ev):
                return ev

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closing a dead socket
            pass


def _wait_for_devtools(proc: subprocess.Popen, stderr_path: Path, profile: Path, deadline: float) -> str:
    """The browser's DevTools websocket URL, from the ``DevTools listening on`` line of stderr
    (or, failing that, the ``DevToolsActivePort`` file)."""
    port_file = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        text = stderr_path.read_text(errors="replace") if stderr_path.exists() else ""
        if m := _DEVTOOLS.search(text):
            return m.group(1)
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        if proc.poll() is not None:
            raise BrowserError(f"Chromium exited with status {proc.returncode}: {text[-2000:]}")
        time.sleep(0.05)
    raise BrowserError("timed out waiting for Chromium's DevTools endpoint")


def _kill(proc: subprocess.Popen) -> None:
    """Stop the browser and every process it started (its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # helpers (renderer, zygote) that outlived the main process
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


_PAGE_STATE = """(() => {
  const e = document.getElementById(%s), t = e && e.tagName === 'TABLE' ? e : null;
  return {
    images: Array.from(document.images).map(i => ({src: i.getAttribute('src') || '', complete: i.complete,
      w: i.naturalWidth, h: i.naturalHeight})),
    tableRows: t ? (t.tBodies.length ? Array.from(t.tBodies).reduce((n, b) => n + b.rows.length, 0)
                                     : t.rows.length) : null,
    scripts: document.getElementsByTagName('script').length,
    text: document.body ? document.body.innerText : '',
    title: document.title,
  };
})()"""


def _error_text(ev: dict) -> str | None:
    """A console error as text, or None for anything that is not an error."""
    p = ev.get("params", {})
    if ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        args = p.get("args", [])
        return "console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in args)
    if ev["method"] == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails", {})
        return "exception: " + str(d.get("exception", {}).get("description") or d.get("text", ""))
    if ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
        e = p["entry"]
        return f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".rstrip()
    return None


def inspect_page(html_path: str | Path, screenshot: str | Path | None = None, *, table_id: str = "claims",
                 timeout: float = 30.0, width: int = 1280, height: int = 900,
                 chromium: str | None = None) -> PageReport:
    """Load ``html_path`` in headless Chromium and report console errors, images, the row
    count of table ``table_id`` and the script elements; save a full-page PNG to
    ``screenshot`` if given. Raises :class:`BrowserError` when Chromium is missing, fails to
    start or does not answer within ``timeout`` seconds."""
    exe = chromium or find_chromium()
    if exe is None:
        raise BrowserError(f"no Chromium found (tried {', '.join(CHROMIUM_NAMES)}; set ADVGEN_CHROMIUM)")
    url = Path(html_path).resolve().as_uri()
    deadline = time.monotonic() + timeout
    tmp = Path(tempfile.mkdtemp(prefix="advgen-chromium-"))
    profile = tmp / "profile"
    stderr_path = tmp / "stderr.txt"
    cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
           "--remote-debugging-port=0", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
           "--disable-background-networking", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--mute-audio", "--disable-breakpad", "--disable-crash-reporter", f"--window-size={width},{height}",
           "about:blank"]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    cdp = None
    try:
        cdp = _CDP(_wait_for_devtools(proc, stderr_path, profile, deadline), deadline)
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            cdp.send(f"{domain}.enable", session=sid)
        cdp.send("Page.setLifecycleEventsEnabled", {"enabled": True}, session=sid)
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        nav = cdp.send("Page.navigate", {"url": url}, session=sid)
        if nav.get("errorText"):
            raise BrowserError(f"could not open {url}: {nav['errorText']}")
        # the load event of this navigation (not of about:blank): every image has loaded or failed
        cdp.wait_event("Page.lifecycleEvent", session=sid, name="load", loaderId=nav.get("loaderId"))
        state = cdp.send("Runtime.evaluate", {"expression": _PAGE_STATE % json.dumps(table_id),
                                              "returnByValue": True}, session=sid)
        if "exceptionDetails" in state:
            raise BrowserError(f"page inspection failed: {state['exceptionDetails']}")
        value = state["result"]["value"]
        shot = None
        if screenshot is not None:
            metrics = cdp.send("Page.getLayoutMetrics", session=sid)
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            clip = {"x": 0, "y": 0, "width": max(width, int(size["width"])),
                    "height": min(int(size["height"]) + 1, MAX_SCREENSHOT_HEIGHT), "scale": 1}
            data = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                       "clip": clip}, session=sid)["data"]
            shot = Path(screenshot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.write_bytes(base64.b64decode(data))
        cdp.send("Runtime.evaluate", {"expression": "1"}, session=sid)  # flush events that raced the load
        errors = [t for ev in cdp.events if ev.get("sessionId") == sid and (t := _error_text(ev)) is not None]
        try:
            cdp.send("Browser.close")
        except Exception:  # noqa: BLE001 - the browser may close before it answers
            pass
        return PageReport(
            url=url, console_errors=errors,
            images=[ImageStatus(i["src"], bool(i["complete"] and i["w"] > 0), i["w"], i["h"]) for i in value["images"]],
            table_rows=value["tableRows"], script_elements=value["scripts"], text=value["text"], title=value["title"],
            screenshot=shot)
    finally:
        if cdp is not None:
            cdp.close()
        _kill(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def crop_png(path: str | Path, max_height: int) -> None:
    """Keep the top ``max_height`` pixels of the PNG at ``path`` (a full-page capture is tall)."""
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(path) as img:
        if img.height <= max_height:
            return
        top = img.crop((0, 0, img.width, max_height))
    top.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m advgen.browser", description=__doc__.split("\n\n")[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("--screenshot", type=Path, default=None, help="save a full-page PNG here")
    ap.add_argument("--table-id", default="claims")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    r = inspect_page(args.html, args.screenshot, table_id=args.table_id, timeout=args.timeout)
    print(json.dumps({"url": r.url, "console_errors": r.console_errors, "images": len(r.images),
                      "broken_images": [i.src for i in r.broken_images], "table_rows": r.table_rows,
                      "script_elements": r.script_elements,
                      "screenshot": str(r.screenshot) if r.screenshot else None}, indent=2))
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
