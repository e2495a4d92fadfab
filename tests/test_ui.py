"""The HR page's content, in process on SQLite and PostgreSQL: each page with a `read` session,
reviews (role `review`, CSRF), the audit page (role `audit`), person-level reads logged, errors
as HTML pages on `/ui` and still the JSON envelope on the API.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import delete, select

from persistence.engine import build_engine, session_scope
from persistence.monitoring import record_snapshot
from persistence.tables import AccessEvent, MonitoringSnapshot, Review
from serving.ui.assets import CONTENT_SECURITY_POLICY
from serving.ui.formatting import moment, number, percent
from tests.support.databases import stored
from tests.support.http import poll
from tests.support.ui import form_token, new_key, sign_in
from training.extracts import load_extracts

SCORED = 6
WRITTEN_WITHIN = 10  # seconds: the access log flushes every 2 s
ASSET = re.compile(r"""(?:src|href)="([^"#?]+)""")


pytestmark = pytest.mark.usefixtures("signed_out")


@pytest.fixture(scope="module")
def scored(api, generated_dir) -> list[int]:
    """Seeded employees scored by `/predict_by_id` (twice each, for a history)."""
    ids = [int(e.id_employee or 0) for e in load_extracts(generated_dir).employees[:SCORED]]
    for _ in range(2):
        for employee_id in ids:
            answer = api.post("/predict_by_id", {"employee_id": employee_id})
            assert answer.status_code == 200, answer.text
    return ids


def as_user(api, *roles) -> str:
    name, key = new_key(api, *roles)
    assert sign_in(api, key).status_code == 303
    return name


def reads_of(api, client: str) -> list[AccessEvent]:
    return stored(api.url, select(AccessEvent).where(AccessEvent.client == client))


def reviews(api, reviewer: str) -> list[Review]:
    return stored(api.url, select(Review).where(Review.reviewer == reviewer))


def html(answer, status: int = 200) -> str:
    assert answer.status_code == status, answer.text[:1500]
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    return answer.text


# --- the pages with a read session -----------------------------------------------------------


def test_every_page_of_a_read_session_renders_in_french_with_its_nav(api, scored):
    as_user(api, "read")
    pages = {
        "/ui": ["Vue d'ensemble", 'id="trend-chart"', 'id="model-tag"', "générées"],
        "/ui/at-risk": ["Employés à risque", f'href="/ui/employees/{scored[0]}"'],
        f"/ui/employees/{scored[0]}": [
            "Fiche employé",
            'id="score-history"',
            'id="factors"',
            "Ce score est une aide à la décision, pas une décision",
        ],
        "/ui/monitoring": ["Suivi du modèle", 'id="drift-table"', 'id="fairness-table"'],
    }
    for path, expected in pages.items():
        text = html(api.client.get(path))
        assert '<html lang="fr">' in text
        for name in ("Vue d'ensemble", "Employés à risque", "Suivi du modèle"):
            assert f">{name}</a>" in text.replace("&#39;", "'"), (path, name)
        assert "Se déconnecter" in text
        assert ">Audit</a>" not in text  # a read key has no audit page
        for fragment in expected:
            assert fragment in text.replace("&#39;", "'"), (path, fragment)
        for asset in ASSET.findall(text):  # everything from the service itself
            assert asset.startswith("/") and not asset.startswith("//"), (path, asset)


def test_the_overview_counts_the_latest_score_of_each_employee_by_band(api, scored):
    as_user(api, "read")
    text = html(api.client.get("/ui"))
    counts = re.findall(r'/ui/at-risk\?band=(\w+)">([\d\u202f]+)</a>', text)
    total = sum(int(n.replace("\u202f", "")) for _, n in counts)
    assert {band for band, _ in counts} == {"low", "medium", "high"}
    assert total >= len(scored)  # every scored employee once, whatever its band
    listed = api.client.get("/employees/at-risk", headers={"X-API-Key": api.keys.read})
    assert total == listed.json()["total"]


