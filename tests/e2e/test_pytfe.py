"""The official Python SDK (pytfe 1.5.0) against a real server: organizations, the
organization token and the current user.

pytfe raises ``AuthError`` for 401/403, ``NotFound`` for 404 and ``TFEError`` (with
``status``) for other failures; these tests pin which one each situation produces.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
from pytfe import TFEClient
from pytfe.errors import AuthError, NotFound, TFEError
from pytfe.models import OrganizationCreateOptions, OrganizationUpdateOptions

from tests.e2e.harness import ServerInfo, tfe_client


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def issue_org_token(tfe: TFEClient, organization: str) -> str:
    """Create (replace) the organization's token and return its plaintext."""
    token = tfe.organization_tokens.create(organization).token
    assert token, "the plaintext token is returned on creation"
    return token


@pytest.fixture
def org(tfe: TFEClient) -> Iterator[str]:
    """A fresh organization, deleted afterwards unless the test deleted it."""
    name = unique("e2e-org")
    tfe.organizations.create(OrganizationCreateOptions(name=name, email=f"{name}@example.test"))
    yield name
    with contextlib.suppress(NotFound):
        tfe.organizations.delete(name)


def test_organizations_side_by_side_create_read_list_update_delete(tfe: TFEClient) -> None:
    names = [unique(f"e2e-side{i}") for i in range(3)]
    for name in names:
        created = tfe.organizations.create(
            OrganizationCreateOptions(name=name, email=f"{name}@example.test")
        )
        assert created.name == name
        assert created.id == name  # TFE identifies organizations by name
        assert created.email == f"{name}@example.test"
        # pytfe reads only attributes whose names have no hyphen (or carry an alias), so
        # created-at never reaches Organization.created_at; the relationships arrive raw.
        assert "entitlement-set" in created.relationships

    for name in names:
        read = tfe.organizations.read(name)
        assert (read.name, read.email) == (name, f"{name}@example.test")
        assert read.permissions and read.permissions.get("can-destroy") is True

    listed = {o.name for o in tfe.organizations.list()}
    assert {"default", *names} <= listed

    updated = tfe.organizations.update(
        names[1], OrganizationUpdateOptions(email="ops@example.test")
    )
    assert updated.email == "ops@example.test"
    assert tfe.organizations.read(names[1]).email == "ops@example.test"
    assert tfe.organizations.read(names[0]).email == f"{names[0]}@example.test"

    tfe.organizations.delete(names[0])
    with pytest.raises(NotFound) as missing:
        tfe.organizations.read(names[0])
    assert missing.value.status == 404
    assert names[0] not in {o.name for o in tfe.organizations.list()}
    assert tfe.organizations.read(names[2]).name == names[2]

    for name in names[1:]:
        tfe.organizations.delete(name)


def test_creating_a_taken_organization_name_is_rejected(tfe: TFEClient, org: str) -> None:
    with pytest.raises(TFEError) as taken:
        tfe.organizations.create(OrganizationCreateOptions(name=org, email="x@example.test"))
    # A conflict is neither an AuthError nor NotFound: pytfe raises the base TFEError.
    assert type(taken.value) is TFEError
    assert taken.value.status == 409, taken.value.errors
    assert str(taken.value) == f"organization name {org!r} is already taken"


def test_deleting_a_missing_organization_is_not_found(tfe: TFEClient) -> None:
    with pytest.raises(NotFound):
        tfe.organizations.delete(unique("e2e-never"))


def test_organization_token_create_read_delete(tfe: TFEClient, org: str) -> None:
    created = tfe.organization_tokens.create(org)
    assert created.token, "the plaintext token is returned on creation"
    assert created.id.startswith("at-")

    read = tfe.organization_tokens.read(org)
    assert read.id == created.id
    assert read.token is None, "the plaintext is shown only once"

    tfe.organization_tokens.delete(org)
    with pytest.raises(NotFound):
        tfe.organization_tokens.read(org)


def test_organization_token_reads_its_own_organization_only(
    server: ServerInfo, tfe: TFEClient, org: str
) -> None:
    other = unique("e2e-other")
    tfe.organizations.create(OrganizationCreateOptions(name=other, email="o@example.test"))
    try:
        token = issue_org_token(tfe, org)
        with tfe_client(server, token) as as_org:
            assert as_org.organizations.read(org).name == org
            with pytest.raises((NotFound, AuthError)) as denied:
                as_org.organizations.read(other)
            assert denied.value.status in (403, 404)
            assert [o.name for o in as_org.organizations.list()] == [org]
    finally:
        tfe.organizations.delete(other)


def test_replacing_or_deleting_the_organization_token_revokes_the_old_one(
    server: ServerInfo, tfe: TFEClient, org: str
) -> None:
    first = issue_org_token(tfe, org)
    with tfe_client(server, first) as as_first:
        assert as_first.organizations.read(org).name == org  # now cached by the server

        second = issue_org_token(tfe, org)
        assert second != first
        with pytest.raises(AuthError) as revoked:
            as_first.organizations.read(org)
        assert revoked.value.status == 401

    with tfe_client(server, second) as as_second:
        assert as_second.organizations.read(org).name == org
        tfe.organization_tokens.delete(org)
        with pytest.raises(AuthError):
            as_second.organizations.read(org)


def test_bad_token_is_an_auth_error(server: ServerInfo) -> None:
    stranger = tfe_client(server, "tpod.not-a-real-token-" + secrets.token_hex(16))
    with stranger, pytest.raises(AuthError) as denied:
        stranger.organizations.read("default")
    assert denied.value.status == 401


def test_read_current_user_is_the_bootstrap_admin(tfe: TFEClient) -> None:
    me = tfe.users.read_current()
    assert me.username == "admin"
    assert me.id.startswith("user-")
    assert me.email == "admin@localhost"
    assert tfe.users.read(me.id).username == "admin"
