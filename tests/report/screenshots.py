"""Screenshots of the pages for docs/: `python -m tests.report.screenshots RUN_A RUN_B`.

Writes (or re-writes) RUN_A's report and the comparison of RUN_A and RUN_B, opens them in
headless Chromium and saves docs/report.png and docs/compare.png (the top of each page, down
to the first images) and docs/report-viewer.png (the viewer on the worst image). The runs
in docs/ are two short trainings on dsb2018_96 (see docs/report.md).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from unetzoo.report import write_comparison, write_report

from .browser import broken_images, chromium, console_errors, missing

DOCS = Path(__file__).resolve().parents[2] / "docs"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or missing():
        print(__doc__ if len(argv) != 2 else f"cannot run: {missing()}")
        return 2
    first, second = map(Path, argv)
    report = write_report(first)
    compare = write_comparison([first, second], Path(tempfile.mkdtemp()) / "compare.html",
                               options=None).page
    with chromium(1400, 1000) as driver:
        for page, name, height in ((report, "report.png", 2050),
                                   (compare, "compare.png", 2250)):
            driver.set_window_size(1400, height)
            driver.get(page.resolve().as_uri())
            assert not broken_images(driver) and not console_errors(driver)
            driver.save_screenshot(str(DOCS / name))
            if name == "report.png":
                driver.set_window_size(1400, 900)
                card = driver.find_element("css selector", "[data-testid=worst] .card")
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
                card.click()
                time.sleep(0.5)
                driver.save_screenshot(str(DOCS / "report-viewer.png"))
    print(f"wrote {DOCS / 'report.png'}, {DOCS / 'report-viewer.png'}, {DOCS / 'compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
