"""`vlm-train web` in a real headless browser: upload an image, ask for a box, see the streamed
answer, the crop-tool call with its crop, and the answer box drawn on the image."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.infer.browser import ensure_chromium, headless_chrome
from vlm_train.testing.ray_cluster import free_port
from vlm_train.testing.taught import QUESTION, TARGET

pytestmark = pytest.mark.slow
ARTEFACT = Path(os.environ.get("VLM_TRAIN_ARTEFACTS", "/tmp/vlm_train_artefacts")) / "web_demo.png"


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"demo exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"demo not up after {timeout}s:\n{log.read_text()[-3000:]}")


def red_pixels(png: bytes) -> list[tuple[int, int]]:
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    return [(x, y) for x in range(im.width) for y in range(im.height) if im.getpixel((x, y)) == (255, 0, 0)], im.size


def test_demo_in_browser(taught, tmp_path, repo):
    why = ensure_chromium()
    if why:
        pytest.skip(why)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    log = tmp_path / "web.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(repo))
    proc = subprocess.Popen([sys.executable, "-m", "vlm_train.cli", "web", str(taught), "--port", str(port),
                             "--max-new-tokens", "200"], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=repo)
    driver = None
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, proc, log)
        import psutil  # bound to loopback only

        addrs = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections() if c.status == psutil.CONN_LISTEN}
        assert addrs == {"127.0.0.1"}, addrs
        driver = headless_chrome()
        wait = WebDriverWait(driver, 180)
        driver.get(url)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image_in input[type=file]")))
        upload.send_keys(str(taught / "lesson" / "scene.png"))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image_in img")))
        driver.find_element(By.CSS_SELECTOR, "#question textarea").send_keys(QUESTION)
        driver.find_element(By.ID, "send").click()
        answer = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#answer_image img")))
        wait.until(lambda d: "box 1:" in d.find_element(By.ID, "chat").text)
        chat = driver.find_element(By.ID, "chat").text
        assert QUESTION in chat and "<tool_call>" in chat and "<box>" in chat, chat
        crops = driver.find_elements(By.CSS_SELECTOR, "#crops img")
        assert crops, "the crop-tool call is not shown with its crop"
        ARTEFACT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(tmp_path / "web_demo.png"))
        shutil.copy(tmp_path / "web_demo.png", ARTEFACT)
        print(f"\nscreenshot: {ARTEFACT}")
        # The drawn box: red pixels exactly on the answer's box outline (image enlarged 4x).
        with urllib.request.urlopen(answer.get_attribute("src")) as r:
            reds, size = red_pixels(r.read())
        scale = size[0] / 96
        xs, ys = [x for x, _ in reds], [y for _, y in reds]
        assert reds and abs(min(xs) / scale - TARGET.x1) <= 4 and abs(max(xs) / scale - TARGET.x2) <= 4, (min(xs), max(xs), scale)
        assert abs(min(ys) / scale - TARGET.y1) <= 4 and abs(max(ys) / scale - TARGET.y2) <= 4
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(timeout=30)
