"""End-to-end fixtures: one real ``terrapod serve`` per database backend per session.

Tests share the server, so each one works in organizations and workspaces with unique names
and compares request counters before and after (``harness.request_counts``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytfe import TFEClient

from tests.conftest import ADMIN_TOKEN
from tests.databases import temporary_database
from tests.e2e.harness import ServerInfo, Terraform, run_server, tfe_client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """A running server over TLS (throw-away CA) on ``backend``, with the bootstrap admin."""
    workdir = tmp_path_factory.mktemp(f"e2e-{backend}")
    with (
        temporary_database(backend, workdir) as database_url,
        run_server(
            workdir, backend=backend, database_url=database_url, admin_token=ADMIN_TOKEN
        ) as info,
    ):
        yield info


@pytest.fixture
def terraform(server: ServerInfo, tmp_path: Path) -> Terraform:
    """Real Terraform with an isolated HOME whose CLI config holds the admin's credentials.

    ``terraform.with_token(token, via="env")`` gives one that uses ``TF_TOKEN_localhost:P``.
    """
    return Terraform(server, tmp_path / "tf-home", ADMIN_TOKEN)


@pytest.fixture
def tfe(server: ServerInfo) -> Iterator[TFEClient]:
    """A pytfe client authenticated as the bootstrap admin."""
    with tfe_client(server, ADMIN_TOKEN) as client:
        yield client
