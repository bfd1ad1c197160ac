"""``dvpt app`` in a real browser (headless Chromium via Selenium) and under 20 concurrent requests.

The page's probabilities are read from the rendered DOM and checked against ``dvpt predict
--format json`` on the same image to 1e-4. The screenshot is saved under the test's folder;
set ``DVPT_APP_SCREENSHOT=docs/figures/app.png`` to also write the README's figure.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the [app] extra is not installed: pip install 'dvpt[app]'")
pytest.importorskip("selenium", reason="the [app] extra is not installed: pip install 'dvpt[app]'")

from app_fixtures import CLASSES, predict_json, served  # noqa: E402,F401

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian chromium and chromium-driver are missing: run `make system-deps` (apt-get)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def shown_tables(driver) -> list[list[list[str]]]:
    """The rendered result tables (one per prompt per image): rows of cell texts."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#results table')).map(t =>"
        " Array.from(t.querySelectorAll('tbody tr')).map(r =>"
        " Array.from(r.querySelectorAll('td')).map(c => c.textContent.trim())));")


def test_browser_upload_type_read_probabilities(served, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(served.url)
    wait = WebDriverWait(browser, 60)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#images input[type=file]"))
    upload.send_keys(str(served.image))
    wait.until(lambda d: served.image.stem in d.find_element(By.ID, "images").text)  # name shown as stem + suffix
    box = browser.find_element(By.CSS_SELECTOR, "#classes textarea")
    box.clear()
    box.send_keys(CLASSES)
    browser.find_element(By.ID, "classify").click()
    tables = wait.until(lambda d: len(shown_tables(d)) == 2 and shown_tables(d))
    screenshot = tmp_path / "app.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("DVPT_APP_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["DVPT_APP_SCREENSHOT"])

    reference = predict_json(served.prompt_path, served.image)
    expected = dict(zip(reference["classes"], reference["images"][0]["probabilities"]))
    trained = served.book.prompts[served.prompt_name].classnames
    zero_rows, tuned_rows = tables  # the prompts in the order ticked: zero-shot, then the file
    assert [r[0] for r in tuned_rows] == [t["class"] for t in reference["images"][0]["top"]]
    for name, tag, prob, _bar in tuned_rows:
        assert float(prob) == pytest.approx(expected[name], abs=1e-4)
        assert tag == ("base" if name in trained else "novel")
    assert {r[1] for r in zero_rows} == {"novel"}  # zero-shot was trained on nothing
    assert sum(float(r[2]) for r in zero_rows) == pytest.approx(1, abs=1e-6)


def test_twenty_concurrent_classify_requests(served) -> None:
    from gradio_client import Client, handle_file

    reference = predict_json(served.prompt_path, served.image)["images"][0]["probabilities"]
    client = Client(served.url, verbose=False)
    jobs = [client.submit(handle_file(str(served.image)), CLASSES, served.prompt_name, api_name="/classify")
            for _ in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda job: json.loads(job.result(timeout=300)), jobs))
    assert len(answers) == 20
    for doc in answers:
        assert doc["images"][0]["probabilities"] == pytest.approx(reference, abs=1e-4)
    after = json.loads(client.predict(handle_file(str(served.image)), CLASSES, served.prompt_name,
                                      api_name="/classify"))
    assert after["images"][0]["probabilities"] == pytest.approx(reference, abs=1e-4)


def test_bad_input_is_a_message_in_the_page(served, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(served.url)
    wait = WebDriverWait(browser, 60)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#images input[type=file]"))
    upload.send_keys(str(served.image))
    wait.until(lambda d: served.image.stem in d.find_element(By.ID, "images").text)
    box = browser.find_element(By.CSS_SELECTOR, "#classes textarea")
    box.clear()
    box.send_keys("red, blue, red")
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda d: "repeated: red" in d.find_element(By.TAG_NAME, "body").text)
    box.clear()
    box.send_keys(CLASSES)  # the same page keeps working after the message
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda d: len(shown_tables(d)) == 2)
