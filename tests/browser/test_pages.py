"""The HR page in a real headless Chromium, against `bentoml serve` on PostgreSQL.

Every test signs in through the form, as a person would; the `visit` fixture fails a test whose
pages fetched anything from another host.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import Visit, screenshot, serious_violations, sign_in
from tests.support.http import ok

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.browser]

NAV = ("Vue d'ensemble", "Employés à risque", "Suivi du modèle")


def open_first_employee(page: Page) -> int:
    page.get_by_role("link", name="Employés à risque").click()
    first = page.locator("table a[href^='/ui/employees/']").first
    href = first.get_attribute("href")
    assert href is not None
    first.click()
    page.wait_for_url(f"**{href}")
    return int(href.rsplit("/", 1)[1])


def latest_prediction(site, employee_id: int) -> dict:
    answer = httpx.get(
        f"{site.url}/history",
        params={"employee_id": employee_id, "limit": 1},
        headers=site.read.headers,
        timeout=10,
    )
    return ok(answer)["items"][0]


def test_a_read_key_sees_the_overview_and_the_at_risk_list(visit: Visit, site):
    page = visit.new_page()
    sign_in(page, site.read.secret)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Vue d'ensemble")
    expect(page.locator("#trend-chart")).to_be_visible()
    for name in NAV:
        expect(page.get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_role("link", name="Audit")).to_have_count(0)  # role audit only

    page.get_by_role("link", name="Employés à risque").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Employés à risque")
    rows = page.locator("table a[href^='/ui/employees/']")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 10


def test_the_at_risk_filters_narrow_the_list(visit: Visit, site):
    page = visit.new_page()
    sign_in(page, site.read.secret)
    page.get_by_role("link", name="Employés à risque").click()
    everyone = page.locator("table a[href^='/ui/employees/']").count()
    page.get_by_label("Bande de risque").select_option("high")
    page.get_by_role("button", name="Filtrer").click()
    page.wait_for_load_state("networkidle")
    bands = page.locator("table tbody td.band").all_inner_texts()
    assert len(bands) < everyone
    assert all(band.strip().lower() in {"élevé", "élevée"} for band in bands), bands


def test_an_employee_page_shows_the_score_history_and_the_factors(visit: Visit, site):
    page = visit.new_page()
    sign_in(page, site.read.secret)
    open_first_employee(page)
    chart = page.locator("#score-history")
    expect(chart).to_be_visible()
    # chart.js drew on it: the canvas has a Chart instance with the two scores of the fixture.
    points = page.evaluate("() => Chart.getChart('score-history').data.datasets[0].data.length")
    assert points >= 2
    factors = page.locator("#factors li")
    assert factors.count() >= 1
    assert re.search(r"(augmente|diminue) le risque", factors.first.inner_text())
    expect(page.get_by_text("aide à la décision")).to_be_visible()


def test_a_review_key_records_a_review_and_it_is_stored(visit: Visit, site):
    page = visit.new_page()
    sign_in(page, site.review.secret)
    employee_id = open_first_employee(page)
    form = page.locator("#review-form")
    form.get_by_label("Pas d'accord").check()
    note = f"vu en entretien {employee_id}"
    form.get_by_label("Note").fill(note)
    form.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_text(note)).to_be_visible()

    stored = ok(
        httpx.get(
            f"{site.url}/predictions/{latest_prediction(site, employee_id)['id']}",
            headers=site.read.headers,
            timeout=10,
        )
    )
    assert [(r["decision"], r["note"], r["reviewer"]) for r in stored["reviews"]][-1] == (
        "disagree",
        note,
        site.review.name,
    )


def csrf_token(page: Page) -> str:
    token = page.locator("input[name='csrf_token']").first.get_attribute("value")
    assert token
    return token


def test_a_read_key_has_no_review_form_and_a_forged_post_is_refused(visit: Visit, site):
    page = visit.new_page()
    sign_in(page, site.read.secret)
    employee_id = open_first_employee(page)
    expect(page.locator("#review-form")).to_have_count(0)
    forged = page.request.post(
        f"/ui/employees/{employee_id}/reviews",
        form={"decision": "agree", "note": "forged", "csrf_token": csrf_token(page)},
    )
    assert forged.status == 403
    prediction = latest_prediction(site, employee_id)
    stored = ok(
        httpx.get(
            f"{site.url}/predictions/{prediction['id']}", headers=site.read.headers, timeout=10
        )
    )
    assert "forged" not in [review["note"] for review in stored["reviews"]]


def test_a_post_without_its_csrf_token_is_refused_and_stores_nothing(visit: Visit, site):
    page = visit.new_page()
    sign_in(page, site.review.secret)
    employee_id = open_first_employee(page)
    for form in (
        {"decision": "agree", "note": "no token"},
        {"decision": "agree", "note": "no token", "csrf_token": "0" * 43},
    ):
        refused = page.request.post(f"/ui/employees/{employee_id}/reviews", form=form)
        assert refused.status == 403
    stored = ok(
        httpx.get(
            f"{site.url}/predictions/{latest_prediction(site, employee_id)['id']}",
            headers=site.read.headers,
            timeout=10,
        )
    )
    assert "no token" not in [review["note"] for review in stored["reviews"]]


def test_after_signing_out_the_session_cookie_no_longer_opens_a_page(visit: Visit, site):
    page = visit.new_page()
    sign_in(page, site.read.secret)
    [cookie] = [c for c in visit.context.cookies() if c["name"] == "attrition_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/ui/sign-in**")

    replayed = httpx.get(
        f"{site.url}/ui",
        cookies={"attrition_session": cookie["value"]},
        follow_redirects=False,
        timeout=10,
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/ui/sign-in")


# Swagger UI (vendored, unmodified) nests a button in each operation's clickable summary; the
# API documentation page inherits it. Every other rule holds there too (docs.css, docs.js).
UPSTREAM = {"/": {"nested-interactive"}}


def every_page(page: Page, site) -> list[tuple[str, str]]:
    """(name, path) of every page an auditor can open, the employee page included."""
    employee_id = site.employee_ids[0]
    return [
        ("apercu", "/ui"),
        ("employes-a-risque", "/ui/at-risk"),
        ("fiche-employe", f"/ui/employees/{employee_id}"),
        ("suivi-du-modele", "/ui/monitoring"),
        ("audit", "/ui/audit"),
        ("documentation-api", "/"),
    ]


def test_every_page_is_self_hosted_accessible_and_photographed(visit: Visit, site):
    page = visit.new_page()
    page.goto("/ui/sign-in")
    violations = serious_violations(page)
    assert violations == [], json.dumps(violations, indent=1)
    screenshot(page, "connexion")
    sign_in(page, site.audit.secret)
    for name, path in every_page(page, site):
        answer = page.goto(path)
        assert answer is not None and answer.status == 200, path
        page.wait_for_load_state("networkidle")
        violations = [
            v for v in serious_violations(page) if v["id"] not in UPSTREAM.get(path, set())
        ]
        assert violations == [], f"{path}: {json.dumps(violations, indent=1)}"
        screenshot(page, name)
    assert visit.foreign_requests() == []
    assert len(visit.requested) > 10  # the log did see the pages' own requests


def test_the_pages_are_usable_with_the_keyboard_alone(visit: Visit, site):
    page = visit.new_page()
    page.goto("/ui/sign-in")
    page.keyboard.press("Tab")
    for _ in range(5):  # the skip link may come first
        if page.evaluate("() => document.activeElement.id") == "key":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "key"
    page.keyboard.type(site.read.secret)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Vue d'ensemble")
