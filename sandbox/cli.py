"""`python -m sandbox` / `watershed demo`: play the story and print the journey.

    watershed demo [--regions N|r1,r2,...] [--accounts N] [--delivery relay|direct] [--quiet]
                   [--logs] [--serve] [--uninstall]

With --serve the same story runs behind a local HTTP endpoint (moto's server, 127.0.0.1), which
stays up afterwards for the aws CLI or `watershed plan` until Ctrl-C.

Exit codes: 0 every expected event reached the destination stream, byte-identical, and nothing
else did, every trigger became an onboarding and every queue the stacks created is empty; 1 an
event was lost, damaged or forwarded when it should not have been, an account region was left
unconfigured, a trigger was ignored, refused or dead-lettered, a queue (work queue, dead-letter
or failure queue) holds messages, the sandbox noticed a refusal or drop on the way, or the
canary act did not end as designed - a region other than the one broken on purpose did not
deliver, the broken one did, or it was not repaired (the last line says which); 2 bad
arguments or the sandbox could not play the story (for instance a template that does not
deploy).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence

from sandbox.embedded import EmbeddedAws
from sandbox.journal import Hop
from sandbox.journey import FAIL, OK, Printer, hop_lines, table
from sandbox.story import (
    REGION_ORDER,
    DemoOptions,
    DemoResult,
    RegionState,
    Story,
    describe_record,
)


def _regions(value: str) -> tuple[str, ...]:
    if value.isdigit():
        count = int(value)
        if not 1 <= count <= len(REGION_ORDER):
            raise argparse.ArgumentTypeError(f"--regions N: N is 1..{len(REGION_ORDER)}")
        return REGION_ORDER[:count]
    regions = tuple(dict.fromkeys(r.strip() for r in value.split(",") if r.strip()))
    if not regions:
        raise argparse.ArgumentTypeError("--regions: a count or a comma-separated list")
    return regions


def _accounts(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 50:
        raise argparse.ArgumentTypeError("--accounts N: N is 1..50")
    return int(value)


def parser(prog: str = "watershed demo") -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog=prog,
        description="Run the whole watershed pipeline on an embedded AWS (moto, in this "
        "process): an organization is created, its accounts onboarded in every hub region, "
        "and security events raised in them travel to the destination stream.",
    )
    result.add_argument(
        "--regions",
        type=_regions,
        default=REGION_ORDER[:3],
        metavar="N|LIST",
        help="hub regions: a count (from "
        + ",".join(REGION_ORDER[:4])
        + ",...) or a list; the first is the home region (default: 3)",
    )
    result.add_argument(
        "--accounts",
        type=_accounts,
        default=3,
        metavar="N",
        help="member accounts; the last one is vended by Control Tower (default: 3)",
    )
    result.add_argument(
        "--delivery",
        choices=("relay", "direct"),
        default="relay",
        help="template.yaml's DeliveryMode: relay (each region's Security bus, regional stream "
        "and relay) or direct (every region straight to the home region's bus; default: relay)",
    )
    result.add_argument("--quiet", action="store_true", help="print the verdict line only")
    result.add_argument(
        "--serve",
        action="store_true",
        help="serve the embedded AWS on a local HTTP endpoint and keep it up after the story "
        "(Ctrl-C ends it), to look around with the aws CLI or `watershed plan`",
    )
    result.add_argument(
        "--logs", action="store_true", help="print the functions' logs (stdout) at the end"
    )
    result.add_argument(
        "--uninstall",
        action="store_true",
        help="a last act: remove watershed from every member (docs/deploy.md) and read back "
        "that nothing of it is left",
    )
    return result


def main(argv: Sequence[str] | None = None, prog: str = "watershed demo") -> int:
    args = parser(prog).parse_args(argv)
    options = DemoOptions(
        regions=args.regions,
        members=args.accounts,
        control_tower_members=1 if args.accounts > 1 else 0,
        delivery=args.delivery,
        uninstall=args.uninstall,
    )
    printer = Printer(quiet=args.quiet)
    started = time.perf_counter()
    printer.line("watershed demo: the whole pipeline on an embedded AWS (moto, in this process)")
    printer.line(
        f"hub regions {', '.join(options.regions)} (home {options.home_region}); "
        f"{options.members} member account(s); delivery {options.delivery}"
    )
    story: Story | None = None
    act = "setup"
    try:
        with EmbeddedAws(server=args.serve) as aws:
            story = Story(aws, options, on_act=lambda name, result: _render(printer, name, result))
            result = story.play()
            act = "verdict"
            if args.logs:
                _render_logs(printer, story)
            code = _verdict(printer, result, time.perf_counter() - started)
            if args.serve:
                _serve(printer, aws, result)
            return code
    except Exception as err:
        printer.line()
        printer.line(traceback.format_exc().rstrip())
        if story is not None and story.result.acts:
            act = f"after {story.result.acts[-1].name}"
        printer.verdict(f"demo: could not finish ({act}): {type(err).__name__}: {err}")
        return 2


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (tests replace this)."""
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


