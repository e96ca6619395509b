"""The terrapod command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

TERRAPOD = str(Path(sys.executable).parent / "terrapod")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TERRAPOD_")}
    return subprocess.run(
        [TERRAPOD, *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
        check=False,
    )


def test_every_command_has_help() -> None:
    for args in (
        [],
        ["serve"],
        ["migrate"],
        ["admin"],
        ["admin", "create-user"],
        ["admin", "create-org"],
        ["admin", "create-token"],
        ["admin", "set-role"],
    ):
        result = run(*args, "--help")
        assert result.returncode == 0, args
        assert "Usage:" in result.stdout and len(result.stdout) > 200, args


def test_malformed_settings_sources_are_clear_errors_too(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("port: [unclosed\n")
    for env in (
        {"TERRAPOD_CONFIG_FILE": str(bad_yaml)},
        {"TERRAPOD_SECRET_KEY": "short"},
        {"TERRAPOD_ADMIN_TOKEN": "short"},
    ):
        result = run("serve", "--data-dir", str(tmp_path), env=env)
        assert result.returncode == 2, (env, result.stderr)
        assert "Invalid Terrapod settings" in result.stderr, env
        assert "Traceback" not in result.stderr, env


def test_invalid_settings_stop_startup_with_a_clear_message(tmp_path: Path) -> None:
    result = run("serve", "--data-dir", str(tmp_path), env={"TERRAPOD_STORAGE__BACKEND": "s3"})
    assert result.returncode == 2
    assert "Invalid Terrapod settings" in result.stderr
    assert "storage.s3.bucket is not set" in result.stderr


def test_admin_commands_create_users_orgs_and_working_tokens(tmp_path: Path) -> None:
    assert run("migrate", "--data-dir", str(tmp_path)).returncode == 0
    org = run(
        "admin", "create-org", "--name", "infra", "--email", "i@x.test", "--data-dir", str(tmp_path)
    )
    assert org.returncode == 0, org.stderr
    user = run(
        "admin",
        "create-user",
        "--username",
        "ci",
        "--email",
        "ci@x.test",
        "--organization",
        "infra",
        "--role",
        "owner",
        "--token",
        "--data-dir",
        str(tmp_path),
    )
    assert user.returncode == 0, user.stderr
    token = json.loads(user.stdout)["token"]
    org_token = run("admin", "create-token", "--organization", "infra", "--data-dir", str(tmp_path))
    assert org_token.returncode == 0, org_token.stderr
    dup = run(
        "admin", "create-org", "--name", "infra", "--email", "i@x.test", "--data-dir", str(tmp_path)
    )
    assert dup.returncode == 1 and "already taken" in dup.stderr
    moved = run(
        "admin",
        "set-role",
        "--user",
        "ci",
        "--organization",
        "default",
        "--role",
        "owner",
        "--data-dir",
        str(tmp_path),
    )
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["role"] == "owner"
    # The first command on a fresh install also bootstrapped the default organization.
    assert "organization 'default'" in org.stderr
    assert json.loads(org.stdout)["name"] == "infra"

    # The tokens work against a server over the same data dir.
    from terrapod.app import create_app
    from terrapod.config import Settings

    async def check() -> None:
        app = create_app(Settings(data_dir=tmp_path))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            for secret, expected in ((token, 200), (json.loads(org_token.stdout)["token"], 200)):
                async with httpx.AsyncClient(
                    transport=transport,
                    base_url="https://t",
                    headers={"Authorization": f"Bearer {secret}"},
                ) as c:
                    assert (await c.get("/api/v2/organizations/infra")).status_code == expected

    import asyncio

    asyncio.run(check())


def test_own_address_names_the_scheme_served_and_a_reachable_host() -> None:
    from terrapod.cli import own_address
    from terrapod.config import Settings

    wildcard = Settings(host="0.0.0.0", port=8443)  # noqa: S104
    assert own_address(wildcard, tls=True) == "https://localhost:8443"
    assert own_address(Settings(host="127.0.0.1", port=9000), tls=False) == "http://127.0.0.1:9000"
    assert own_address(Settings(host="::1", port=8443), tls=True) == "https://[::1]:8443"
