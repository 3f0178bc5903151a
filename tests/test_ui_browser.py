"""The prediction form in a real browser: Debian's chromium driven by Selenium against a
live `churn-monitor ui` process and a live prediction API (uvicorn over a real MLflow
store). Every server binds 127.0.0.1 on a free port and is stopped by pid."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import httpx  # noqa: E402
import yaml  # noqa: E402

from exporter.ui import form  # noqa: E402

from .api_fixtures import LiveApi  # noqa: E402
from .chromium import headless_chromium  # noqa: E402
from .support import REPO, Process, churn_monitor, free_port, http_get, wait_until  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Seconds the page may take for a script run (the first loads the model for the
#: what-if scores on a busy two-core machine).
PAGE_TIMEOUT = 120


def _ui_command(port: int) -> list[str]:
    return churn_monitor("ui", "--port", str(port))


@pytest.fixture
def live_ui(live_api: LiveApi, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = Process(
        _ui_command(port),
        tmp_path / "ui.log",
        cwd=REPO,
        env={"CHURN_MONITOR_CONFIG": str(live_api.config_path), "CHURN_API_URL": live_api.url},
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if not process.alive():
            raise AssertionError(f"the UI exited:\n{process.output()}")
        return http_get(f"{url}/_stcore/health", timeout=2) == (200, "ok")

    try:
        wait_until(healthy, 180, f"the UI on port {port} to answer")
        yield url
    finally:
        code = process.stop()
        assert code is not None


@pytest.fixture
def browser(require_binary: Callable[[str], str], tmp_path: Path) -> Iterator[Any]:
    with headless_chromium(require_binary, tmp_path, window=(1500, 1800)) as driver:
        yield driver


def _wait(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, PAGE_TIMEOUT, poll_frequency=0.2).until(condition, what)


def _css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return _wait(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, selector),
        f"an element matching {selector}",
    )


def _idle(driver: Any) -> bool:
    """No script run in progress (Streamlit shows a status widget while running)."""
    from selenium.webdriver.common.by import By

    return not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')


def _skeletons(driver: Any) -> list[Any]:
    """Placeholders Streamlit shows while an element's code is still loading."""
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSkeleton"]')


def _set_number(driver: Any, key: str, value: str) -> None:
    from selenium.webdriver.common.keys import Keys

    field = _css(driver, f".st-key-{key} input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(value, Keys.ENTER)


def _select(driver: Any, key: str, option: str) -> None:
    from selenium.webdriver.common.by import By

    _css(driver, f'.st-key-{key} button[aria-haspopup="listbox"]').click()
    choice = _wait(
        driver,
        lambda d: next(
            (o for o in d.find_elements(By.CSS_SELECTOR, '[role="option"]') if o.text == option),
            None,
        ),
        f"the option {option!r} of {key}",
    )
    choice.click()
    _wait(
        driver,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, f".st-key-{key} input").get_attribute("value") == option
        ),
        f"{key} to show {option!r}",
    )


def test_changed_inputs_give_the_probability_the_api_gives(
    live_api: LiveApi, live_ui: str, browser: Any, tmp_path: Path
) -> None:
    driver = browser
    driver.get(live_ui)
    _css(driver, ".st-key-in_tenure input")
    _wait(driver, _idle, "the first script run to finish")

    _set_number(driver, "in_tenure", "3")
    # Auto TotalCharges follows: proof the rerun with the new tenure happened.
    raw = yaml.safe_load(live_api.config_path.read_text())
    reference = form.load_reference(raw["data"]["reference_path"])
    monthly = reference.typical["MonthlyCharges"]
    total = form.total_charges_estimate(3, monthly)
    _wait(
        driver,
        lambda d: _css(d, ".st-key-in_TotalCharges input").get_attribute("value") == f"{total:.2f}",
        "TotalCharges to follow the new tenure",
    )
    _select(driver, "in_Contract", "Two year")
    _wait(driver, _idle, "the rerun after the contract change")

    _css(driver, ".st-key-predict button").click()
    result = _wait(
        driver,
        lambda d: re.search(
            r"Churn probability (\d\.\d{4}) against the decision threshold (\d\.\d{4})",
            _css(d, ".st-key-result").text,
        ),
        "the prediction on the page",
    )
    probability = float(result.group(1))
    _wait(
        driver,
        lambda d: (
            _css(d, '.st-key-result [data-testid="stMetricValue"]').text == f"{probability:.1%}"
        ),
        "the probability metric to be drawn",
    )
    chart = '.st-key-result [data-testid="stVegaLiteChart"]'
    _css(driver, f"{chart} canvas, {chart} svg.marks")
    _wait(driver, _idle, "the prediction run to finish")
    _wait(driver, lambda d: not _skeletons(d), "every element to be drawn")
    driver.save_screenshot(str(tmp_path / "prediction-form.png"))

    expected = form.customer_payload(
        form.consistent(
            {**reference.typical, "tenure": 3, "Contract": "Two year", "TotalCharges": total},
            reference.with_service,
        )
    )
    api = httpx.post(f"{live_api.url}/predict", json=expected, timeout=30).json()
    assert result.group(1) == f"{api['churn_probability']:.4f}"
    assert result.group(2) == f"{api['threshold']:.4f}"
    page = _css(driver, ".st-key-result").text
    assert f"{api['model_name']} v{api['model_version']}" in page
    assert "compared with a typical customer's" in page
    assert "Traceback" not in driver.page_source


