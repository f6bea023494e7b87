"""The handler's contract with Lambda: nothing built at import, metrics published per batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_handler_builds_no_client_and_reads_no_setting():
    # Given an interpreter where building any botocore client fails, and no relay variables
    probe = (
        "import botocore.session\n"
        "import aws_lambda_powertools\n"
        "def refuse(*a, **k): raise AssertionError('client or Metrics built at import time')\n"
        "botocore.session.Session.create_client = refuse\n"
        "aws_lambda_powertools.Metrics.__init__ = refuse\n"
        "import relay.handler\n"
        "print('imported')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESTINATION_", "RELAY_"))}

    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


def test_each_batch_publishes_its_figures(
    destination, handler, make_event, make_records, context, capsys, monkeypatch
):
    pairs = make_records(30)
    # The namespace is read when the function first runs, not when the module was imported.
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "watershed-relay-test")

    handler.lambda_handler(make_event(pairs, arrival=1772852400.0), context)

    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(blobs) == 1
    emf = blobs[0]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "watershed-relay-test"
    assert emf["RecordsRelayed"] == [30.0]
    assert emf["RecordsHandedBack"] == [0.0]
    assert emf["BytesRelayed"] == [float(sum(len(k.encode()) + len(d) for k, d in pairs))]
    assert emf["OldestRecordAge"][0] > 0