def test_the_at_risk_list_filters_pages_and_logs_whom_it_showed(api, scored):
    name = as_user(api, "read")
    text = html(api.client.get("/ui/at-risk", params={"band": "", "departement": ""}))
    shown = {int(i) for i in re.findall(r'href="/ui/employees/(\d+)"', text)}
    assert set(scored) <= shown
    events = poll(lambda: reads_of(api, name), bool, WRITTEN_WITHIN)
    assert events[0].route == "/ui/at-risk"
    assert set(events[0].employee_ids) == shown
    only = api.client.get("/employees/at-risk", headers={"X-API-Key": api.keys.read}).json()
    departement = only["items"][0]["departement"]
    filtered = html(api.client.get("/ui/at-risk", params={"departement": departement}))
    rows = re.findall(
        r"<tr>\s*<th scope=\"row\"><a href=\"/ui/employees/\d+\">.*?</tr>", filtered, re.S
    )
    assert rows and all(f"<td>{departement}</td>" in row for row in rows)
    # htmx asks for the same page (it keeps #results): the fragment is in it.
    partial = api.client.get("/ui/at-risk", params={"offset": 1}, headers={"HX-Request": "true"})
    assert 'id="results"' in html(partial) and "Page précédente" in partial.text


def test_an_employee_page_logs_the_read_and_shows_factors_in_words(api, scored):
    name = as_user(api, "read")
    text = html(api.client.get(f"/ui/employees/{scored[1]}"))
    factors = re.search(r'<ul id="factors".*?</ul>', text, re.S)
    assert factors and "par rapport à l'employé moyen" in factors.group(0)
    assert "augmente le risque" in factors.group(0) or "diminue le risque" in factors.group(0)
    assert 'id="review-form"' not in text  # a read key may not review
    events = poll(lambda: reads_of(api, name), bool, WRITTEN_WITHIN)
    assert [(e.route, e.employee_ids) for e in events] == [
        ("/ui/employees/{employee_id}", [scored[1]])
    ]


# --- reviews ---------------------------------------------------------------------------------


