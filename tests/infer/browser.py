"""A real headless browser for UI tests: Debian's chromium + chromedriver (installed with
apt-get when missing, as the SLURM fixture installs SLURM), driven through selenium."""

from __future__ import annotations

import os
import shutil
import subprocess

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def ensure_chromium() -> str | None:
    """None when chromium and chromedriver are there (installing them if root), else why not."""
    if os.path.exists(CHROMIUM) and os.path.exists(DRIVER):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "chromium/chromedriver not installed and cannot apt-get them (not root)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return None


def headless_chrome(width: int = 1400, height: int = 1200):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)
