"""The page at `/` in headless Chromium: it lists the models, and a chosen image comes back
as the overlay at the image's size; a file that is no image shows the server's one line.
Skipped, with the reason, where Chromium or selenium is missing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.report.browser import chromium, console_errors, missing

from .conftest import serving

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"browser tests: {missing()}")


def wait_for(driver, script: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def test_the_page_shows_the_overlay_of_a_chosen_image(checkpoint: Path, images: Path,
                                                      tmp_path: Path) -> None:
    with serving([str(checkpoint)]) as (url, _), chromium(1000, 800) as driver:
        driver.get(url + "/")
        wait_for(driver, "return document.querySelectorAll('#model option').length")
        assert driver.execute_script("return document.getElementById('model').value") == "tiny"
        assert "binary" in driver.find_element("id", "about").text
        chooser = driver.find_element("id", "file")
        chooser.send_keys(str(images / "odd.png"))
        wait_for(driver, "return document.getElementById('result').dataset.done")
        size = driver.execute_script("const i = document.getElementById('result');"
                                     "return [i.naturalWidth, i.naturalHeight]")
        assert size == [56, 40]
        assert "odd.png: 56 x 40" in driver.find_element("id", "status").text
        assert console_errors(driver) == []

        junk = tmp_path / "notes.txt"
        junk.write_text("not an image")
        chooser.send_keys(str(junk))
        wait_for(driver, "return document.getElementById('status').className === 'error'")
        assert "not an image unetzoo reads" in driver.find_element("id", "status").text