def _serve(printer: Printer, aws: EmbeddedAws, result: DemoResult) -> None:
    org = result.organization
    assert org is not None and aws.endpoint_url
    home = result.options.home_region
    printer.verdict(
        f"serving the embedded AWS at {aws.endpoint_url} until Ctrl-C; in another shell:"
    )
    printer.verdict(
        f"  export AWS_ENDPOINT_URL={aws.endpoint_url} AWS_ACCESS_KEY_ID=testing "
        f"AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={home}"
        + (f" DELIVERY_MODE=direct HOME_REGION={home}" if result.options.direct else "")
    )
    printer.verdict(
        "  aws organizations list-accounts   # these credentials are the management account's"
    )
    printer.verdict(
        f"  watershed plan {org.members[0].account_id} --security-account-id "
        f"{org.security.account_id} --management-account-id {org.management.account_id} "
        f"--hub-regions {','.join(result.options.regions)}"
    )
    wait_for_interrupt()


# --- rendering ------------------------------------------------------------------------------


def _render(printer: Printer, act: str, result: DemoResult) -> None:
    seconds = result.acts[-1].seconds
    {
        "organization": _render_organization,
        "deploy": _render_deploy,
        "onboarding": _render_onboarding,
        "reconcile": _render_reconcile,
        "opt-in": _render_opt_in,
        "events": _render_events,
        "queues": _render_queues,
        "canary": _render_canary,
        "uninstall": _render_uninstall,
    }[act](printer, result, seconds)


def _render_organization(printer: Printer, result: DemoResult, seconds: float) -> None:
    org = result.organization
    assert org is not None
    printer.section(f"1. organization {org.organization_id}", f"{seconds:.1f} s")
    rows = [("account", "id", "reached through", "")]
    rows.append((org.management.name, org.management.account_id, "its own credentials", ""))
    for account in (org.security, *org.members):
        how = (
            f"vended by Control Tower (OU {account.ou_name})"
            if account.vended_by == "control tower"
            else "created by Organizations"
        )
        rows.append((account.name, account.account_id, account.admin_role, how))
    printer.lines(table(rows))


def _render_deploy(printer: Printer, result: DemoResult, seconds: float) -> None:
    printer.section(
        "2. deployed",
        f"{seconds:.1f} s; SAM translated by aws-sam-translator, created by moto's CloudFormation",
    )
    org = result.organization
    assert org is not None
    rows = [("template", "account", "region", "resources", "functions")]
    for stack in result.deployed:
        template = (
            "management.yaml"
            if stack.account_id == org.management.account_id
            else ("template.yaml")
        )
        home = (
            " (home)"
            if stack.region == result.options.home_region and template != ("management.yaml")
            else ""
        )
        functions = ", ".join(sorted(stack.of_type("AWS::Lambda::Function").values()))
        rows.append(
            (
                template,
                stack.account_id,
                stack.region + home,
                str(sum(1 for _, physical in stack.resources.values() if physical)),
                functions,
            )
        )
    printer.lines(table(rows))
    applied = Counter(
        s.resource_type
        for stack in result.deployed
        for s in stack.stand_ins
        if "applied" in s.action
    )
    skipped = Counter(
        s.resource_type
        for stack in result.deployed
        for s in stack.stand_ins
        if "applied" not in s.action
    )
    how = {"AWS::SNS::Subscription": "Subscribe"}
    for kind, count in sorted(applied.items()):
        printer.line(
            f"  stand-in: {kind} x{count}, which moto skips, applied with "
            f"{how.get(kind, 'PutPermission')}"
        )
    if skipped:
        listed = ", ".join(f"{kind} x{count}" for kind, count in sorted(skipped.items()))
        printer.line(f"  not created by moto (nothing in the local flow reads them): {listed}")
    printer.line(f"  destination stream: {result.destination_arn}")


