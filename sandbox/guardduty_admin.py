"""A scenario of its own: the Security account is the organization's GuardDuty administrator.

The demo's organization, templates, triggers and reconcile (sandbox.story), with one
difference before anything is deployed: the management account designates the Security account
as GuardDuty delegated administrator in every hub region, and every other account of the
organization is its GuardDuty member there (sandbox.guardduty_org stands in for auto-enable).

Then each member raises a GuardDuty finding in every hub region, and GuardDuty does what it
does for an administrator: the finding appears on the member's default bus *and* on the
Security account's default bus of that region. The member's forwarding rule (written by
onboarding) must leave it out, so the destination stream holds each finding exactly once
(counted by the finding's own id, `detail.id`: the two copies are two different events).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from sandbox import events as shapes
from sandbox.embedded import EmbeddedAws, SandboxError
from sandbox.guardduty_org import administrator_relationships
from sandbox.story import DemoOptions, Story
from sandbox.streams import read_stream


@dataclass
class AdministratorResult:
    """The scenario's outcome: how many copies of each finding reached the destination."""

    story: Story
    copies: dict[str, int] = field(default_factory=dict)  # finding id -> records at destination
    where: dict[str, str] = field(default_factory=dict)  # finding id -> "<member> <region>"
    forwarded_patterns: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.copies) and set(self.copies.values()) == {1}

    def summary(self) -> str:
        wrong = {f: n for f, n in self.copies.items() if n != 1}
        if not wrong:
            count = len(self.copies)
            return f"{count} member GuardDuty findings, each exactly once at the destination"
        return "; ".join(f"{self.where[f]}: {n} copies" for f, n in wrong.items())


def play_guardduty_administrator(aws: EmbeddedAws, options: DemoOptions) -> AdministratorResult:
    story = Story(aws, options)
    story.create_organization()
    org = story.result.organization
    if org is None:
        raise SandboxError("no organization")
    security = org.security.account_id
    management_guardduty = aws.management_session()
    for region in options.regions:
        management_guardduty.client(
            "guardduty", region_name=region
        ).enable_organization_admin_account(AdminAccountId=security)
    members = [a.account_id for a in org.accounts if a.account_id != security]
    result = AdministratorResult(story)
    with administrator_relationships(org.management.account_id, members):
        story.deploy()
        story.onboard()
        story.reconcile()
        for member in org.members:
            session = aws.session(member.account_id, member.admin_role)
            for region in options.regions:
                events = session.client("events", region_name=region)
                rule = events.describe_rule(Name="watershed-forward")
                result.forwarded_patterns[(member.account_id, region)] = rule["EventPattern"]
                raised = shapes.guardduty_finding(member, region, "member of the Security admin")
                finding_id = json.loads(raised.entry["Detail"])["id"]
                result.where[finding_id] = f"{member.name} {region}"
                # GuardDuty in the member: the finding on the member's own bus
                _put(events, raised.entry)
                # GuardDuty for its administrator: the same finding on the Security bus
                admin_bus = aws.session(security).client("events", region_name=region)
                _put(admin_bus, raised.entry)
        story._drain()
    records = read_stream(aws.session(security), story.result.destination_arn)
    counted = Counter(_finding_id(r) for r in records)
    result.copies = {f: counted.get(f, 0) for f in result.where}
    return result


def _put(events: object, entry: dict) -> None:
    (answer,) = events.put_events(Entries=[entry])["Entries"]  # type: ignore[attr-defined]
    if "EventId" not in answer:
        raise SandboxError(f"PutEvents refused the finding: {answer}")


def _finding_id(record: dict) -> str | None:
    try:
        document = json.loads(record["Data"])
    except (ValueError, KeyError):
        return None
    if document.get("source") != "aws.guardduty":
        return None
    return (document.get("detail") or {}).get("id")


def main(argv: list[str] | None = None) -> int:
    """`python -m sandbox.guardduty_admin [--delivery relay|direct]`: play it, say the outcome."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sandbox.guardduty_admin")
    parser.add_argument("--delivery", choices=("relay", "direct"), default="relay")
    args = parser.parse_args(argv)
    with EmbeddedAws() as aws:
        result = play_guardduty_administrator(aws, DemoOptions(delivery=args.delivery))
    print(f"guardduty-admin ({args.delivery}): {result.summary()}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
