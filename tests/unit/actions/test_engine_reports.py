"""The runner's reading of what Terraform 1.15.5 reports about actions: the plan's JSON
(``show -json``) and an apply's JSON lines. The documents below are excerpts of the real
engine's output for the pinger test provider (tests/fixtures/providers/pinger)."""

from __future__ import annotations

import json
from pathlib import Path

from terrapod.runner.actions import (
    ApplyActions,
    declared_actions,
    match_key,
    planned_invocations,
    split_address,
)
from terrapod.runner.workdir import JobDirectory, mirrored_providers, write_cli_config

PLAN = {
    "configuration": {
        "root_module": {
            "actions": [
                {
                    "address": "action.pinger_ping.each",
                    "type": "pinger_ping",
                    "name": "each",
                    "provider_config_key": "pinger",
                },
                {
                    "address": "action.pinger_ping.many",
                    "type": "pinger_ping",
                    "name": "many",
                    "provider_config_key": "pinger",
                    "count_expression": {"constant_value": 2},
                },
            ],
            "module_calls": {
                "child": {
                    "module": {
                        "actions": [
                            {
                                "address": "action.pinger_ping.inner",
                                "type": "pinger_ping",
                                "name": "inner",
                                "provider_config_key": "module.child:pinger",
                            }
                        ]
                    }
                }
            },
        }
    },
    "action_invocations": [
        {
            "address": "action.pinger_ping.many[1]",
            "type": "pinger_ping",
            "name": "many",
            "provider_name": "terrapod.test/test/pinger",
            "lifecycle_action_trigger": {
                "triggering_resource_address": "terraform_data.x",
                "action_trigger_event": "BeforeCreate",
                "action_trigger_block_index": 0,
                "actions_list_index": 0,
            },
        },
        {
            "address": "module.child.action.pinger_ping.inner",
            "type": "pinger_ping",
            "name": "inner",
            "provider_name": "terrapod.test/test/pinger",
            "lifecycle_action_trigger": {
                "triggering_resource_address": "module.child.terraform_data.y",
                "action_trigger_event": "AfterCreate",
                "action_trigger_block_index": 0,
                "actions_list_index": 1,
            },
        },
        {
            "address": 'action.pinger_ping.each["a"]',
            "type": "pinger_ping",
            "name": "each",
            "provider_name": "terrapod.test/test/pinger",
            "invoke_action_trigger": {},
        },
    ],
}


def _hook(kind: str, addr: str, when: str, **extra: object) -> bytes:
    action = {"addr": addr, "implied_provider": "pinger", "action_key": None}
    hook: dict[str, object] = {"action": action, **extra}
    if "lifecycle" not in extra:
        hook["invoke"] = {}
    return (
        json.dumps({"@level": "info", "@timestamp": when, "hook": hook, "type": kind}).encode()
        + b"\n"
    )


LIFECYCLE = {
    "resource": {"addr": "terraform_data.thing"},
    "trigger_index": 0,
    "actions_index": 0,
    "trigger_event": "AfterCreate",
}


def test_addresses_split_into_module_address_and_key() -> None:
    assert split_address("action.pinger_ping.hello") == ("", "action.pinger_ping.hello", None)
    assert split_address('module.a["x"].module.b.action.t_y.n["k.z"]') == (
        'module.a["x"].module.b',
        "action.t_y.n",
        "k.z",
    )
    assert split_address("action.t.n[3]") == ("", "action.t.n", 3)


def test_declared_actions_come_from_every_module_with_their_repetition() -> None:
    found = declared_actions(PLAN)
    assert [
        (a.module_address, a.address, a.provider, a.instance_type, a.count_value) for a in found
    ] == [
        ("", "action.pinger_ping.each", "pinger", "single", None),
        ("", "action.pinger_ping.many", "pinger", "count", 2),
        ("module.child", "action.pinger_ping.inner", "pinger", "single", None),
    ]


