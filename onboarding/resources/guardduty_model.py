"""The GuardDuty protection plans this SDK knows, and the ones never sent at creation.

CreateDetector turns on every feature it is not told about (RUNTIME_MONITORING excepted: API
reference, CreateDetector), and AWS adds paid plans every year. So watershed does not keep its
own list of plans: it reads the `DetectorFeature` enum of the installed botocore's GuardDuty
service model at run time, and a newer SDK brings newer plans. At creation the enum comes from
the GuardDuty client's own model (already loaded: no cost); validating GUARDDUTY_FEATURES at
cold start loads the model once, and only when the variable names a plan (15-90 ms measured).

NOT_SENT_AT_CREATION is the one place that lists the names CreateDetector is never sent, each
with its source. Everything else in the enum is sent at creation, DISABLED unless
GUARDDUTY_FEATURES names it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

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


def client_features(guardduty: Any) -> tuple[str, ...]:
    """The same enum, from a GuardDuty client's own (already loaded) service model."""
    return tuple(guardduty.meta.service_model.shape_for("DetectorFeature").enum)


def creation_features(
    named: dict[str, str], known: tuple[str, ...] | None = None
) -> list[dict[str, str]]:
    """CreateDetector's `Features`: every plan the model knows (`known`, default: the installed
    model; but NOT_SENT_AT_CREATION), named ones with their configured status, others DISABLED."""
    return [
        {"Name": name, "Status": named.get(name, "DISABLED")}
        for name in (known if known is not None else detector_features())
        if name not in NOT_SENT_AT_CREATION
    ]
