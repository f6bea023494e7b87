"""The report in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`,
which `make test` installs) opens the report of the zoo organization and the test checks the
matrix, the totals and the filter through the DOM, then saves a screenshot for a person to look
at: test-output/audit-report.png.

Skipped only on a developer machine without Chromium; under CI (CI set) a missing browser fails.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from auditzoo import InjectingFactory

from onboarding.audit.audit import STATES, Auditor
from onboarding.audit.audit_html import render_html

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1600",
)


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = f"headless Chromium needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install "
        message += "chromium chromium-driver; `make test` does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="watershed-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager is never asked to download anything.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(zoo, browser, tmp_path_factory):
    report = Auditor(zoo.org.settings, InjectingFactory(zoo.org.settings, zoo.faults)).run()
    path = tmp_path_factory.mktemp("report") / "audit.html"
    path.write_text(render_html(report), encoding="utf-8")
    browser.get(path.as_uri())
    return report


def rows(browser) -> list[dict]:
    return browser.execute_script(
        """return Array.from(document.querySelectorAll('#matrix tbody tr')).map(r => ({
            id: r.querySelector('th').textContent,
            shown: !r.hidden && r.offsetParent !== null,
            cells: Array.from(r.querySelectorAll('td.c')).map(c => c.classList[1])}))"""
    )


def set_filter(browser, states: set[str], search: str = "") -> None:
    browser.execute_script(
        """const on = new Set(arguments[0]);
        document.querySelectorAll('#filters input[data-state]').forEach(b => {
            if (b.checked !== on.has(b.dataset.state)) b.click(); });
        const s = document.getElementById('search');
        s.value = arguments[1]; s.dispatchEvent(new Event('input'));""",
        sorted(states),
        search,
    )


def test_the_matrix_shows_every_account_and_region_in_its_state(zoo, browser, page):
    shown = rows(browser)

    assert {r["id"]: r["cells"] for r in shown} == {
        account: list(regions.values()) for account, regions in zoo.expected.items()
    }
    headers = browser.execute_script(
        "return Array.from(document.querySelectorAll('#matrix thead th')).map(h => h.textContent)"
    )
    assert headers == ["Account", "Name", *page.regions]


def test_the_totals_count_the_cells(browser, page):
    totals = {s: int(browser.find_element("id", f"total-{s}").text) for s in STATES}

    assert totals == page.totals
    assert totals["drift"] > 0 and totals["error"] > 0 and totals["skipped"] > 0


def test_the_state_filter_and_the_search(zoo, browser, page):
    set_filter(browser, {"drift", "missing", "error"})
    visible = {r["id"] for r in rows(browser) if r["shown"]}
    problems = {
        a
        for a, regions in zoo.expected.items()
        if {"drift", "missing", "error"} & {*regions.values()}
    }
    assert visible == problems
    assert (
        browser.find_element("id", "shown").text
        == f"{len(problems)} of {len(zoo.expected)} accounts shown"
    )
    # The "why" list follows the same filter.
    why = browser.execute_script(
        "return Array.from(document.querySelectorAll('#why > li')).filter(l => !l.hidden).length"
    )
    assert why == len(problems)

    set_filter(browser, set(STATES), search="suspended")
    assert [r["id"] for r in rows(browser) if r["shown"]] == [zoo.org.accounts["suspended"]]

    set_filter(browser, set(STATES), search=zoo.org.accounts["locked"][:12])
    assert [r["id"] for r in rows(browser) if r["shown"]] == [zoo.org.accounts["locked"]]

    set_filter(browser, set(STATES))
    assert all(r["shown"] for r in rows(browser))


def test_a_hostile_account_name_stays_text(zoo, browser, page):
    label = "<script>window.pwned=1</script>"

    assert browser.execute_script("return window.pwned === undefined")
    names = browser.execute_script(
        "return Array.from(document.querySelectorAll('#matrix td.n')).map(n => n.textContent)"
    )
    assert label in names


def test_screenshot_for_a_person(browser, page):
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "audit-report.png"
    set_filter(browser, set(STATES))
    browser.execute_script("window.scrollTo(0, 0)")

    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_a_cell_that_is_not_ok_jumps_to_its_why_entry(zoo, browser, page):
    set_filter(browser, set(STATES))
    target = browser.execute_script(
        """const a = document.querySelector('#matrix td.c a');
        const td = a.parentElement;
        a.click();
        const entry = document.getElementById(location.hash.slice(1));
        return {hash: location.hash, title: td.title, state: a.textContent,
                entry: entry && entry.tagName, top: entry && entry.getBoundingClientRect().top,
                text: entry && entry.textContent};"""
    )

    assert target["hash"].startswith("#p-") and target["entry"] == "LI"
    assert 0 <= target["top"] < 200  # scrolled to it
    assert target["title"]  # the hover says why too
    assert f"· {target['state']}" in target["text"]
    browser.execute_script("history.replaceState(null, '', location.pathname); scrollTo(0, 0)")


def test_the_matrix_is_paged_and_the_filter_searches_every_page(zoo, browser, tmp_path):
    # Given the zoo's report drawn 3 rows at a time
    report = Auditor(zoo.org.settings, InjectingFactory(zoo.org.settings, zoo.faults)).run()
    path = tmp_path / "paged.html"
    path.write_text(render_html(report, page_size=3), encoding="utf-8")
    browser.get(path.as_uri())
    ids = [a.account_id for a in report.accounts]
    assert len(ids) > 6

    # Then the first page shows the first 3 accounts, and next/previous move through the pages
    page_info = lambda: browser.find_element("id", "page").text  # noqa: E731
    pages = -(-len(ids) // 3)
    assert [r["id"] for r in rows(browser)] == ids[:3]
    assert page_info() == f"rows 1 to 3 · page 1 of {pages}"
    assert browser.find_element("id", "prev").get_attribute("disabled") == "true"
    browser.find_element("id", "next").click()
    assert [r["id"] for r in rows(browser)] == ids[3:6]
    assert page_info() == f"rows 4 to 6 · page 2 of {pages}"
    # The "Why" entries are the ones of the rows on the page
    why = browser.execute_script(
        "return Array.from(document.querySelectorAll('#why > li')).map(l => l.id)"
    )
    assert why == [f"p-{a.account_id}" for a in report.accounts[3:6] if a.state != "ok"]
    for _ in range(pages):
        browser.find_element("id", "next").click()
    assert page_info().endswith(f"page {pages} of {pages}")
    assert browser.find_element("id", "next").get_attribute("disabled") == "true"
    browser.find_element("id", "prev").click()
    assert page_info().endswith(f"page {pages - 1} of {pages}")

    # When searching for the last account (on the last page), Then it is found, on page 1
    last = report.accounts[-1]
    set_filter(browser, set(STATES), search=last.account_id)
    assert [r["id"] for r in rows(browser)] == [last.account_id]
    assert page_info() == "rows 1 to 1 · page 1 of 1"
    assert browser.find_element("id", "shown").text == f"1 of {len(ids)} accounts shown"

    # And the state filter counts over every page, not only the one drawn
    set_filter(browser, {"error"})
    errors = [
        a.account_id for a in report.accounts if "error" in {c.state for c in a.regions.values()}
    ]
    assert browser.find_element("id", "shown").text == f"{len(errors)} of {len(ids)} accounts shown"
    assert [r["id"] for r in rows(browser)] == errors[:3]
    set_filter(browser, set(STATES), search="no such account")
    assert page_info() == "no account matches" and rows(browser) == []
