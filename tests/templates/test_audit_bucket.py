"""The scheduled audit's resources (template.yaml): the bucket it creates, its schedule, and the
onboarding role's access to it — scoped to the bucket's ARN and the audits/ prefix, read as
rendered for the home region."""

import fnmatch

from cfnmodel import Deployment, policy_documents, statements


def _onboarding_s3(home):
    return [
        s
        for logical_id, kind, document in policy_documents(home)
        if logical_id == "OnboardingRole" and kind == "identity"
        for s in statements(document)
        if any(
            str(a).startswith("s3:")
            for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        )
    ]


def test_the_home_region_creates_a_private_encrypted_bucket_and_the_schedule(home, relay_region):
    bucket = home.resources()["AuditBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rule = home.resolve(bucket["LifecycleConfiguration"])["Rules"][0]
    assert (rule["Prefix"], rule["Status"]) == ("audits/", "Enabled")
    assert "AuditBucket" not in relay_region.resources()

    events = home.resources()["OnboardingFunction"]["Properties"]["Events"]
    audit = home.resolve(events["Audit"]["Properties"])
    assert audit["Input"] == '{"audit": "start"}'
    assert audit["Schedule"].startswith("cron(")
    env = home.resolve(home.resources()["OnboardingFunction"]["Properties"]["Environment"])
    assert env["Variables"]["AUDIT_BUCKET"] == "watershed-auditbucket"


def test_the_onboarding_role_reaches_only_the_audit_prefix_of_its_own_bucket(home):
    arn = "arn:aws:s3:::watershed-auditbucket"
    got = {
        s["Sid"]: (
            sorted(s["Action"]) if isinstance(s["Action"], list) else [s["Action"]],
            s["Resource"],
            s.get("Condition"),
        )
        for s in _onboarding_s3(home)
    }
    assert got == {
        "AuditResults": (["s3:GetObject", "s3:PutObject"], f"{arn}/audits/*", None),
        "AuditCount": (["s3:ListBucket"], arn, {"StringLike": {"s3:prefix": "audits/*"}}),
    }


def test_the_bucket_refuses_anything_but_tls(home):
    [document] = [d for i, _, d in policy_documents(home) if i == "AuditBucketPolicy"]
    [deny] = statements(document)
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [
        "arn:aws:s3:::watershed-auditbucket",
        "arn:aws:s3:::watershed-auditbucket/*",
    ]


def test_audit_messages_have_a_queue_of_their_own_consumed_at_their_own_concurrency(home):
    """An audit of 10,000 accounts must not wait behind, nor delay, onboardings on the work
    queue: its messages go to AuditQueue, drained by their own mapping (AuditMaxConcurrency)."""
    resources = home.resources()
    function = resources["OnboardingFunction"]["Properties"]
    events = function["Events"]
    work = home.resolve(events["Work"]["Properties"])
    audit = home.resolve(events["AuditWork"]["Properties"])
    assert audit["Queue"] != work["Queue"]
    assert audit["Queue"] == home.resolve({"Fn::GetAtt": ["AuditQueue", "Arn"]})
    assert audit["ScalingConfig"]["MaximumConcurrency"] == home.values["AuditMaxConcurrency"]
    assert work["ScalingConfig"]["MaximumConcurrency"] == home.values["OnboardingMaxConcurrency"]
    assert audit["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # With an exclusion tag each audited account costs an organization-wide ListTagsForResource:
    # the audit then runs at the onboarding's pace
    tagged = Deployment(
        home.template, home.region, home.account, {**home.parameters, "ExcludeTag": "watershed=off"}
    )
    mapping = tagged.resolve(tagged.resources()["OnboardingFunction"]["Properties"]["Events"])
    assert (
        mapping["AuditWork"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
        == (home.values["OnboardingMaxConcurrency"])
    )
    env = home.resolve(function["Environment"])["Variables"]
    assert env["AUDIT_QUEUE_URL"] == home.resolve({"Ref": "AuditQueue"})
    queue = home.resolve(resources["AuditQueue"]["Properties"])
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == home.resolve(
        {"Fn::GetAtt": ["WorkDeadLetterQueue", "Arn"]}
    )
    # AWS: at least six times the function's timeout for an SQS event source
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]


def test_only_the_onboarding_role_sends_to_and_consumes_the_audit_queue(home):
    """Every identity statement of the stack that could reach the queue - by its ARN, or by a
    wildcard such as "*" or "arn:aws:sqs:*" - with an SQS action."""
    arn = home.resolve({"Fn::GetAtt": ["AuditQueue", "Arn"]})

    def listed(value):
        return value if isinstance(value, list) else [value]

    granted = [
        (logical_id, s)
        for logical_id, kind, document in policy_documents(home)
        if kind == "identity"
        for s in statements(document)
        if s["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(arn, r) for r in listed(s["Resource"]))
        and any(a == "*" or a.lower().startswith("sqs:") for a in listed(s["Action"]))
    ]
    assert [(i, s["Sid"]) for i, s in granted] == [("OnboardingRole", "FanOutAndConsumeAudits")]
    [(_, statement)] = granted
    assert statement["Resource"] == arn  # that queue only
    [tls] = [
        s
        for i, _, d in policy_documents(home)
        if i == "WorkQueueDeadLetterPolicies"
        for s in statements(d)
    ]
    assert arn in tls["Resource"] and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
