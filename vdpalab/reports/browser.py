"""Screenshot an HTML report with headless Chromium (self-tests, docs): proof it renders offline.

Everything that could reach the network is switched off; the profile lives in a temporary
directory that is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(html: str | os.PathLike[str], png: str | os.PathLike[str], *, width: int = 1280, height: int = 1600,
               timeout: float = 60.0, chromium: str | None = None) -> Path:
    """Render ``html`` (a local file) into ``png``; raises RuntimeError if Chromium fails."""
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed")
    png = Path(png).resolve()
    url = Path(html).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="vdpalab-chromium-")
    try:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", url]
        # Own process group: on a timeout the whole Chromium family (renderers, zygote) is killed, by our pid.
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
