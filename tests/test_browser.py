"""The budget explorer of notebook 04 in a real browser: JupyterLab on localhost, driven in headless Chromium.

The test copies notebook 04 into a temporary folder (its runs go there too), starts JupyterLab, opens the notebook in
Chromium (Selenium + Debian's chromium/chromium-driver, which `make test` installs when it can), runs every cell in
the `smoke` preset through JupyterLab's own "run all" command, then moves the MAC-budget slider with the keyboard and
checks that the shown MACs and the generated image change. The notebook runs with ``explorer_rows = "all"``: a 20-step
smoke supernet may well rank its smallest sub-network best, and then the Pareto front has a single point and the
slider nothing to move to; stepping through every evaluated sub-network exercises the same widget wiring (slider ->
kernel -> extracted network -> image) with distinct networks at every position.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} not found (Debian: apt-get install chromium chromium-driver; `make test` does it as root)"
    for module in ("selenium", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            return f"python package {module} missing (pip install -e '.[dev]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook_copy(folder: Path) -> Path:
    """notebooks/04_search.ipynb with its parameters cell set to browse every evaluated sub-network."""
    nb = json.loads((ROOT / "notebooks" / "04_search.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "".join(params["source"])
    assert 'explorer_rows = "front"' in source and 'preset = "smoke"' in source
    params["source"] = source.replace('explorer_rows = "front"', 'explorer_rows = "all"')
    (folder / "notebooks").mkdir(parents=True)
    path = folder / "notebooks" / "04_search.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture
def jupyterlab(tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    _notebook_copy(tmp_path)
    port, token = _free_port(), "gclib-browser-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"), "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.expose_app_in_browser=True"] + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"JupyterLab did not start; log: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}/lab/tree/notebooks/04_search.ipynb?token={token}", tmp_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float, what: str, poll: float = 1.0):
    from selenium.common.exceptions import StaleElementReferenceException
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
        except StaleElementReferenceException:   # JupyterLab re-rendered an output between finding and reading it
            value = None
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_budget_slider_updates_macs_and_image(jupyterlab, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    url, folder = jupyterlab
    browser.get(url)
    # JupyterLab is up, the notebook is open and its kernel is idle.
    # (Headless, nothing has focus, so the notebook panel is looked up among the main area's widgets and activated.)
    _wait(lambda: browser.execute_script(
        "const app = window.jupyterapp; if (!app || !app.shell) return false;"
        "const w = Array.from(app.shell.widgets('main')).find(x => x.sessionContext); if (!w) return false;"
        "app.shell.activateById(w.id); const s = w.sessionContext.session;"
        "return !!(s && s.kernel && s.kernel.status === 'idle');"),
        120, "the notebook's kernel to be idle")
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")

    def explorer_ready():
        failed = [o.text for o in browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
                  if "Traceback (most recent call last)" in o.text]
        assert not failed, f"a cell failed:\n{failed[0][-3000:]}"
        return browser.find_elements(By.CSS_SELECTOR, ".gclib-explorer-info .gclib-explorer-macs")

    _wait(explorer_ready, 420, "the budget explorer to render (notebook 04 in smoke)", poll=2)

    def shown():
        """(the MACs shown, the picked network's PNG as base64): the image's bytes, not its src, which is a blob URL
        the page may renew without a change (under load a re-render alone once passed for the slider's update)."""
        macs = browser.find_element(By.CSS_SELECTOR, ".gclib-explorer-info .gclib-explorer-macs").text
        image = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const img = document.querySelector('img.gclib-explorer-image');"
            "if (!img || !img.src) { done(null); return; }"
            "fetch(img.src).then(r => r.arrayBuffer()).then(buffer => {"
            "  let text = ''; for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);"
            "  done(btoa(text)); }).catch(() => done(null));")
        return macs, image

    def settled():
        first = shown()
        time.sleep(1)
        return first if first[1] and shown() == first else None

    def state():   # what a failure message needs: the explorer's text and the slider's position
        return browser.execute_script(
            "const info = document.querySelector('.gclib-explorer-info');"
            "const h = document.querySelector('.gclib-explorer-slider .noUi-handle');"
            "return [info && info.innerText, h && h.getAttribute('aria-valuenow'), document.activeElement === h];")

    before = _wait(settled, 60, "the explorer's image to settle")
    handle = browser.find_element(By.CSS_SELECTOR, ".gclib-explorer-slider .noUi-handle")
    # focused by script, centred in view: a click can land on whatever cell scrolls over the slider meanwhile
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", handle)
    seen = state()
    handle.send_keys(Keys.ARROW_LEFT)  # the slider starts in the middle: one step left is always possible
    try:
        after = _wait(lambda: shown() if shown()[0] != before[0] else None, 90,
                      "the shown MACs to change after the slider moved")
    except AssertionError as error:
        raise AssertionError(f"{error}; before the key: {seen}, now: {state()}") from None
    # the text is written before the images (one update): wait for the image to follow
    after = _wait(lambda: shown() if shown()[1] not in (None, before[1]) else None, 30, "the generated image to change")
    assert float(after[0]) < float(before[0]), "one step left should show a cheaper sub-network"
    assert (folder / "runs" / "smoke" / "search_facades.json").exists(), "the notebook should have run to its export"
