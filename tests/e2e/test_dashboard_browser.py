"""The report and latent dashboards in a real headless Chromium (Debian's chromium +
chromium-driver, driven by Selenium; launch/setup.sh installs them).

The sweep is written through the real writers - point records, SAE save, latent store
slice writer, interpret record files + manifests, then the real gather and align steps -
with ``</script><script>alert(1)</script>`` planted in the corpus text and in the LLM's
explanations. Pages must load without console errors, never fire an alert, filter on
search, sort on a header click, show the activation on hover, and render non-blank.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # ~1-2 min: model + browser start
ROOT = Path(__file__).resolve().parents[2]


def _helpers():
    spec = importlib.util.spec_from_file_location(
        "report_helpers", ROOT / "tests/unit/test_report.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _commit_point(root: Path, cfg, scorers, rng, helpers) -> None:
    """Interpret record files and every stage's manifest, as the stages commit them."""
    from interp.models import hookpoint_width
    from interp.plan import plan_point
    from interp.runs import RunPaths, commit_task

    paths = RunPaths(root, cfg)
    for job in plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint)):
        for task in job.tasks:
            if job.stage == "interpret":
                recs = [helpers.record(i, scorers, rng, True) for i in range(task.start, task.stop)]
                paths.records_file(task.index).parent.mkdir(parents=True, exist_ok=True)
                paths.records_file(task.index).write_text(
                    "".join(json.dumps(r) + "\n" for r in recs)
                )
            commit_task(paths.manifest_file(job.stage, task.index), {})


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from interp.plan import Task
    from interp.report.html import write_report
    from interp.stages import gather
    from interp.stages.align import align_sweep
    from interp.stages.context import StageContext

    h = _helpers()
    tmp = tmp_path_factory.mktemp("browser")
    scorers = ("detection", "fuzzing")
    root = h.make_sweep(tmp, "web", h.TOPK2, scorers=scorers, store=True, table=False)
    rng = np.random.default_rng(1)
    for layer in (3, 6):
        cfg = h.point_cfg(tmp, "web", layer)
        _commit_point(root, cfg, scorers, rng, h)
    gather.run(StageContext(root, Task(0, 0, 1)))
    align_sweep(root, embed_explanations=False)
    return write_report(root)


def _driver():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium / chromedriver not installed: run bash launch/setup.sh (step 1b)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: setup.sh")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--allow-file-access-from-files"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.fixture(scope="module")
def browser():
    d = _driver()
    yield d
    d.quit()


def _load(browser, page: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    browser.get(page.as_uri())
    browser.execute_script("return document.readyState")
    try:
        text = browser.switch_to.alert.text
        pytest.fail(f"{page.name} fired an alert: {text!r}")
    except NoAlertPresentException:
        pass
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, f"console errors on {page}: {errors}"


def _rows(browser) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, "#latents tbody tr")]  # fmt: skip


def _not_blank(png: bytes, out: Path) -> float:
    from PIL import Image

    out.write_bytes(png)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return float(pixels.std())


def test_report_page_loads_with_its_images(browser, report: Path) -> None:
    _load(browser, report)  # a missing image would be a console error
    n_img = browser.execute_script(
        "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
    )
    assert n_img >= 4
    assert _not_blank(browser.get_screenshot_as_png(), report.parent / "screenshot-report.png") > 10


def test_index_searches_and_sorts(browser, report: Path) -> None:
    from selenium.webdriver.common.by import By

    _load(browser, report.parent / "latents" / "index.html")
    header = [th.get_attribute("data-col") for th in browser.find_elements(By.CSS_SELECTOR, "th")]
    rows = _rows(browser)
    assert len(rows) == 16  # 8 latents x 2 points
    # the planted explanation is shown as text, not run
    expl = [r[header.index("explanation")] for r in rows]
    assert any("</script><script>alert(1)</script>" in e for e in expl)

    box = browser.find_element(By.ID, "q")
    box.send_keys("topic 3")
    filtered = _rows(browser)
    assert len(filtered) == 2 and all("topic 3" in r[header.index("explanation")] for r in filtered)
    box.clear()
    box.send_keys("alert(1)")
    assert {r[header.index("latent")] for r in _rows(browser)} == {"0"}
    box.clear()
    browser.execute_script("document.getElementById('q').dispatchEvent(new Event('input'))")
    assert len(_rows(browser)) == 16

    col = header.index("detection")
    browser.find_elements(By.CSS_SELECTOR, "th")[col].click()
    values = [float(r[col]) for r in _rows(browser) if r[col]]
    assert values == sorted(values, reverse=True) and len(set(values)) > 3
    browser.find_elements(By.CSS_SELECTOR, "th")[col].click()
    values = [float(r[col]) for r in _rows(browser) if r[col]]
    assert values == sorted(values)
    lat = header.index("latent")
    browser.find_elements(By.CSS_SELECTOR, "th")[lat].click()
    assert [int(r[lat]) for r in _rows(browser)][:2] == [7, 7]  # numbers sort as numbers
    assert _not_blank(browser.get_screenshot_as_png(), report.parent / "screenshot-index.png") > 10


def test_latent_page_highlights_and_hovers(browser, report: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _load(browser, report.parent / "latents" / "index.html")
    browser.find_element(By.ID, "q").send_keys("alert(1)")
    browser.find_element(By.CSS_SELECTOR, "#latents tbody tr a").click()
    assert browser.current_url.endswith("/0.html")
    _load(browser, Path(browser.current_url.removeprefix("file://")))
    assert (
        "</script><script>alert(1)</script>" in browser.find_element(By.CSS_SELECTOR, ".expl").text
    )
    lit = [t for t in browser.find_elements(By.CSS_SELECTOR, ".t")
           if float(t.get_attribute("data-act")) > 0]  # fmt: skip
    assert lit, "no highlighted token"
    ActionChains(browser).move_to_element(lit[0]).perform()
    shown = browser.execute_script(
        "return getComputedStyle(arguments[0], '::after').content", lit[0]
    )
    assert shown.strip('"') == lit[0].get_attribute("data-act")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.hist rect")
    assert browser.find_elements(By.XPATH, "//th[text()='promoted']")
    partner = browser.find_elements(By.XPATH, "//h2[text()='Aligned partners']/following::ul[1]//a")
    assert partner, "aligned partner link missing"
    shot = browser.get_screenshot_as_png()
    assert _not_blank(shot, report.parent / "screenshot-latent.png") > 10
    partner[0].click()
    _load(browser, Path(browser.current_url.removeprefix("file://")))
