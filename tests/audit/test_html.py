"""The HTML report: self-contained, autoescaped (hostile account names stay text, and cannot
close the JSON block the matrix is drawn from), and every cell that is not ok carries its detail.
Built from core report objects, no AWS needed; tests/audit/test_browser.py runs the page."""

import json
from datetime import UTC, datetime
from html.parser import HTMLParser

from jinja2 import StrictUndefined

from onboarding.audit.audit import AuditReport, Member, classify
from onboarding.audit.audit_html import environment, render_html, script_json
from onboarding.audit.hub import Check, HubRegion
from onboarding.report import AccountReport, Change, RegionResult
from onboarding.settings import Settings

SETTINGS = Settings("222222222222", "111111111111", ("us-east-1", "eu-west-1"))
HOSTILE = [
    "<script>window.pwned=1</script>",
    '"><img src=x onerror="window.pwned=1">',
    "' onmouseover='window.pwned=1",
]


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def report_with(names: list[str]) -> AuditReport:
    accounts = []
    for n, name in enumerate(names):
        account = f"{333333333333 + n}"
        plan = AccountReport.build(
            account,
            [
                RegionResult("us-east-1", "ok"),
                RegionResult("eu-west-1", "ok", (Change("detector", "update", f"enable {name}"),)),
            ],
        )
        accounts.append(classify(Member(account, name), plan, SETTINGS.hub_regions, SETTINGS))
    checks = {
        "bus_policy": Check(True, "grants o-x"),
        "collect_rule": Check(True, "enabled"),
        "collect_stream": Check(False, "stream watershed (us-east-1) does not exist"),
    }
    security = (
        HubRegion("us-east-1", "drift", checks, detail="stream missing"),
        HubRegion("eu-west-1", "error", error="AccessDenied", detail="<b>denied</b>"),
    )
    return AuditReport(
        datetime(2026, 3, 2, tzinfo=UTC),
        SETTINGS.hub_regions,
        tuple(accounts),
        security,
        "111111111111",
        "222222222222",
        "o-abcdefghij",
    )


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


DATA_OPEN = '<script type="application/json" id="data">'


def data_of(page: str) -> dict:
    """The JSON block the page's script draws the matrix and the "Why" entries from."""
    start = page.index(DATA_OPEN) + len(DATA_OPEN)
    return json.loads(page[start : page.index("</script>", start)])


def test_hostile_account_names_are_rendered_as_text():
    page = render_html(report_with(HOSTILE))
    tags = parse(page)

    scripts = [attrs for t, attrs in tags.tags if t == "script"]
    assert scripts == [{"type": "application/json", "id": "data"}, {}]  # the data, then ours
    assert page.count("</script>") == 2  # no name closed the data block early
    assert "<script>window" not in page and "<img" not in page
    assert [t for t, _ in tags.tags].count("img") == 0
    assert not [a for _, attrs in tags.tags for a in attrs if a.startswith("on")]
    rows = data_of(page)["rows"]
    assert [row[1] for row in rows] == HOSTILE  # the names as they are, for textContent
    assert "\\u003cscript\\u003ewindow.pwned=1\\u003c/script\\u003e" in page
    assert "&lt;b&gt;denied&lt;/b&gt;" in page  # the server-rendered Security side


def test_json_in_the_page_cannot_end_its_script_element():
    hostile = ["</script><script>window.pwned=1</script>", "<!--", "a & b", "</SCRIPT >"]

    text = str(script_json({"names": hostile}))

    assert not {"<", ">", "&"} & set(text)
    assert json.loads(text) == {"names": hostile}


def test_the_page_is_self_contained():
    tags = parse(render_html(report_with(["a", "b"])))

    assert not [t for t, _ in tags.tags if t in ("link", "img", "iframe", "object", "embed")]
    assert not [attrs for _, attrs in tags.tags if "src" in attrs]
    assert {attrs["href"][0] for _, attrs in tags.tags if "href" in attrs} <= {"#"}