def _hops(result: DemoResult) -> Callable[[str], list[Hop]]:
    """The journal's hops of an event, with account ids replaced by the accounts' names."""
    org = result.organization
    names = {a.account_id: a.name for a in org.accounts} if org else {}

    def named(text: str) -> str:
        for account_id, name in names.items():
            text = text.replace(account_id, name)
        return text

    def hops(event_id: str) -> list[Hop]:
        return [
            dataclasses.replace(hop, where=named(hop.where), note=named(hop.note))
            for hop in result.journal.hops(event_id)
        ]

    return hops


def _render_onboarding(printer: Printer, result: DemoResult, seconds: float) -> None:
    printer.section("3. onboarding", f"{seconds:.1f} s")
    journal_hops = _hops(result)
    for trigger in result.triggers:
        printer.line(f"  {trigger.label} for {trigger.member.name} ({trigger.member.account_id})")
        printer.lines(hop_lines(journal_hops(trigger.event_id), trigger.raised_at))
    invocations = [d for d in result.onboarding if d.mapping.kind == "sqs"]
    errors = [d for d in invocations if not d.invocation.ok]
    printer.line(
        f"  onboarding function: {len(invocations)} invocation(s), "
        f"{sum(d.records for d in invocations)} message(s), {len(errors)} error(s)"
    )
    for delivery in errors:
        printer.line(f"    {FAIL} {delivery.invocation.error}")
    changes: Counter[tuple[str, str]] = Counter()
    for delivery in invocations:
        report = delivery.invocation.result if isinstance(delivery.invocation.result, dict) else {}
        for account in report.get("accounts", []):
            for region, outcome in (account.get("regions") or {}).items():
                changes[(account.get("account_id", "?"), region)] += len(
                    outcome.get("changes") or []
                )
    org = result.organization
    assert org is not None
    regions = result.options.regions
    rows = [("read back", *regions)]
    for member in org.members:
        cells = [
            _read_back_cell(
                result,
                member.account_id,
                region,
                f"({changes.get((member.account_id, region), 0)} changes)",
            )
            for region in regions
        ]
        rows.append((f"{member.name} {member.account_id}", *cells))
    printer.lines(table(rows))
    bus = "the home region" if result.options.direct else "the same region"
    printer.line(
        f"  {OK} = GuardDuty detector enabled, and rule watershed-forward → the Security bus of "
        f"{bus}, as watershed-forwarder"
    )
    for problem in result.unhandled:
        printer.line(f"  {FAIL} trigger not onboarded: {problem}")


def _read_back_cell(result: DemoResult, account_id: str, region: str, ok_text: str) -> str:
    """One account x region of a read-back table: what onboarding left there."""
    state = result.configured.get((account_id, region))
    if state and state.detector == "enabled" and state.rule == "ok":
        return f"{OK} {ok_text}"
    if state:
        return f"{FAIL} detector {state.detector}, rule {state.rule}"
    return f"{FAIL} not read"


def _render_events(printer: Printer, result: DemoResult, seconds: float) -> None:
    printer.section("5. events", f"{seconds:.1f} s")
    hops = _hops(result)
    for arrival in result.arrivals:
        event = arrival.event
        if arrival.expected:
            mark = OK if arrival.arrived and not arrival.problem else FAIL
            verdict = arrival.problem or ("arrived byte-identical" if arrival.arrived else "LOST")
        else:
            mark = FAIL if arrival.arrived else OK
            verdict = (
                "FORWARDED, but should not be" if arrival.arrived else "stayed home, as designed"
            )
        printer.line(
            f"  {mark} {event.label} in {event.account.name} {event.region}: {verdict}"
            f" — {event.why}"
        )
        printer.lines(hop_lines(hops(arrival.event_id), arrival.raised_at))
    for record in result.unknown_records:
        printer.line(f"  {FAIL} unknown record at the destination: {describe_record(record)}")


