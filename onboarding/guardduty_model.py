"""The GuardDuty protection plans this SDK knows, and the ones never sent at creation.

CreateDetector turns on every feature it is not told about (RUNTIME_MONITORING excepted: API
reference, CreateDetector), and AWS adds paid plans every year. So watershed does not keep its
own list of plans: it reads the `DetectorFeature` enum of the installed botocore's GuardDuty
service model, once per process (one JSON model, ~15 ms), and a newer SDK brings newer plans.

NOT_SENT_AT_CREATION is the one place that lists the names CreateDetector is never sent, each
with its source. Everything else in the enum is sent at creation, DISABLED unless
GUARDDUTY_FEATURES names it.
"""

from __future__ import annotations

from functools import cache

import botocore.loaders

# name -> why it is never sent in CreateDetector's Features (and where AWS says so)
NOT_SENT_AT_CREATION: dict[str, str] = {
    "EKS_RUNTIME_MONITORING": (
        "superseded by RUNTIME_MONITORING, which includes EKS; sending both is an error "
        "(GuardDuty API reference, DetectorFeatureConfiguration: 'Specifying both "
        "EKS_RUNTIME_MONITORING and RUNTIME_MONITORING will cause an error')"
    ),
}

# Not an exception, but worth knowing (checked 2026-11): AI_ANALYST is the switch of GuardDuty
# Investigation (preview; API reference, CreateInvestigation: "To use this operation, the
# AI_ANALYST feature must be enabled on your detector"; only an administrator account can create
# investigations; the analysis runs on Amazon Bedrock with cross-Region inference). It is a
# DetectorFeature CreateDetector accepts, so it is sent like every other plan: DISABLED unless
# named. It is not an organization feature (absent from OrgFeature), so a GuardDuty
# administrator's auto-enable never sets it on members.


@cache
def detector_features() -> tuple[str, ...]:
    """Every `DetectorFeature` name of the installed botocore GuardDuty model, in model order."""
    model = botocore.loaders.create_loader().load_service_model("guardduty", "service-2")
    return tuple(model["shapes"]["DetectorFeature"]["enum"])


def creation_features(named: dict[str, str]) -> list[dict[str, str]]:
    """CreateDetector's `Features`: every plan the model knows (but NOT_SENT_AT_CREATION), named
    ones with their configured status, all others DISABLED."""
    return [
        {"Name": name, "Status": named.get(name, "DISABLED")}
        for name in detector_features()
        if name not in NOT_SENT_AT_CREATION
    ]
