"""Terraform actions end to end: a real provider with an action (``pinger``, written with
pyvider, tests/fixtures/providers/pinger), installed for Terrapod's runner from a filesystem
mirror (``runs.provider_mirror``) and for the local CLI from the same mirror.

Real Terraform 1.15.5 with a ``cloud {}`` block applies a configuration in which a resource's
``action_trigger`` invokes ``action.pinger_ping.watch`` after it is created, then runs
``terraform apply -invoke=action.pinger_ping.hello``. The provider writes every ping it
really answered to a file named by a workspace environment variable, and every seed 002
endpoint then reports the actions, the invocations and their aggregates.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.databases import temporary_database
from tests.e2e.harness import ServerInfo, Terraform, describe, run_server, write_cloud_config

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures" / "providers" / "pinger"))
import mirror as pinger_mirror

ORG = "default"
CONFIG = f"""
terraform {{
  required_providers {{
    pinger = {{ source = "{pinger_mirror.SOURCE}" }}
  }}
}}

action "pinger_ping" "hello" {{
  config {{
    message = "hello"
  }}
}}

action "pinger_ping" "watch" {{
  config {{
    message = "thing created"
  }}
}}

resource "terraform_data" "thing" {{
  input = "v1"
  lifecycle {{
    action_trigger {{
      events  = [after_create]
      actions = [action.pinger_ping.watch]
    }}
  }}
}}
"""


@pytest.fixture(scope="module")
def provider_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mirror = tmp_path_factory.mktemp("provider-mirror")
    pinger_mirror.install(mirror)
    return mirror


@pytest.fixture(scope="module")
def aserver(
    backend: str, tmp_path_factory: pytest.TempPathFactory, provider_mirror: Path
) -> Iterator[ServerInfo]:
    workdir = tmp_path_factory.mktemp(f"e2e-actions-{backend}")
    with (
        temporary_database(backend, workdir) as database_url,
        run_server(
            workdir,
            backend=backend,
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            extra_env={"TERRAPOD_RUNS__PROVIDER_MIRROR": str(provider_mirror)},
        ) as info,
    ):
        yield info


def _data(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()["data"]


def test_actions_invoked_by_a_real_terraform_are_reported(
    aserver: ServerInfo, provider_mirror: Path, tmp_path: Path
) -> None:
    name = f"actions-{secrets.token_hex(4)}"
    pings = tmp_path / "pings.txt"
    with aserver.http(ADMIN_TOKEN) as client:
        ws = _data(
            client.post(
                f"/api/v2/organizations/{ORG}/workspaces",
                json={"data": {"type": "workspaces", "attributes": {"name": name}}},
            ),
            201,
        )["id"]
        # The provider records each ping it answers in this file; it runs on the server's
        # agent, where only the workspace's environment variables reach it.
        _data(
            client.post(
                f"/api/v2/workspaces/{ws}/vars",
                json={
                    "data": {
                        "type": "vars",
                        "attributes": {"key": "PINGER_LOG", "value": str(pings), "category": "env"},
                    }
                },
            ),
            201,
        )

        terraform = Terraform(aserver, tmp_path / "tf-home", ADMIN_TOKEN)
        with terraform.cli_config.open("a") as f:
            f.write(pinger_mirror.cli_config(provider_mirror))
        workdir = tmp_path / "config"
        write_cloud_config(
            workdir,
            hostname=aserver.hostname,
            organization=ORG,
            workspace=name,
            resources=CONFIG,
        )
        result = terraform.run(["init", "-input=false"], workdir)
        assert result.returncode == 0, describe(result)

        # 1. A lifecycle invocation: creating terraform_data.thing triggers watch.
        result = terraform.run(["apply", "-auto-approve", "-input=false"], workdir)
        assert result.returncode == 0, describe(result)
        assert "Action complete: action.pinger_ping.watch" in result.stdout, describe(result)
        assert pings.read_text().splitlines() == ["thing created"]

        # 2. A direct invocation: -invoke runs hello and nothing else.
        result = terraform.run(
            ["apply", "-auto-approve", "-input=false", "-invoke=action.pinger_ping.hello"],
            workdir,
        )
        assert result.returncode == 0, describe(result)
        assert pings.read_text().splitlines() == ["thing created", "hello"]

        runs = _data(client.get(f"/api/v2/workspaces/{ws}/runs"))
        assert len(runs) == 2
        direct_run, lifecycle_run = runs[0], runs[1]  # newest first
        assert direct_run["attributes"]["invoke-action-addrs"] == ["action.pinger_ping.hello"]
        assert direct_run["attributes"]["status"] == "applied"
        assert lifecycle_run["attributes"]["status"] == "applied"

        # GET /workspaces/:id/terraform-actions
        listed = client.get(f"/api/v2/workspaces/{ws}/terraform-actions")
        actions = _data(listed)
        assert listed.json()["meta"]["pagination"]["total-count"] == 2
        by_address = {a["attributes"]["address"]: a for a in actions}
        assert set(by_address) == {"action.pinger_ping.hello", "action.pinger_ping.watch"}
        for action in actions:
            assert action["type"] == "actions"
            assert action["attributes"]["module-address"] == "system:root_module"
            assert action["attributes"]["provider"] == "pinger"
            assert action["attributes"]["instance-type"] == "single"
            assert action["relationships"]["workspace"]["data"]["id"] == ws
            assert action["relationships"]["last-invocation"]["data"]["type"] == (
                "action-invocations"
            )
        hello, watch = (
            by_address["action.pinger_ping.hello"],
            by_address["action.pinger_ping.watch"],
        )
        assert (
            _data(
                client.get(
                    f"/api/v2/workspaces/{ws}/terraform-actions",
                    params={"filter[provider]": "pinger", "page[size]": "1"},
                )
            )[0]["attributes"]["address"]
            == "action.pinger_ping.hello"
        )
        assert (
            _data(
                client.get(
                    f"/api/v2/workspaces/{ws}/terraform-actions",
                    params={"filter[provider]": "aws"},
                )
            )
            == []
        )
        assert (
            _data(
                client.get(
                    f"/api/v2/workspaces/{ws}/terraform-actions",
                    params={"filter[last_invocation][invoked_at][gte]": "2000-01-01T00:00:00Z"},
                )
            )
            != []
        )

        # GET /workspaces/:id/terraform-actions/filter-options
        options = _data(client.get(f"/api/v2/workspaces/{ws}/terraform-actions/filter-options"))
        assert options == {
            "id": ws,
            "type": "action-filter-options",
            "attributes": {"providers": ["pinger"]},
        }

        # GET /terraform-actions/:id
        shown = _data(client.get(f"/api/v2/terraform-actions/{hello['id']}"))
        assert shown["attributes"]["invocation-count"] == 1
        assert shown["attributes"]["address"] == "action.pinger_ping.hello"

        # GET /terraform-actions/:id/invocations/run-summary
        summaries = _data(
            client.get(f"/api/v2/terraform-actions/{hello['id']}/invocations/run-summary")
        )
        assert len(summaries) == 1
        summary = summaries[0]
        assert summary["id"] == f"{hello['id']}:{direct_run['id']}"
        assert summary["type"] == "action-invocation-run-summary"
        assert summary["attributes"]["aggregate-invocation-status"] == "successful"
        assert summary["attributes"]["invocation-method"] == "direct"
        assert summary["attributes"]["invocation-statuses"] == {"successful": 1, "failed": 0}
        assert summary["attributes"]["planned-invocation-count"] == 1
        assert summary["attributes"]["invoked-at"].endswith("Z")
        assert summary["attributes"]["invoked-by"]["username"] == "admin"
        assert summary["relationships"]["run"]["data"]["id"] == direct_run["id"]
        watch_summary = _data(
            client.get(
                f"/api/v2/terraform-actions/{watch['id']}/invocations/run-summary",
                params={"filter[invocation_method]": "lifecycle"},
            )
        )
        assert [s["relationships"]["run"]["data"]["id"] for s in watch_summary] == [
            lifecycle_run["id"]
        ]
        assert (
            _data(
                client.get(
                    f"/api/v2/terraform-actions/{watch['id']}/invocations/run-summary",
                    params={"filter[invocation_method]": "direct"},
                )
            )
            == []
        )

        # GET /terraform-actions/:id/invocations/filter-options
        invoked_by = _data(
            client.get(f"/api/v2/terraform-actions/{hello['id']}/invocations/filter-options")
        )
        assert invoked_by["type"] == "action-invocation-filter-options"
        assert invoked_by["attributes"]["invoked-by"] == ["admin"]

        # GET /terraform-actions/:id/runs/:run_id/invocations
        listed = client.get(
            f"/api/v2/terraform-actions/{watch['id']}/runs/{lifecycle_run['id']}/invocations"
        )
        invocations = _data(listed)
        assert listed.json()["meta"]["counts"] == {"invocations": {"total": 1}}
        (invocation,) = invocations
        assert invocation["type"] == "action-invocations"
        assert invocation["id"] == watch["relationships"]["last-invocation"]["data"]["id"]
        assert invocation["attributes"]["final-status"] == "successful"
        assert invocation["attributes"]["invocation-method"] == "lifecycle"
        assert invocation["attributes"]["action-trigger-event"] == "AfterCreate"
        assert invocation["attributes"]["triggering-resource-address"] == "terraform_data.thing"
        assert invocation["attributes"]["action-trigger-block-index"] == 0
        assert invocation["attributes"]["actions-list-index"] == 0
        assert invocation["attributes"]["action-key"] is None

        # GET /terraform-actions/:id/runs/:run_id/invocations/lifecycle-resource-groups
        listed = client.get(
            f"/api/v2/terraform-actions/{watch['id']}/runs/{lifecycle_run['id']}"
            "/invocations/lifecycle-resource-groups"
        )
        groups = _data(listed)
        assert listed.json()["meta"]["counts"] == {
            "invocations": {"total": 1},
            "resource-groups": {"total": 1},
        }
        assert groups == [
            {
                "id": "terraform_data.thing",
                "type": "action-invocation-resource-groups",
                "attributes": {
                    "triggering-resource-address": "terraform_data.thing",
                    "aggregate-invocation-status": "successful",
                    "invocations": [
                        {
                            "id": invocation["id"],
                            "final-status": "successful",
                            "action-key": None,
                            "action-trigger-event": "AfterCreate",
                        }
                    ],
                },
            }
        ]
        # The direct run has no lifecycle invocation of hello.
        direct = client.get(
            f"/api/v2/terraform-actions/{hello['id']}/runs/{direct_run['id']}"
            "/invocations/lifecycle-resource-groups"
        )
        assert _data(direct) == []
