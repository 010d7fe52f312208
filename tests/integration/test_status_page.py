"""The status page in a real browser: headless Chromium (Debian's, driven by Selenium
through /usr/bin/chromedriver, nothing downloaded) loads the page of a running instance,
finds the numbers of the JSON, and sees a raised signal without a reload."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BUILD = Path(__file__).resolve().parents[2] / "build"


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM        # with the driver's path: no selenium-manager
    profile = tempfile.mkdtemp(prefix="sb-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _json(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json", timeout=10) as reply:
        return json.loads(reply.read())


def _row(driver, selector: str) -> dict[str, str]:
    """The cells of one row, read in one go (the page rebuilds its rows each poll)."""
    return driver.execute_script("""
        const row = document.querySelector(arguments[0]);
        const cells = {};
        if (row) row.querySelectorAll("td[data-k]").forEach(
            td => { cells[td.dataset.k] = td.textContent; });
        return cells;""", selector)


def test_the_page_shows_the_json_and_follows_a_raised_signal(make_instance, browser,
                                                              wait_for):
    inst = make_instance({"workers": 2, "mules": 1, "stats": "127.0.0.1:0", "stats-http": True},
                         [{"num": 30, "target": "worker", "handler": "python:sbtest:mark"},
                          {"num": 31, "target": "mule", "handler": "python:sbtest:mark"}])
    port = int(re.search(r"stats server on 127\.0\.0\.1:(\d+)", inst.log).group(1))
    inst.signal(30)
    inst.wait_results(1)
    browser.get(f"http://127.0.0.1:{port}/")
    browser.execute_script("window.loadedOnce = true")     # gone if the page reloads
    wait_for(lambda: int(browser.find_element("tag name", "body")
                         .get_attribute("data-polls") or 0) >= 1, 15)
    doc = _json(port)
    assert browser.find_element("id", "pid").text == str(inst.pid)
    for w in doc["workers"]:
        cells = _row(browser, f'tr[data-role="worker"][data-id="{w["id"]}"]')
        assert (cells["pid"], cells["handled"], cells["state"]) == (
            str(w["pid"]), str(w["signals"]), w["state"])
    signal, row = doc["signals"]["30"], 'tr[data-signal="30"]'
    cells = _row(browser, row)
    assert cells["handled"] == str(signal["handled"]) == "1"
    assert cells["target"] == "worker"
    assert cells["p50"] == str(signal["latency"]["p50"]) != "0"

    inst.signal(30)
    wait_for(lambda: _row(browser, row)["handled"] == "2", 15)
    assert browser.execute_script("return window.loadedOnce") is True     # no reload
    assert _json(port)["signals"]["30"]["handled"] == 2
    BUILD.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(BUILD / "status-page.png"))
