"""report.html in a real browser (headless Debian Chromium via Selenium): every Plotly panel draws, the
console stays clean, nothing is fetched, hovering a well shows its thumbnail, headers sort; a screenshot
is saved ($FIBROCLASS_SCREENSHOTS keeps it)."""

from __future__ import annotations

import time

import pytest
from browser_kit import (
    chromium,
    console_errors,
    full_page_screenshot,
    remote_resources,
    require_browser,
    screenshot_dir,
    wait_for_plots,
)


@pytest.fixture
def page(scored_report):
    require_browser()
    return scored_report["path"]


def hover_well(driver, plate_div: str, row: int, col: int, rows: int, cols: int) -> dict:  # noqa: ANN001
    """Move the real mouse over one well of a plate heatmap; the well panel's state afterwards."""
    from selenium.webdriver.common.action_chains import ActionChains

    drag = driver.find_element("css selector", f"#{plate_div} .nsewdrag")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", drag)
    time.sleep(0.3)
    w, h = drag.size["width"], drag.size["height"]
    ActionChains(driver).move_to_element_with_offset(
        drag, -w / 2 + w * (col + 0.5) / cols, -h / 2 + h * (row + 0.5) / rows
    ).perform()
    time.sleep(0.5)
    return driver.execute_script(
        "var img = document.getElementById('fc-well-thumb'), info = document.getElementById('fc-well-info');"
        "return {hidden: img.hidden, src: (img.getAttribute('src') || '').slice(0, 23), well: info.getAttribute('data-well'),"
        " text: info.textContent};"
    )


def pick_metric(driver, plate_div: str, label: str) -> list:  # noqa: ANN001
    """Open a plate's readout menu with the mouse and choose `label`; the colorbar title and z range after."""
    from selenium.webdriver.common.action_chains import ActionChains

    gd = driver.find_element("id", plate_div)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", gd)
    ActionChains(driver).move_to_element(
        gd.find_element("css selector", ".updatemenu-header")
    ).click().perform()
    time.sleep(0.4)
    items = gd.find_elements("css selector", ".updatemenu-dropdown-button")
    item = next(e for e in items if e.get_attribute("textContent") == label)
    ActionChains(driver).move_to_element(item).click().perform()
    time.sleep(0.5)
    return driver.execute_script(
        "var d = document.getElementById(arguments[0]).data[0]; return [d.colorbar.title.text, d.zmin, d.zmax];",
        plate_div,
    )


def test_report_renders_and_is_interactive_in_chromium(page, tmp_path):
    with chromium() as driver:
        driver.get(page.as_uri())
        drawn, total = wait_for_plots(driver)
        assert total >= 11 and drawn == total, f"{drawn} of {total} plot divs drew"
        assert driver.execute_script("return typeof Plotly") == "object"
        assert console_errors(driver) == []
        assert remote_resources(driver) == []

        state = hover_well(driver, "fc-plate-P96", 1, 4, 8, 12)  # B05
        assert (
            state["well"] == "P96|B05" and not state["hidden"] and state["src"] == "data:image/jpeg;base64,"
        )
        assert "P96 B05" in state["text"] and "rescue" in state["text"] and "IL-6" in state["text"]
        title, zmin, zmax = pick_metric(driver, "fc-plate-P96", "viability %")
        assert (title, zmin, zmax) == ("viability %", 0, 130)

        order = driver.execute_script(
            "var t = document.getElementById('fc-compound-table');"
            "var th = Array.from(t.tHead.rows[0].cells).find(c => c.textContent === 'max rescue %');"
            "th.click(); var up = Array.from(t.tBodies[0].rows).map(r => r.cells[0].textContent);"
            "th.click(); var down = Array.from(t.tBodies[0].rows).map(r => r.cells[0].textContent);"
            "return [up, down];"
        )
        assert order[0][-1] in ("rescuer", "ruxolitinib") and order[1] == order[0][::-1]
        shot = full_page_screenshot(driver, screenshot_dir(tmp_path) / "report.png")
        assert console_errors(driver) == []
    assert shot.stat().st_size > 50_000