def _render_reconcile(printer: Printer, result: DemoResult, seconds: float) -> None:
    printer.section("4. daily reconcile", f"{seconds:.1f} s")
    invocations = [d for d in result.reconcile if d.mapping.kind == "sqs"]
    printer.line(
        '  schedule watershed-reconcile fired once: {"accounts": "ALL"} → one message per ACTIVE '
        f"account → {sum(d.records for d in invocations)} message(s) onboarded in "
        f"{len(invocations)} invocation(s), "
        f"{sum(1 for d in invocations if not d.invocation.ok)} error(s)"
    )
    org = result.organization
    assert org is not None
    regions = result.options.regions
    rows = [("read back", *regions)]
    for account, what in ((org.management, "like a member"), (org.security, "GuardDuty only")):
        cells = [_read_back_cell(result, account.account_id, region, what) for region in regions]
        rows.append((f"{account.name} {account.account_id}", *cells))
    printer.lines(table(rows))


def _render_opt_in(printer: Printer, result: DemoResult, seconds: float) -> None:
    printer.section("4b. region opt-in raised in a member", f"{seconds:.1f} s")
    opt_in = result.opt_in
    if opt_in is None:
        printer.line("  skipped: needs us-east-1 and two other hub regions (--regions 3 or more)")
        return
    name = opt_in.member.name
    printer.line(
        f"  {name} enables {opt_in.region} itself: Region Opt-In Status Change on its us-east-1 "
        "bus → its watershed-forward → a Security bus → watershed-lifecycle → the home work "
        "queue (through a topic from us-east-1) → onboarding"
    )
    printer.lines(hop_lines(_hops(result)(opt_in.event_id), opt_in.raised_at))
    onboarded = opt_in.region_state == RegionState("enabled", "ok")
    printer.line(
        f"  {OK if onboarded else FAIL} {opt_in.region}: detector {opt_in.region_state.detector}, "
        f"rule {opt_in.region_state.rule}"
    )
    untouched = opt_in.control_state.rule == "rule DISABLED"
    verdict = "left alone: only the opted-in region was onboarded"
    printer.line(
        f"  {OK if untouched else FAIL} {opt_in.control_region} (control, rule disabled first): "
        f"{verdict if untouched else 'rule ' + opt_in.control_state.rule}"
    )


def _render_queues(printer: Printer, result: DemoResult, seconds: float) -> None:
    printer.section("6. queues", f"{seconds:.1f} s")
    loaded = result.loaded_queues
    printer.line(
        f"  {OK if not loaded else FAIL} {len(result.queues) - len(loaded)} of "
        f"{len(result.queues)} queue(s) the stacks created are empty "
        "(work queue, dead-letter and failure queues)"
    )
    for queue in loaded:
        printer.line(f"  {FAIL} {queue.describe()}")
    for notice in result.notices:
        printer.line(f"  {FAIL} sandbox notice: {notice}")


def _render_canary(printer: Printer, result: DemoResult, seconds: float) -> None:
    act = result.canary
    assert act is not None
    printer.section("7. canary", f"{seconds:.1f} s; watershed canary, sample findings stood in")
    printer.line(f"  {act.broken_region}: {act.how} on purpose, repaired afterwards")
    org = result.organization
    names = {a.account_id: a.name for a in org.accounts} if org else {}
    regions = result.options.regions
    if act.report is not None:
        cells = {(r.account_id, r.region): r for r in act.report.results}
        rows = [("canary", *regions)]
        for account_id in dict.fromkeys(r.account_id for r in act.report.results):
            row = []
            for region in regions:
                r = cells.get((account_id, region))
                if r is None:
                    row.append(f"{FAIL} no result")
                elif r.status == "arrived":
                    row.append(
                        f"{OK if region != act.broken_region else FAIL} {r.latency_seconds:.2f} s"
                    )
                elif r.status == "missing":
                    mark = OK if region == act.broken_region else FAIL
                    row.append(f"{mark} NOT ARRIVED")
                else:
                    row.append(f"{FAIL} {r.status}: {r.reason[:40]}")
            rows.append((f"{names.get(account_id, account_id)} {account_id}", *row))
        printer.lines(table(rows))
        missing = sorted({r.region for r in act.report.results if r.status == "missing"})
        printer.line(
            f"  {OK if act.ok else FAIL} not arrived within {act.report.timeout_seconds} s in: "
            f"{', '.join(missing) or 'no region'} (expected: {act.broken_region}); "
            f"{'repaired' if act.restored else 'NOT repaired'}"
        )
    for queue, count in sorted(act.dead_lettered.items()):
        printer.line(
            f"  {OK} {count} refused sample finding(s) of {act.broken_region} were dead-lettered "
            f"on {queue}, as designed (taken off it again)"
        )
    for problem in act.problems:
        printer.line(f"  {FAIL} {problem}")


