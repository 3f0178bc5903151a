"""The HTML reports in a real browser: Debian's chromium driven by Selenium opens the run
report and the period report of real monitoring runs (the `sudden` scenario) from disk.

Each page must render its charts, log no console error and fetch nothing: the only
request is the page itself (Chromium's network log and the resource timing API), and no
element points at a URL. At a phone's width nothing overflows the page sideways.
Screenshots are kept in the test's folder; with ``CHURN_REPORT_PICTURE=FILE`` the run
report's is also copied to FILE (how the README's picture is made, docs/reports.md).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.report.period import period_report

from .chromium import headless_chromium
from .report_fixtures import Passes, monitored_passes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGE_TIMEOUT = 60
DESKTOP = (1280, 1500)
PHONE = (390, 844)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    """Both reports: name -> (file, charts it holds)."""
    tmp = tmp_path_factory.mktemp("browser")
    passes: Passes = monitored_passes(tmp)
    period = tmp / "period.html"
    period.write_text(period_report(passes.config, 24, time.time()), encoding="utf-8")
    features = len(passes.config.features.numeric) + len(passes.config.features.categorical)
    # Run: one chart per feature, performance, two correlation matrices, target.
    return {"run": (passes.drift[1].with_suffix(".html"), features + 4), "period": (period, 3)}


@pytest.fixture
def browser(require_binary: Callable[[str], str], tmp_path: Path) -> Iterator[Any]:
    with headless_chromium(
        require_binary,
        tmp_path,
        window=DESKTOP,
        flags=["--hide-scrollbars"],
        capabilities={"goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"}},
    ) as driver:
        driver.set_page_load_timeout(PAGE_TIMEOUT)
        yield driver


def requests(driver: Any) -> list[tuple[str, str]]:
    """(document, URL) of every request since the last call, from Chromium's network
    (performance) log; the document is the page that made it."""
    found = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            params = message["params"]
            found.append((params.get("documentURL", ""), params["request"]["url"]))
    return found


EXTERNAL_REFERENCES = """
return Array.from(document.querySelectorAll('[src], [href], [srcset], [data]'))
  .map(e => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('srcset')
            || e.getAttribute('data'))
  .filter(url => !url.startsWith('#'));
"""

CHARTS = """
return Array.from(document.querySelectorAll('figure.chart svg')).map(svg => {
  const box = svg.getBoundingClientRect();
  return [box.width, box.height, svg.querySelectorAll('path, text').length];
});
"""


@pytest.mark.parametrize("name", ["run", "period"])
def test_the_report_renders_offline_without_errors(
    name: str, reports: dict[str, tuple[Path, int]], browser: Any, tmp_path: Path
) -> None:
    path, charts = reports[name]
    url = path.resolve().as_uri()
    requests(browser)  # forget the browser's own start-up requests
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    made = requests(browser)
    assert [u for document, u in made if document == url] == [url]  # the page alone
    assert not [u for _, u in made if u.startswith(("http:", "https:", "ws:", "wss:"))]
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert browser.execute_script(EXTERNAL_REFERENCES) == []
    assert browser.execute_script("return document.scripts.length") == 0

    shown = browser.execute_script(CHARTS)
    assert len(shown) == charts
    for width, height, marks in shown:
        assert width > 200 and height > 100 and marks > 10
    browser.save_screenshot(str(tmp_path / f"{name}-desktop.png"))
    picture = os.environ.get("CHURN_REPORT_PICTURE")
    if name == "run" and picture:
        shutil.copyfile(tmp_path / f"{name}-desktop.png", picture)

    browser.set_window_size(*PHONE)
    width = browser.execute_script("return window.innerWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    for chart_width, _, _ in browser.execute_script(CHARTS):
        assert chart_width <= width
    browser.save_screenshot(str(tmp_path / f"{name}-phone.png"))
