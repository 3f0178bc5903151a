"""Headless Chromium through Selenium, for the tests that open a page (the Streamlit
form, the HTML reports). The binaries are Debian's `chromium` and `chromium-driver`:
missing, the test skips locally and fails when ``CI`` is set (`require_binary`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def headless_chromium(
    require_binary: Callable[[str], str],
    folder: Path,
    *,
    window: tuple[int, int],
    flags: Sequence[str] = (),
    capabilities: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """A Chromium WebDriver with a `window`-sized viewport and a fresh profile in
    `folder` (the driver's log there too), quit on exit."""
    require_binary(CHROMIUM)
    require_binary(CHROMEDRIVER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={window[0]},{window[1]}",
        f"--user-data-dir={folder / 'chromium-profile'}",
        *flags,
    ):
        options.add_argument(flag)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    service = Service(CHROMEDRIVER, log_output=str(folder / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
