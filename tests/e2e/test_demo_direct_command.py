"""`make demo ARGS="--delivery direct"` (issue 13): the verdict line and the exit code. A module
of its own: the sandbox patches moto once at a time, and test_demo_direct.py keeps its story open
for the whole module."""

import pytest

from sandbox.cli import main


def test_the_command_in_direct_mode_says_n_of_n_and_exits_0(capsys):
    code = main(["--regions", "2", "--accounts", "2", "--delivery", "direct", "--quiet"])

    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    # 2 members' findings, the home finding, the IAM call, Trusted Advisor, the Security
    # account's own finding in us-east-1
    assert out == ["demo: 6 of 6 events reached watershed in eu-west-1"]


def test_an_unknown_delivery_mode_is_refused_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--delivery", "both"])
    assert exited.value.code == 2
    assert "--delivery: invalid choice: 'both'" in capsys.readouterr().err
