"""docs/relay.md states the relay mapping's settings as template.yaml sets them, and the template
keeps the regional stream's records longer than the mapping may hold on to one."""

import re

from cfnmodel import ROOT

RELAY_DOC = ROOT / "docs" / "relay.md"


def _mapping(sam_template):
    return sam_template["Resources"]["RelayFunction"]["Properties"]["Events"]["RegionalStream"][
        "Properties"
    ]


def test_the_regional_stream_outlives_the_oldest_record_the_mapping_retries(sam_template):
    # The on-failure destination names sequence numbers only: the records must still be there.
    retention_hours = sam_template["Resources"]["RegionalStream"]["Properties"][
        "RetentionPeriodHours"
    ]
    assert retention_hours * 3600 > _mapping(sam_template)["MaximumRecordAgeInSeconds"]


def test_the_relay_doc_states_the_template_values(sam_template):
    doc = RELAY_DOC.read_text()
    mapping = _mapping(sam_template)
    for name in ("BatchSize", "MaximumRetryAttempts", "MaximumRecordAgeInSeconds"):
        stated = {int(v) for v in re.findall(rf"`{name}: (-?\d+)`", doc)}
        assert stated == {mapping[name]}, name
    retention_hours = sam_template["Resources"]["RegionalStream"]["Properties"][
        "RetentionPeriodHours"
    ]
    assert f"{retention_hours} hours" in doc
    assert "7 days" not in doc
