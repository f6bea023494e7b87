"""`watershed demo`'s canary act on the command line: the broken region named, the verdict line
and exit code kept; a region that should deliver and does not fails the demo, named.

(Separate from test_demo_canary.py: one sandbox at a time, and that module keeps its own open.)"""

import json

from sandbox import canary_act
from sandbox.cli import main

BROKEN = "ap-southeast-2"


def test_the_demo_prints_the_canary_act_names_the_broken_region_and_still_exits_0(capsys):
    code = main(["--regions", "3", "--accounts", "2"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    section = out[out.index("7. canary") :]
    assert f"{BROKEN}: the Security bus policy removed on purpose, repaired" in section
    assert f"not arrived within 120 s in: {BROKEN} (expected: {BROKEN})" in section
    assert "; repaired" in section
    assert out.strip().splitlines()[-1] == "demo: 5 of 5 events reached watershed in eu-west-1"


def test_a_region_that_should_deliver_but_does_not_fails_the_demo_naming_it(monkeypatch, capsys):
    # Fault injected: GuardDuty's stand-in raises no sample marker in eu-west-1, so the canary
    # there never sees its finding although the pipeline works.
    original = canary_act.sample_finding

    def unmarked(account, region, detector_id, finding_type):
        entry = original(account, region, detector_id, finding_type)
        if region == "eu-west-1":
            detail = json.loads(entry["Detail"])
            detail["service"].pop("additionalInfo")
            entry = {**entry, "Detail": json.dumps(detail)}
        return entry

    monkeypatch.setattr(canary_act, "sample_finding", unmarked)
    code = main(["--regions", "2", "--accounts", "1", "--quiet"])
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert "eu-west-1: missing" in line and "expected arrived" in line


def test_in_direct_mode_the_broken_region_is_its_disabled_forwarding_rule(capsys):
    # Every region targets the home bus in direct mode: no region-own bus policy to remove.
    code = main(["--regions", "2", "--accounts", "1", "--delivery", "direct"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    section = out[out.index("7. canary") :]
    assert "us-east-1: the members' watershed-forward rule disabled on purpose" in section
    assert "not arrived within 120 s in: us-east-1 (expected: us-east-1); repaired" in section
