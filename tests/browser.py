"""Open a page in headless Chromium and report what a reader would see: a small client of the
Chrome DevTools protocol over ``--remote-debugging-pipe`` (no driver, no download).

``python tests/browser.py PAGE.html SHOT.png`` writes a screenshot of the page's top
(``docs/report.png`` is made this way).
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-extensions", "--disable-dev-shm-usage", "--remote-debugging-pipe")
#: what the page is asked once it has loaded: its sections, and per figure the points it says
#: it draws and the markers the browser actually lays out inside its data groups
PROBE = """JSON.stringify({
  sections: [...document.querySelectorAll('section[id]')].map(s => s.id),
  scripts: document.scripts.length,
  figures: [...document.querySelectorAll('figure.plot')].map(f => ({
    points: Number(f.dataset.points),
    markers: [...f.querySelectorAll('g[id^="pts-"] use')].length,
    shown: [...f.querySelectorAll('g[id^="pts-"] use')]
             .filter(u => u.getBoundingClientRect().width > 0).length,
    svg: f.querySelectorAll('svg').length})),
  height: document.documentElement.scrollHeight})"""


def find_chromium() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def install_chromium() -> str:
    """Debian's chromium, installed with apt when missing (root only)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                   check=True, env=env, capture_output=True)
    return find_chromium()


class Browser:
    """One headless Chromium driven over the DevTools pipe (fds 3 and 4 of the child)."""

    def __init__(self, executable: str = CHROMIUM, width: int = 1200, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="veille-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds():
            # in the child, before exec: the protocol's fds are 3 (commands) and 4 (replies).
            # Moved above 9 first, so that dup2 never meets its own fd (a no-op that would
            # keep close-on-exec); dup2's copies are inheritable, the pipes' own ends are not
            r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child_r, from_child_w))
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            close_fds=False, preexec_fn=fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, session: bool = False, timeout: float = 60, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe: "
                                   + self.proc.stderr.read().decode(errors="replace")[-2000:])
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        for e in self.events:
            if e.get("method") == method:
                return e
        deadline = time.monotonic() + timeout
        while True:
            e = self._read(max(0.1, deadline - time.monotonic()))
            self.events.append(e)
            if e.get("method") == method:
                return e

    def open(self, path: Path) -> dict:
        """Load ``path``; returns the :data:`PROBE` answer plus ``errors`` (console errors,
        uncaught exceptions, error log entries) and ``requests`` (URLs other than the page)."""
        url = Path(path).resolve().as_uri()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")
        found = json.loads(self.call("Runtime.evaluate", session=True, expression=PROBE,
                                     returnByValue=True)["result"]["value"])
        found["errors"] = errors(self.events)
        found["requests"] = [e["params"]["request"]["url"] for e in self.events
                             if e.get("method") == "Network.requestWillBeSent"
                             and e["params"]["request"]["url"] != url]
        return found

    def screenshot(self, out: Path, width: int, height: int, top: int = 0) -> None:
        import base64

        shot = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True,
                         clip={"x": 0, "y": top, "width": width, "height": height, "scale": 1})
        Path(out).write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def errors(events: list[dict]) -> list[str]:
    """The console errors, uncaught exceptions and error log entries among ``events``."""
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                              for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            out.append("exception: " + p["exceptionDetails"].get("text", ""))
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.loadingFailed":
            out.append(f"network: {p.get('errorText')}")
    return out


if __name__ == "__main__":
    page, shot = Path(sys.argv[1]), Path(sys.argv[2])
    with Browser(find_chromium() or CHROMIUM, width=1100) as b:
        info = b.open(page)
        if info["errors"]:
            sys.exit("errors: " + "; ".join(info["errors"]))
        b.screenshot(shot, 1100, min(info["height"], int(sys.argv[3]) if len(sys.argv) > 3
                                     else 2400))
    print(f"{shot}: {shot.stat().st_size / 1e3:.0f} kB; {len(info['figures'])} figures")