def test_a_review_key_stores_a_review_of_the_latest_score(api, scored):
    name = as_user(api, "review")
    page = api.client.get(f"/ui/employees/{scored[2]}")
    assert 'id="review-form"' in html(page)
    for label in ("D&#39;accord", "Pas d&#39;accord", "Aucune action", "Note", "Enregistrer"):
        assert label in page.text
    answer = api.client.post(
        f"/ui/employees/{scored[2]}/reviews",
        data={
            "decision": "disagree",
            "note": "départ déjà annoncé",
            "csrf_token": form_token(page),
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[:500]
    [stored] = reviews(api, name)
    assert (stored.decision, stored.note) == ("disagree", "départ déjà annoncé")
    latest = api.client.get(
        "/history",
        params={"employee_id": scored[2], "limit": 1},
        headers={"X-API-Key": api.keys.read},
    ).json()["items"][0]
    assert str(stored.prediction_id) == latest["id"]
    shown = html(api.client.get(answer.headers["location"]))
    assert "Revue enregistrée" in shown and "départ déjà annoncé" in shown


def test_a_review_needs_its_csrf_token_and_nothing_is_stored_without_it(api, scored):
    name = as_user(api, "review")
    path = f"/ui/employees/{scored[3]}/reviews"
    for headers, data in (
        ({}, {"decision": "agree"}),
        ({}, {"decision": "agree", "csrf_token": "forged"}),
        ({"X-CSRF-Token": "forged"}, {"decision": "agree"}),
    ):
        answer = api.client.post(path, data=data, headers=headers, follow_redirects=False)
        assert "csrf_failed" in html(answer, 403)
    assert reviews(api, name) == []
    page = api.client.get(f"/ui/employees/{scored[3]}")  # the htmx way: the header
    answer = api.client.post(
        path,
        data={"decision": "no_action"},
        headers={"X-CSRF-Token": form_token(page), "HX-Request": "true"},
    )
    assert answer.status_code == 200  # htmx follows the redirect to the page
    assert [r.decision for r in reviews(api, name)] == ["no_action"]


def test_a_read_key_cannot_review_even_with_a_forged_form(api, scored):
    name = as_user(api, "read")
    page = api.client.get(f"/ui/employees/{scored[4]}")
    answer = api.client.post(
        f"/ui/employees/{scored[4]}/reviews",
        data={"decision": "agree", "csrf_token": form_token(page)},
        follow_redirects=False,
    )
    assert "forbidden" in html(answer, 403)
    assert reviews(api, name) == []


def test_an_invalid_review_is_a_422_page_naming_the_field(api, scored):
    name = as_user(api, "review")
    page = api.client.get(f"/ui/employees/{scored[5]}")
    answer = api.client.post(
        f"/ui/employees/{scored[5]}/reviews",
        data={"decision": "maybe", "csrf_token": form_token(page)},
        follow_redirects=False,
    )
    text = html(answer, 422)
    assert "Données invalides" in text and "decision" in text
    assert reviews(api, name) == []


# --- errors: HTML on the pages, JSON on the API ----------------------------------------------


def test_ui_errors_are_html_pages_with_the_envelope_and_the_api_keeps_json(api):
    as_user(api, "read")
    unknown = html(api.client.get("/ui/employees/2147483000"), 404)
    assert "Page introuvable" in unknown and "not_found" in unknown
    assert "validation_error" in html(api.client.get("/ui/at-risk?band=extreme"), 422)
    assert "not_found" in html(api.client.get("/ui/no-such-page"), 404)
    assert "forbidden" in html(api.client.get("/ui/audit"), 403)
    for answer in (
        api.client.get("/no-such-route", headers={"X-API-Key": api.keys.read}),
        api.client.get("/employees/at-risk?band=extreme", headers={"X-API-Key": api.keys.read}),
        api.client.get("/history"),
    ):
        assert answer.headers["content-type"] == "application/json", answer.text
        assert {"error", "message"} <= set(answer.json())
    hx = api.client.get("/ui/at-risk?band=extreme", headers={"HX-Request": "true"})
    assert hx.status_code == 422 and hx.headers["hx-retarget"] == "#alert"


# --- audit -----------------------------------------------------------------------------------


def test_the_audit_page_lists_refusals_reads_and_sign_ins_for_audit_keys(api, scored):
    reader = as_user(api, "read")
    html(api.client.get(f"/ui/employees/{scored[0]}"))
    poll(lambda: reads_of(api, reader), bool, WRITTEN_WITHIN)
    api.client.cookies.clear()
    bad = f"atk_{uuid.uuid4().hex[:12]}.x"
    assert sign_in(api, bad).status_code == 401
    auditor = as_user(api, "audit")
    overview = html(api.client.get("/ui"))
    assert ">Audit</a>" in overview
    sign_ins = html(api.client.get("/ui/audit", params={"view": "sign-ins", "client": reader}))
    assert f"<td>{reader}</td>" in sign_ins
    reads = html(
        api.client.get(
            "/ui/audit", params={"view": "reads", "client": reader, "employee_id": scored[0]}
        )
    )
    assert "/ui/employees/{employee_id}" in reads and str(scored[0]) in reads
    refused = poll(
        lambda: html(api.client.get("/ui/audit", params={"view": "refusals", "client": ""})),
        lambda text: "/ui/sign-in" in text,
        WRITTEN_WITHIN,
    )
    assert "invalid_api_key" in refused
    empty = html(
        api.client.get(
            "/ui/audit", params={"view": "sign-ins", "client": auditor, "until": "2000-01-01"}
        )
    )
    assert "Aucune connexion" in empty


def test_numbers_and_dates_are_formatted_for_fr_fr():
    assert number(1234567.891, 2) == "1\u202f234\u202f567,89"
    assert percent(0.1234) == "12,3\u00a0%"
    assert percent(None) == number(None) == "—"
    paris = ZoneInfo("Europe/Paris")
    assert moment(datetime(2026, 11, 25, 13, 5, tzinfo=UTC), paris) == "25/11/2026 14:05"
    assert moment(datetime(2026, 7, 1, 22, 30), paris) == "02/07/2026 00:30"  # naive is UTC


def test_the_monitoring_page_shows_the_daily_snapshot_when_there_is_one(api, scored):
    as_user(api, "read")
    live = html(api.client.get("/ui/monitoring"))
    assert "calculés à l'instant" in live and 'id="computed-at"' not in live

    tag = api.instance.stored.tag
    drift = api.client.get("/drift", headers=api.headers(api.keys.read)).json()
    performance = api.client.get("/performance", headers=api.headers(api.keys.read)).json()
    engine = build_engine(api.url)
    try:
        with session_scope(engine) as session:  # as `attrition monitor --record` stores it
            snapshot_id = record_snapshot(session, tag, drift | {"n": 987654}, performance).id
        recorded = html(api.client.get("/ui/monitoring"))
        assert 'id="computed-at"' in recorded
        assert number(987654) in recorded and number(987654) not in live
    finally:
        with session_scope(engine) as session:
            session.exec(delete(MonitoringSnapshot).where(MonitoringSnapshot.id == snapshot_id))
        engine.dispose()
