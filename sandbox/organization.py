"""A simulated AWS Organization: management, Security and member accounts.

Members are created the two ways they are created in real organizations: with Organizations
CreateAccount (which creates `OrganizationAccountAccessRole` in the new account) and through
Control Tower's Account Factory, which calls CreateAccount with `RoleName` set to
`AWSControlTowerExecution` — so that account has only that role, and onboarding has to fall back
to the second name in MEMBER_ROLE_NAMES to reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.embedded import EmbeddedAws, SandboxError

CREATED_ROLE = "OrganizationAccountAccessRole"
CONTROL_TOWER_ROLE = "AWSControlTowerExecution"


@dataclass(frozen=True)
class Account:
    """One account of the simulated organization."""

    account_id: str
    name: str
    email: str
    admin_role: str  # the role its administrators (and watershed) assume into it
    vended_by: str  # "organizations" | "control tower" | "management"
    ou_name: str = "Root"
    ou_id: str = ""
    create_request_id: str = ""


@dataclass(frozen=True)
class Organization:
    """The organization the story plays in."""

    organization_id: str
    root_id: str
    management: Account
    security: Account
    members: tuple[Account, ...]

    @property
    def accounts(self) -> tuple[Account, ...]:
        return (self.management, self.security, *self.members)


def create_organization(
    aws: EmbeddedAws, members: int = 3, control_tower_members: int = 1
) -> Organization:
    """Create the organization from the management account, then Security and the members.

    The last `control_tower_members` members are vended by "Control Tower" into a Workloads OU.
    """
    if members < 1 or not 0 <= control_tower_members <= members:
        raise SandboxError(f"need >= 1 member and 0..{members} Control Tower members")
    org = aws.management_session().client("organizations", region_name="us-east-1")
    description = org.create_organization(FeatureSet="ALL")["Organization"]
    root_id = org.list_roots()["Roots"][0]["Id"]
    workloads = org.create_organizational_unit(ParentId=root_id, Name="Workloads")
    workloads_id = workloads["OrganizationalUnit"]["Id"]

    management = Account(
        account_id=description["MasterAccountId"],
        name="management",
        email=description["MasterAccountEmail"],
        admin_role="",
        vended_by="management",
    )
    if management.account_id != aws.management_account_id:
        raise SandboxError("the organization must be created from moto's default account")

    def create(name: str, role_name: str, vended_by: str, ou: tuple[str, str] | None) -> Account:
        email = f"{name}@example.com"
        status = org.create_account(Email=email, AccountName=name, RoleName=role_name)[
            "CreateAccountStatus"
        ]
        if status["State"] != "SUCCEEDED":
            raise SandboxError(f"CreateAccount {name}: {status}")
        account_id = status["AccountId"]
        ou_name, ou_id = ("Root", root_id)
        if ou is not None:
            ou_name, ou_id = ou
            org.move_account(
                AccountId=account_id, SourceParentId=root_id, DestinationParentId=ou_id
            )
        return Account(account_id, name, email, role_name, vended_by, ou_name, ou_id, status["Id"])

    security = create("security", CREATED_ROLE, "organizations", None)
    created = [
        create(f"workload-{index}", CREATED_ROLE, "organizations", None)
        for index in range(1, members - control_tower_members + 1)
    ]
    vended = [
        create(
            f"workload-{index}", CONTROL_TOWER_ROLE, "control tower", ("Workloads", workloads_id)
        )
        for index in range(members - control_tower_members + 1, members + 1)
    ]
    return Organization(description["Id"], root_id, management, security, (*created, *vended))
