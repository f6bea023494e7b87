"""The demo's command line and the journey printer (the story itself: tests/e2e)."""

import io

import pytest

from sandbox.cli import parser
from sandbox.journal import Hop, Journal
from sandbox.journey import Printer, hop_lines, table
from sandbox.story import REGION_ORDER


def test_regions_as_a_count_take_the_home_region_and_us_east_1_first():
    args = parser().parse_args(["--regions", "4", "--accounts", "7"])
    assert (
        args.regions
        == REGION_ORDER[:4]
        == ("eu-west-1", "us-east-1", "ap-southeast-2", "us-west-2")
    )
    assert args.accounts == 7


def test_regions_as_a_list_keep_their_order_without_duplicates():
    args = parser().parse_args(["--regions", "us-west-2, us-east-1,us-west-2"])
    assert args.regions == ("us-west-2", "us-east-1")


@pytest.mark.parametrize("argv", [["--regions", "0"], ["--regions", ","], ["--accounts", "0"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "--" in capsys.readouterr().err


def test_hops_print_the_time_since_the_event_was_raised():
    hops = [
        Hop(10.0, "raised", "member eu-west-1 default bus"),
        Hop(10.0125, "rule x → bus", "security", "role r"),
    ]

    lines = hop_lines(hops, origin=10.0, indent=0)

    assert lines == [
        "+ 0.0 ms  raised        member eu-west-1 default bus",
        "+12.5 ms  rule x → bus  security                      role r",
    ]


def test_a_quiet_printer_prints_only_the_verdict():
    stream = io.StringIO()
    printer = Printer(stream, quiet=True)

    printer.section("1. organization")
    printer.lines(table([("a", "b"), ("ccc", "d")]))
    printer.verdict("demo: 1 of 1 events reached s in r")

    assert stream.getvalue() == "demo: 1 of 1 events reached s in r\n"


def test_the_journal_keeps_hops_in_time_order():
    clock = iter([2.0, 3.0])
    journal = Journal(clock=lambda: next(clock))

    journal.record("e", "second", "here")
    journal.record("e", "raised", "there", at=1.0)
    journal.record("e", "third", "here")

    assert [h.step for h in journal.hops("e")] == ["raised", "second", "third"]


def test_the_destination_hop_is_last_even_when_its_converted_arrival_time_is_earlier():
    # Given hops at 1, 2 and 3 on the journal's clock, and an ApproximateArrivalTimestamp that,
    # put on that clock, lands at 2.5 (wall clock and monotonic clock drift apart).
    clock = iter([2.0, 3.0])
    journal = Journal(clock=lambda: next(clock))
    journal.record("e", "raised", "member bus", at=1.0)
    journal.record("e", "rule watershed-forward → bus", "security bus")
    journal.record("e", "rule watershed-collect → Kinesis (shim)", "stream")

    journal.record_last("e", "in the destination stream", "stream", "seq 1", at=2.5)

    hops = journal.hops("e")
    assert [h.step for h in hops][-1] == "in the destination stream"
    assert [h.at for h in hops] == [1.0, 2.0, 3.0, 3.0]
    # A later hop of the same event still goes in time order.
    journal.record("e", "late", "here", at=4.0)
    assert journal.hops("e")[-1].step == "late"
