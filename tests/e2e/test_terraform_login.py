"""``terraform login`` against Terrapod: the real CLI in a pseudo-terminal, this test as the
user's browser (it opens the printed URL, signs in, and follows the redirect back to the
port terraform listens on)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import TERRAFORM_BIN, ServerInfo, Terraform

PASSWORD = "correct horse battery staple"
DEADLINE_SECONDS = 90


class Terminal:
    """A process on a pseudo-terminal, read until expected text appears."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True
        )
        os.close(slave)
        self.output = ""

    def expect(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while (match := re.search(pattern, self.output)) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"timed out waiting for {pattern!r}; output so far:\n{self.output}"
            )
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the process closed the terminal
                    chunk = b""
                assert chunk or self.process.poll() is None, f"exited; output:\n{self.output}"
                self.output += chunk.decode("utf-8", "replace")
        return match

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self) -> int:
        try:
            while True:
                ready, _, _ = select.select([self.master], [], [], 5)
                if not ready:
                    break
                chunk = os.read(self.master, 4096)
                if not chunk:
                    break
                self.output += chunk.decode("utf-8", "replace")
        except OSError:
            pass
        code = self.process.wait(timeout=DEADLINE_SECONDS)
        os.close(self.master)
        return code


@pytest.fixture
def login_user(server: ServerInfo) -> str:
    name = f"login-{os.urandom(3).hex()}"
    created = server.admin_cli(
        "create-user",
        "--username",
        name,
        "--email",
        f"{name}@example.test",
        "--organization",
        "default",
    )
    assert created.returncode == 0, created.stderr
    password = server.admin_cli(
        "set-password", "--user", name, "--password-stdin", input=PASSWORD + "\n"
    )
    assert password.returncode == 0, password.stderr
    return name


def browser_sign_in(server: ServerInfo, url: str, username: str, password: str) -> httpx.Response:
    """Do what a person does in the browser; returns the sign-in form's response."""
    with httpx.Client(verify=server.ssl_context(), trust_env=False) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        assert "cdn" not in page.text.lower()
        fields = dict(
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
        )
        fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
        return browser.post(
            f"{server.url}/oauth/authorize",
            data={**fields, "username": username, "password": password},
        )


def test_terraform_login_obtains_a_working_token(
    server: ServerInfo, terraform: Terraform, login_user: str, tmp_path: Path
) -> None:
    anonymous = terraform.with_token(None)
    env = anonymous.env(interactive=True, env_extra={"BROWSER": "/bin/false"})
    term = Terminal([str(TERRAFORM_BIN), "login", server.hostname], env, tmp_path)
    term.expect(r"Enter a value:")
    term.send("yes\r")
    url = term.expect(r"(https://\S+/oauth/authorize\?\S+)").group(1)

    # A wrong password shows the form again with an error, and issues nothing.
    wrong = browser_sign_in(server, url, login_user, "not the password")
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text

    signed_in = browser_sign_in(server, url, login_user, PASSWORD)
    assert signed_in.status_code == 302, signed_in.text
    callback = signed_in.headers["location"]
    assert re.match(r"http://(localhost|127\.0\.0\.1):100\d\d/", callback), callback
    # terraform's own listener takes the code; it may close the connection as soon as it has
    # it, and its success message below is what proves delivery.
    with httpx.Client(trust_env=False) as local, contextlib.suppress(httpx.RemoteProtocolError):
        local.get(callback, timeout=30)

    assert term.finish() == 0, term.output
    plain = re.sub(r"\x1b\[[0-9;]*m", "", term.output)
    assert "Success! Terraform has obtained and saved an API token." in plain
    saved = json.loads((anonymous.home / ".terraform.d" / "credentials.tfrc.json").read_text())
    token = saved["credentials"][server.hostname]["token"]
    with server.http(token) as api:
        me = api.get("/api/v2/account/details")
    assert me.status_code == 200 and me.json()["data"]["attributes"]["username"] == login_user


def test_authorize_rejects_foreign_redirects_and_tampered_forms(
    server: ServerInfo, login_user: str
) -> None:
    base = {
        "response_type": "code",
        "client_id": "terraform-cli",
        "state": "s",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    with httpx.Client(verify=server.ssl_context(), trust_env=False) as browser:
        for redirect in (
            "https://evil.example/login",
            "http://localhost:8080/login",
            "http://evil.example:10000/login",
        ):
            r = browser.get(
                f"{server.url}/oauth/authorize", params={**base, "redirect_uri": redirect}
            )
            assert r.status_code == 400, redirect
        page = browser.get(
            f"{server.url}/oauth/authorize",
            params={**base, "redirect_uri": "http://localhost:10000/login"},
        )
        fields = dict(
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
        )
        tampered = {
            **fields,
            "redirect_uri": "http://localhost:10001/steal",
            "username": login_user,
            "password": PASSWORD,
        }
        r = browser.post(f"{server.url}/oauth/authorize", data=tampered)
        assert r.status_code == 400 and "altered" in r.text
        r = browser.post(
            f"{server.url}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": "forged",
                "client_id": "terraform-cli",
                "redirect_uri": "http://localhost:10000/login",
                "code_verifier": "v" * 43,
            },
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
