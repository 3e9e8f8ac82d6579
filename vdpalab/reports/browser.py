"""Render a report with headless Chromium: screenshots, and what a person would see (self-tests, docs).

``screenshot`` is the plain ``--screenshot`` call. ``inspect_page`` drives Chromium over the
DevTools protocol on a pipe (``--remote-debugging-pipe``: no port, nothing listens), loads the
page at a given window size, and reports the console errors and uncaught exceptions, where an
element is and whether it is visible, and a screenshot of the first screen. Everything that
could reach the network is switched off; the profile lives in a temporary directory that is
removed afterwards; Chromium runs in its own process group and is killed by its pid only.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio")


def find_chromium() -> str | None:
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _binary(chromium: str | None) -> str:
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed")
    return binary


def screenshot(html: str | os.PathLike[str], png: str | os.PathLike[str], *, width: int = 1280, height: int = 1600,
               timeout: float = 60.0, chromium: str | None = None) -> Path:
    """Render ``html`` (a local file) into ``png``; raises RuntimeError if Chromium fails."""
    binary = _binary(chromium)
    png = Path(png).resolve()
    url = Path(html).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="vdpalab-chromium-")
    try:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}",
               url]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "HOME": profile}, start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RuntimeError(f"chromium did not finish the screenshot within {timeout:g} s")
        if proc.returncode != 0 or not png.exists():
            raise RuntimeError(f"chromium failed (rc={proc.returncode}): {stderr.strip()[-1500:]}")
        return png
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class PageCheck:
    """What Chromium saw on one page."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    element: dict[str, Any] | None = None  # {"top", "bottom", "left", "width", "height", "visible", "text"}
    title: str = ""
    png: bytes = b""


class _Pipe:
    """The DevTools protocol over Chromium's pipe: NUL-terminated JSON messages on fds 3 (in) and 4 (out)."""

    def __init__(self, to_browser: int, from_browser: int, timeout: float) -> None:
        self.wfd, self.rfd, self.timeout = to_browser, from_browser, timeout
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("chromium did not answer on the DevTools pipe in time")
            ready, _, _ = select.select([self.rfd], [], [], left)
            if ready:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method}: {reply['error']}")
                return dict(reply.get("result") or {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, deadline: float) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            if "method" in event:
                self.events.append(event)
                if event["method"] == method:
                    return event


_ELEMENT_JS = """(() => {
  const el = document.querySelector(%s);
  if (!el) return null;
  const r = el.getBoundingClientRect();
  const s = getComputedStyle(el);
  const visible = r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'
                  && parseFloat(s.opacity || '1') > 0;
  return {top: r.top, bottom: r.bottom, left: r.left, width: r.width, height: r.height, visible: visible,
          text: (el.innerText || '').slice(0, 4000)};
})()"""


def _console_errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params") or {}
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails") or {}
            exc = details.get("exception") or {}
            errors.append(f"uncaught: {exc.get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args") or [])
            errors.append(f"console.{params.get('type')}: {args}")
        elif method == "Log.entryAdded" and (params.get("entry") or {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url') or ''}".strip())
    return errors


def inspect_page(html: str | os.PathLike[str], *, selector: str = "#headline", width: int = 1280,
                 height: int = 900, full_page: bool = False, timeout: float = 60.0,
                 chromium: str | None = None) -> PageCheck:
    """Load a local page in a ``width`` x ``height`` window and report what a person would see."""
    binary = _binary(chromium)
    url = Path(html).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="vdpalab-chromium-")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()

    def child_fds() -> None:  # the browser reads commands on fd 3 and writes replies on fd 4
        high_r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)  # out of the way first: to_r/from_w may be 3 or 4
        high_w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    cmd = [binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
           f"--window-size={width},{height}", "about:blank"]
    # close_fds=False: only inheritable fds survive exec (PEP 446), i.e. stdio and the two dup2'ed pipe ends
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False,
                            preexec_fn=child_fds, env={**os.environ, "HOME": profile}, start_new_session=True)
    os.close(to_r)
    os.close(from_w)
    pipe = _Pipe(to_w, from_r, timeout)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.events.clear()
        pipe.call("Page.navigate", {"url": url}, session=session)
        pipe.wait_for("Page.loadEventFired", time.monotonic() + timeout)
        found = pipe.call("Runtime.evaluate", {"expression": _ELEMENT_JS % json.dumps(selector),
                                               "returnByValue": True}, session=session)
        title = pipe.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                          session=session)
        shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full_page},
                         session=session)
        check = PageCheck(url=url, console_errors=_console_errors(pipe.events),
                          element=(found.get("result") or {}).get("value"),
                          title=str((title.get("result") or {}).get("value") or ""),
                          png=base64.b64decode(shot.get("data") or ""))
        try:
            pipe.call("Browser.close")
        except RuntimeError:
            pass
        return check
    finally:
        os.close(to_w)
        os.close(from_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def page_screenshot(html: str | os.PathLike[str], png: str | os.PathLike[str], *, selector: str = "#headline",
                    width: int = 1280, height: int = 900, first_screen: int = 900) -> PageCheck:
    """A screenshot for the docs, refused unless the page is clean: no console errors, and ``selector``
    present, visible and starting within the first ``first_screen`` pixels."""
    check = inspect_page(html, selector=selector, width=width, height=height)
    problems = list(check.console_errors)
    if check.element is None:
        problems.append(f"{selector} is missing")
    elif not check.element["visible"] or check.element["top"] >= first_screen:
        problems.append(f"{selector} is not visible in the first {first_screen} pixels: {check.element}")
    if problems:
        raise RuntimeError(f"{html}: " + "; ".join(problems))
    Path(png).write_bytes(check.png)
    return check


def main(argv: list[str] | None = None) -> int:
    """``python -m vdpalab.reports.browser PAGE.html OUT.png [HEIGHT]`` (used by scripts/screenshots.sh)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print("usage: python -m vdpalab.reports.browser PAGE.html OUT.png [HEIGHT]", file=sys.stderr)
        return 2
    check = page_screenshot(args[0], args[1], height=int(args[2]) if len(args) == 3 else 900)
    print(f"{args[1]}: {check.title}; headline at {check.element['top'] if check.element else '?'} px, "
          "no console errors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