def _render_uninstall(printer: Printer, result: DemoResult, seconds: float) -> None:
    number = 8 if result.canary is not None else 7  # after the canary act, when it ran
    printer.section(f"{number}. uninstall", f"{seconds:.1f} s")
    invocations = [d for d in result.removal if d.mapping.kind == "sqs"]
    printer.line(
        '  {"remove": "ALL"} → one removal per account on the work queue → '
        f"{sum(d.records for d in invocations)} message(s) in {len(invocations)} invocation(s), "
        f"{sum(1 for d in invocations if not d.invocation.ok)} error(s)"
    )
    org = result.organization
    assert org is not None
    regions = result.options.regions
    rows = [("read back", *regions)]
    for member in org.members:
        cells = []
        for region in regions:
            left = result.left_behind.get((member.account_id, region))
            cells.append(f"{OK} empty" if left == "" else f"{FAIL} {left or 'not read'}")
        rows.append((f"{member.name} {member.account_id}", *cells))
    printer.lines(table(rows))
    printer.line(
        f"  {OK} empty = no rule watershed-forward, no target, no role watershed-forwarder; "
        "GuardDuty keeps running (only `remove --guardduty` deletes what watershed created)"
    )
    loaded = result.loaded_queues
    printer.line(
        f"  {OK if not loaded else FAIL} {len(result.queues) - len(loaded)} of "
        f"{len(result.queues)} queue(s) empty after the removal"
    )


def _render_logs(printer: Printer, story: Story) -> None:
    printer.section("function logs")
    assert story.poller is not None
    seen = set()
    for mapping in story.poller.mappings:
        if mapping.function.arn in seen:
            continue
        seen.add(mapping.function.arn)
        printer.line(f"  {mapping.function.name} ({mapping.function.region})")
        for line in story.runtime.log(mapping.function):
            printer.line(f"    {line}")


def _verdict(printer: Printer, result: DemoResult, elapsed: float) -> int:
    """Print the last line (`demo: N of N events reached ...`) and return the exit code."""
    expected, delivered = len(result.expected), len(result.delivered)
    where = f"{result.destination_name} in {result.options.home_region}"
    printer.line()
    printer.line(f"done in {elapsed:.1f} s")
    if result.ok:
        printer.verdict(f"demo: {delivered} of {expected} events reached {where}")
        return 0
    problems = []
    for arrival in result.lost:
        problems.append(f"lost {arrival.event.label} ({arrival.event.region}, {arrival.event_id})")
    for arrival in result.unexpected:
        problems.append(
            f"forwarded {arrival.event.label} ({arrival.event.region}) that should not be"
        )
    for arrival in result.damaged:
        problems.append(f"{arrival.event.label} ({arrival.event.region}): {arrival.problem}")
    for record in result.unknown_records:
        problems.append(f"unknown record {describe_record(record)}")
    for account_id, region in result.unconfigured:
        problems.append(f"{account_id} not configured in {region}")
    for (account_id, region), left in result.left_behind.items():
        if left:
            problems.append(f"{account_id} still has {left} in {region} after uninstall")
    if not result.configured:
        problems.append("no member was read back")
    problems += [f"trigger not onboarded: {p}" for p in result.unhandled]
    if result.opt_in is not None and not result.opt_in.ok:
        problems.append(f"region opt-in in {result.opt_in.region} not onboarded alone")
    problems += [queue.describe() for queue in result.loaded_queues]
    if not result.queues:
        problems.append("no queue was read back")
    problems += [f"sandbox notice: {n}" for n in result.notices]
    if result.canary is not None:
        problems += result.canary.problems
    shown = problems[:6] + ([f"and {len(problems) - 6} more"] if len(problems) > 6 else [])
    printer.verdict(f"demo: {delivered} of {expected} events reached {where}; " + "; ".join(shown))
    return 1