def test_planned_invocations_are_lifecycle_or_direct_in_the_plans_order() -> None:
    many, inner, each = planned_invocations(PLAN)
    assert (many.method, many.address, many.action_key, many.provider) == (
        "lifecycle",
        "action.pinger_ping.many",
        1,
        "pinger",
    )
    assert (many.triggering_resource_address, many.trigger_event) == (
        "terraform_data.x",
        "BeforeCreate",
    )
    assert (inner.module_address, inner.actions_list_index, inner.order) == ("module.child", 1, 1)
    assert (each.method, each.action_key, each.triggering_resource_address) == ("direct", "a", None)
    assert each.match_key == match_key('action.pinger_ping.each["a"]', None, None, None)
    assert all(i.status == "planned" for i in (many, inner, each))


def test_apply_lines_in_any_chunks_give_each_invocations_outcome() -> None:
    stream = b"".join(
        [
            b'{"@level":"info","@message":"Terraform 1.15.5","type":"version"}\n',
            _hook(
                "action_start",
                "action.pinger_ping.watch",
                "2026-12-01T11:21:36.716980Z",
                lifecycle=LIFECYCLE,
            ),
            _hook(
                "action_progress",
                "action.pinger_ping.watch",
                "2026-12-01T11:21:36.719200Z",
                lifecycle=LIFECYCLE,
                message="pinging: resource changed",
            ),
            _hook(
                "action_complete",
                "action.pinger_ping.watch",
                "2026-12-01T11:21:36.720547Z",
                lifecycle=LIFECYCLE,
            ),
            _hook("action_start", "action.pinger_ping.broken", "2026-12-01T11:22:01.355070Z"),
            _hook(
                "action_errored",
                "action.pinger_ping.broken",
                "2026-12-01T11:22:01.360552Z",
                error="Action 'pinger_ping' failed: ping 'boom' failed on purpose",
            ),
            _hook("action_start", "action.pinger_ping.cut", "2026-12-01T11:23:00Z"),
        ]
    )
    watcher = ApplyActions()
    for i in range(0, len(stream), 7):  # lines arrive split anywhere
        watcher.feed(stream[i : i + 7])
    watch, broken, cut = watcher.reports()
    assert watch.match_key == match_key("action.pinger_ping.watch", "terraform_data.thing", 0, 0)
    assert (watch.status, watch.method, watch.trigger_event) == (
        "successful",
        "lifecycle",
        "AfterCreate",
    )
    assert watch.messages == ("pinging: resource changed",)
    assert (watch.started_at, watch.completed_at) == (
        "2026-12-01T11:21:36.716980Z",
        "2026-12-01T11:21:36.720547Z",
    )
    assert (broken.status, broken.method) == ("failed", "direct")
    assert broken.error == "Action 'pinger_ping' failed: ping 'boom' failed on purpose"
    assert (cut.status, cut.error) == ("failed", "interrupted")


def test_a_provider_mirror_is_the_only_source_of_its_providers(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "terrapod.test" / "test" / "pinger" / "0.1.0" / "linux_amd64").mkdir(parents=True)
    (mirror / "example.com" / "acme" / "widget").mkdir(parents=True)
    assert mirrored_providers(mirror) == ["example.com/acme/widget", "terrapod.test/test/pinger"]
    directory = JobDirectory(tmp_path / "work", "run-1")
    directory.create()
    write_cli_config(directory, str(mirror))
    text = directory.cli_config.read_text()
    listed = '["example.com/acme/widget", "terrapod.test/test/pinger"]'
    assert f"include = {listed}" in text
    assert f"exclude = {listed}" in text
    assert f'path    = "{mirror}"' in text


def test_without_a_mirror_the_cli_configuration_stays_empty(tmp_path: Path) -> None:
    directory = JobDirectory(tmp_path / "work", "run-1")
    directory.create()
    write_cli_config(directory, None)
    write_cli_config(directory, str(tmp_path / "missing"))
    assert directory.cli_config.read_text() == ""