UNLIKE = "unlike the customers the model was trained on"


def _predict_and_read(driver: Any, what: str) -> str:
    """Press Predict churn; the result panel's text once the answer is fully drawn."""
    _css(driver, ".st-key-predict button").click()
    _wait(
        driver,
        lambda d: (
            "The inputs changed" not in _css(d, ".st-key-result").text
            and re.search(r"Churn probability \d\.\d{4} against", _css(d, ".st-key-result").text)
        ),
        f"the prediction of the {what} customer on the page",
    )
    _wait(driver, _idle, f"the prediction run of the {what} customer to finish")
    _wait(driver, lambda d: not _skeletons(d), "every element to be drawn")
    return str(_css(driver, ".st-key-result").text)


def test_an_unusual_customer_is_flagged_and_a_typical_one_is_not(
    live_api: LiveApi, live_ui: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    raw = yaml.safe_load(live_api.config_path.read_text())
    reference = form.load_reference(raw["data"]["reference_path"])
    typical = form.customer_payload(
        form.consistent(
            {
                **reference.typical,
                "TotalCharges": form.total_charges_estimate(
                    int(reference.typical["tenure"]), float(reference.typical["MonthlyCharges"])
                ),
            },
            reference.with_service,
        )
    )
    extreme = {**typical, "tenure": 72, "MonthlyCharges": 20.0, "TotalCharges": 8000.0}
    # What the API says of the two, which the page must tell.
    said = {
        name: httpx.post(f"{live_api.url}/predict", json=body, timeout=30).json()
        for name, body in (("typical", typical), ("extreme", extreme))
    }
    assert said["typical"]["unusual"] is False and said["extreme"]["unusual"] is True, said

    driver.get(live_ui)
    _css(driver, ".st-key-in_tenure input")
    _wait(driver, _idle, "the first script run to finish")
    page = _predict_and_read(driver, "typical")
    assert UNLIKE not in page

    _set_number(driver, "in_tenure", "72")
    _wait(driver, _idle, "the rerun after the tenure change")
    _set_number(driver, "in_MonthlyCharges", "20")
    _wait(driver, _idle, "the rerun after the monthly charges change")
    _css(driver, ".st-key-auto_total label").click()
    total = _wait(
        driver,
        lambda d: next(
            (
                e
                for e in d.find_elements(By.CSS_SELECTOR, ".st-key-in_TotalCharges input")
                if e.is_enabled()
            ),
            None,
        ),
        "TotalCharges to accept typing",
    )
    assert total is not None
    _set_number(driver, "in_TotalCharges", "8000")
    _wait(
        driver,
        lambda d: _css(d, ".st-key-in_TotalCharges input").get_attribute("value") == "8000.00",
        "TotalCharges to show 8000.00",
    )
    _wait(driver, _idle, "the rerun after the total charges change")
    page = _predict_and_read(driver, "extreme")
    driver.save_screenshot(str(tmp_path / "unusual-customer.png"))
    answer = said["extreme"]
    assert (
        f"This customer is {UNLIKE} (anomaly score {answer['anomaly_score']:.2f}, "
        f"cut-off {answer['anomaly_cutoff']:.2f}): treat the prediction with care."
    ) in page
    assert "Traceback" not in driver.page_source
