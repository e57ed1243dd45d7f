"""Open an HTML report in headless Chromium, fail on any console error, save a screenshot.

    python tools/check_html.py reports/tolerance.html [--screenshot shot.png] [--chromium PATH]

Talks the DevTools protocol over a pipe (``--remote-debugging-pipe``: NUL-separated JSON on
file descriptors 3 and 4), so it needs no websocket package. Collects console errors and
warnings, uncaught exceptions, log entries of level error (failed resource loads) and failed
network requests; exits 1 listing them, 0 when there are none. Chromium: Debian's package.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]


class Pipe:
    """One DevTools session over the pipe: ``call`` waits for its reply, events are kept."""

    def __init__(self, to_browser, from_browser):
        self.w, self.r = to_browser, from_browser
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(deadline))


def problems(events: list[dict]) -> list[str]:
    """Console errors/warnings, exceptions, error log entries and failed requests."""
    out = []
    for e in events:
        p, m = e.get("params", {}), e.get("method")
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                           for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.loadingFailed":
            out.append(f"network: {p.get('errorText')} ({p.get('type')})")
    return out


def _high(fds):
    """The pipe ends moved to fds >= 10 (close-on-exec), so the child's dup2 onto 3 and 4
    never meets them (a dup2 onto the same fd would keep close-on-exec set)."""
    out = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]
    for fd in fds:
        os.close(fd)
    return out


def check(page: Path, screenshot: Path | None, chromium: str, width: int = 1300) -> list[str]:
    r1, w1 = _high(os.pipe())  # browser -> us: chromium writes its fd 4
    r0, w0 = _high(os.pipe())  # us -> browser: chromium reads its fd 3
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its helper processes go with it (killpg below)
            # fds 3 and 4 must be the pipe ends when chromium starts (close_fds would close them)
            preexec_fn=lambda: (os.dup2(r0, 3), os.dup2(w1, 4)))
        os.close(r0)
        os.close(w1)
        try:
            cdp = Pipe(w0, r1)
            target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
            sid = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                cdp.call(f"{domain}.enable", session=sid)
            cdp.call("Emulation.setDeviceMetricsOverride", session=sid, width=width, height=900,
                     deviceScaleFactor=1, mobile=False)
            cdp.call("Page.navigate", session=sid, url=page.resolve().as_uri())
            cdp.wait_for("Page.loadEventFired")
            time.sleep(0.5)  # late console messages
            cdp.call("Runtime.evaluate", session=sid, expression="1")  # flush pending events
            if screenshot is not None:
                shot = cdp.call("Page.captureScreenshot", session=sid, format="png",
                                captureBeyondViewport=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            return problems(cdp.events)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args(argv)
    if not args.page.is_file():
        ap.error(f"{args.page}: no such file")
    if not Path(args.chromium).exists():
        ap.error(f"chromium not found at {args.chromium} (apt-get install chromium)")
    found = check(args.page, args.screenshot, args.chromium)
    for p in found:
        print(f"{args.page}: {p}")
    print(f"{args.page}: {len(found)} console problems" + (f"; screenshot {args.screenshot}"
                                                          if args.screenshot else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
