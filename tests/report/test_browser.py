"""The pages in a real browser (headless Chromium): they load without console errors, every
image decodes, sorting the table by Dice changes its order, and clicking a row shows that
image's pictures. Skipped, with the reason, where Chromium or selenium is missing."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from unetzoo.engine.evaluate import evaluate_checkpoint
from unetzoo.engine.inference.predictor import InferenceOptions
from unetzoo.report import ReportOptions, write_comparison, write_report
from unetzoo.report.collect import collect_run
from unetzoo.runtime import Runtime

from .browser import broken_images, chromium, console_errors, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"browser tests: {missing()}")


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def open_page(driver, html: Path) -> None:
    driver.get(html.resolve().as_uri())
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    assert console_errors(driver) == []
    assert broken_images(driver) == []


def table_names(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#table tbody tr'))"
        ".map(r => r.getAttribute('data-name'))")


def click_header(driver, label: str) -> None:
    driver.execute_script(
        "Array.from(document.querySelectorAll('#table th button'))"
        ".find(b => b.textContent === arguments[0]).click()", label)


def click(driver, element) -> None:
    """A real click, once the element is scrolled clear of the sticky header."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def click_row(driver, name: str) -> None:
    click(driver, driver.find_element("css selector", f'#table tbody tr[data-name="{name}"] td'))


def viewer_sources(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#viewer img'))"
        ".map(i => i.getAttribute('src'))")


@pytest.fixture(scope="module")
def evaluated(binary_runs: tuple[Path, Path]) -> Path:
    """Every image of the first binary run's dataset evaluated, with its report."""
    run = binary_runs[0]
    out = run / "eval-browser"
    options = InferenceOptions(Runtime.resolve(precision="fp32"))
    evaluate_checkpoint(run / "models" / "best.pt", collect_run(run).config["dataset"],
                        split="all", out_dir=out, options=options, progress=False)
    write_report(out, options=ReportOptions(gallery=3))
    return out


def dice_order(folder: Path, reverse: bool = False) -> list[str]:
    with (folder / "per_image.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return [r["image"] for r in sorted(rows, key=lambda r: float(r["dice"]), reverse=reverse)]


def test_report_page_in_chromium(browser, evaluated: Path) -> None:
    open_page(browser, evaluated / "report.html")
    before = table_names(browser)
    assert len(before) == 24
    click_header(browser, "dice")
    after = table_names(browser)
    assert after != before
    assert [float(x) for x in browser.execute_script(
        "return Array.from(document.querySelectorAll('#table tbody tr td:nth-child(2)'))"
        ".map(c => c.textContent)")] == sorted(float(x) for x in browser.execute_script(
            "return Array.from(document.querySelectorAll('#table tbody tr td:nth-child(2)'))"
            ".map(c => c.textContent)"))
    assert after == dice_order(evaluated)
    click_header(browser, "dice")
    assert table_names(browser) == dice_order(evaluated, reverse=True)
    name = table_names(browser)[5]
    click_row(browser, name)
    viewer = browser.find_element("id", "viewer")
    assert viewer.is_displayed() and viewer.get_attribute("data-name") == name
    asset = browser.execute_script(
        "const d = JSON.parse(document.getElementById('page-data').textContent);"
        "return d.assets[d.pictured[arguments[0]]]", name)
    shown = viewer_sources(browser)
    assert asset["image"] in shown and asset["preds"]["model"] in shown
    assert asset["errors"]["model"] in shown and asset["truth"] in shown
    assert broken_images(browser) == [] and console_errors(browser) == []
    browser.find_element("css selector", "#viewer button[data-act=close]").click()
    assert not viewer.is_displayed()
    # a gallery card opens the viewer too, with the attention maps of the gallery images
    card = browser.find_element("css selector", "[data-testid=worst] .card")
    click(browser, card)
    assert viewer.get_attribute("data-name") == card.get_attribute("data-name")
    assert any("_attention" in s for s in viewer_sources(browser))


def test_compare_page_in_chromium(browser, binary_runs: tuple[Path, Path],
                                  evaluated: Path, tmp_path: Path) -> None:
    b = binary_runs[1]
    # both runs evaluated on every image, so that the per-image table has rows to sort
    options = InferenceOptions(Runtime.resolve(precision="fp32"))
    evaluate_checkpoint(b / "models" / "best.pt", collect_run(b).config["dataset"],
                        split="all", out_dir=b / "eval-browser", options=options,
                        progress=False)
    page = write_comparison([evaluated, b / "eval-browser"], tmp_path / "c.html",
                            options=ReportOptions(gallery=3)).page
    open_page(browser, page)
    before = table_names(browser)
    assert len(before) == 24
    click_header(browser, "dice A")
    assert table_names(browser) == dice_order(evaluated)
    assert table_names(browser) != before
    name = browser.find_element("css selector", "[data-testid=disagree] .card"
                                ).get_attribute("data-name")
    click_row(browser, name)
    shown = viewer_sources(browser)
    assert sum("_pred" in s for s in shown) == 2  # both runs' predictions
    assert broken_images(browser) == [] and console_errors(browser) == []


def test_ten_thousand_images_stay_paged(browser, large_run: Path) -> None:
    html = write_report(large_run)
    started = time.perf_counter()
    open_page(browser, html)
    assert browser.execute_script("return document.querySelectorAll('#table tbody tr').length"
                                  ) == 50
    click_header(browser, "dice")
    assert table_names(browser)[:3] == dice_order(large_run / "test")[:3]
    click(browser, browser.find_element("id", "next-page"))
    assert table_names(browser)[0] == dice_order(large_run / "test")[50]
    assert "of 10,000" in browser.find_element("id", "pageinfo").text
    browser.find_element("id", "filter").send_keys("img_0999")
    wanted = {f"img_0999{i}" for i in range(10)}  # still sorted by dice
    assert table_names(browser) == [n for n in dice_order(large_run / "test") if n in wanted]
    # not a timing test: a bound far above a normal load, to catch a page that hangs
    assert time.perf_counter() - started < 60


def test_instance_report_in_chromium(browser, instance_runs: tuple[Path, Path]) -> None:
    """An instance run's page: no console errors, every picture decodes, the objects
    section and its AP curve are shown, and the viewer shows the outlined objects with
    their counts."""
    html = write_report(instance_runs[0], options=ReportOptions(gallery=1))
    open_page(browser, html)
    section = browser.find_element("css selector", "[data-testid=objects]")
    assert section.is_displayed() and "mean AP 0.5:0.95" in section.text
    curve = browser.find_element("css selector", "[data-testid=ap-curve]")
    assert browser.execute_script("return arguments[0].naturalWidth", curve) > 0
    assert browser.execute_script(
        "return Array.from(document.querySelectorAll('#table th button'))"
        ".map(b => b.textContent)")[:2] == ["image", "mean_ap"]
    card = browser.find_element("css selector", "[data-testid=worst] .card")
    click(browser, card)
    viewer = browser.find_element("id", "viewer")
    assert viewer.is_displayed()
    assert "object errors" in viewer.text and "missed" in viewer.text
    assert any("_error" in s for s in viewer_sources(browser))
    assert broken_images(browser) == [] and console_errors(browser) == []