def test_every_cell_that_is_not_ok_says_why():
    report = report_with(["alpha", "beta"])
    page = render_html(report)
    data = data_of(page)

    assert data["states"] == ["ok", "drift", "missing", "skipped", "error"]
    assert data["regions"] == list(SETTINGS.hub_regions)
    # The hover titles and reasons, each said once; per account: id, name, a state initial per
    # region, the index of each region's hover title, the "Why" entry (account-wide, regions).
    assert data["texts"] == [
        "",
        "GuardDuty detector suspended: enable alpha",
        "GuardDuty detector suspended: enable beta",
    ]
    assert data["rows"] == [
        ["333333333333", "alpha", "od", {"1": 1}, [0, [[1, 1]]]],
        ["333333333334", "beta", "od", {"1": 2}, [0, [[1, 2]]]],
    ]
    assert "stream watershed (us-east-1) does not exist" in page
    assert report.totals == {"ok": 2, "drift": 2, "missing": 0, "skipped": 0, "error": 0}
    assert 'id="total-drift">2<' in page


def test_rendering_is_strict_and_autoescaped():
    env = environment()

    assert env.undefined is StrictUndefined
    assert env.autoescape("audit.html") is True


def test_a_foreign_bus_policy_grant_shows_in_the_bus_policy_cell():
    # Given a Security region whose bus policy has a foreign open statement (Security-side drift)
    report = report_with(["a"])
    detail = "statement(s) open (not watershed's) grant events:PutEvents beyond the organization"
    checks = {
        "bus_policy": Check(True, "grants o-x"),
        "collect_rule": Check(True, "enabled"),
        "collect_stream": Check(True, "stream watershed (us-east-1) ACTIVE"),
        "bus_policy_foreign": Check(False, detail),
    }
    security = (HubRegion("us-east-1", "drift", checks, detail=detail),)
    report = AuditReport(
        report.generated_at,
        ("us-east-1",),
        report.accounts,
        security,
        report.management_account_id,
        report.security_account_id,
    )

    # When rendered, Then the bus policy cell carries it, marked as failing
    page = Tags()
    page.feed(render_html(report))
    spans = [attrs for tag, attrs in page.tags if attrs.get("data-check") == "bus_policy_foreign"]
    assert spans == [{"class": "fail", "data-check": "bus_policy_foreign"}]
    assert any(detail in text for text in page.text)


def test_each_cell_carries_its_guardduty_and_plain_ok_cells_stay_lean():
    # Given one account: us-east-1 ok with an owner's plans and an administrator, eu-west-1 ok
    # and plain (enabled, no plan, no administrator)
    managed = {
        "mode": "manage",
        "status": "ENABLED",
        "plans_on": ["S3_DATA_EVENTS", "RUNTIME_MONITORING"],
        "administrator": "999999999999",
        "findings_path": "natively (the Security account is its GuardDuty administrator)",
    }
    plain = {"mode": "manage", "status": "ENABLED", "plans_on": [], "findings_path": "forwarded"}
    plan = AccountReport.build(
        "333333333333",
        [
            RegionResult("us-east-1", "ok", guardduty=managed),
            RegionResult("eu-west-1", "ok", guardduty=plain),
        ],
    )
    account = classify(Member("333333333333", "a"), plan, SETTINGS.hub_regions, SETTINGS)
    report = AuditReport(
        datetime(2026, 3, 2, tzinfo=UTC),
        SETTINGS.hub_regions,
        (account,),
        (),
        "111111111111",
        "222222222222",
        "o-abcdefghij",
    )

    # When the page is rendered
    data = data_of(render_html(report))
    [row] = data["rows"]

    # Then the managed cell (us-east-1, index 0) says the detector's state, its plans, its
    # administrator and the path of its findings; the plain ok cell (index 1) has no title at all
    assert row[2] == "oo"
    assert row[3] == {"0": 1}
    assert data["texts"] == [
        "",
        "GuardDuty ENABLED (manage) · plans on: S3_DATA_EVENTS, RUNTIME_MONITORING"
        " · administrator 999999999999"
        " · findings: natively (the Security account is its GuardDuty administrator)",
    ]
    assert row[4] == 0  # nothing to say why
