"""Outbound HTTP to user-chosen URLs: which addresses are allowed, URL checks when saving,
and that a request goes to the address checked (or nowhere)."""

from __future__ import annotations

import ipaddress

import pytest

from terrapod import outbound
from tests.unit.notifications.receivers import HttpReceiver

SETTING = "example.allow_private_addresses"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104 (an address checked, not bound)
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:93.184.216.34", True),
    ],
)
def test_address_allowed(address: str, allowed: bool) -> None:
    assert outbound.address_allowed(ipaddress.ip_address(address)) is allowed


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://host/x", "http"),
        ("host/x", "absolute"),
        ("http:///x", "name a host"),
        ("http://user:pw@host/x", "user name or password"),
        ("http://host:99999/x", "not a valid URL"),
    ],
)
def test_malformed_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        outbound.split_url(url)


def test_split_url_defaults_the_port_by_scheme() -> None:
    assert outbound.split_url("https://h.example/x") == ("https", "h.example", 443)
    assert outbound.split_url("http://h.example:8080/x") == ("http", "h.example", 8080)


async def test_check_url_refuses_a_private_address_and_names_the_setting() -> None:
    with pytest.raises(outbound.AddressRefused, match=r"169\.254\.169\.254 is a private") as exc:
        await outbound.check_url(
            "http://169.254.169.254/latest",
            allow_private=False,
            allowed_by=SETTING,
            timeout_seconds=2,
        )
    assert SETTING in str(exc.value)


async def test_check_url_names_the_address_a_host_resolves_to() -> None:
    with pytest.raises(outbound.AddressRefused, match=r"localhost \((127\.0\.0\.1|::1)\)"):
        await outbound.check_url(
            "http://localhost:9/x", allow_private=False, allowed_by=SETTING, timeout_seconds=2
        )


async def test_check_url_allows_private_addresses_when_told() -> None:
    await outbound.check_url(
        "http://127.0.0.1:9/x", allow_private=True, allowed_by=SETTING, timeout_seconds=2
    )


async def test_check_url_accepts_a_host_that_does_not_resolve_yet() -> None:
    # .invalid never resolves (RFC 2606); the request checks it again.
    await outbound.check_url(
        "http://task.invalid/x", allow_private=False, allowed_by=SETTING, timeout_seconds=2
    )


async def test_a_refused_address_is_never_connected_to() -> None:
    with HttpReceiver() as receiver:
        outcome = await outbound.post(
            receiver.url(), b"{}", {}, allow_private=False, allowed_by=SETTING, timeout_seconds=2
        )
        assert receiver.requests == []
    assert outcome.successful is False and outcome.code is None
    assert outcome.body.startswith("not sent: 127.0.0.1 is a private")
    assert SETTING in outcome.body


async def test_a_host_that_does_not_resolve_is_not_sent() -> None:
    outcome = await outbound.post(
        "http://task.invalid/x",
        b"{}",
        {},
        allow_private=True,
        allowed_by=SETTING,
        timeout_seconds=2,
    )
    assert outcome.successful is False and outcome.code is None
    assert outcome.body.startswith("not sent: task.invalid does not resolve")


async def test_an_allowed_post_keeps_the_host_header_and_reports_the_answer() -> None:
    with HttpReceiver([202]) as receiver:
        url = receiver.url("/hook?x=1")
        outcome = await outbound.post(
            url,
            b'{"a": 1}',
            {"X-Test": "yes"},
            allow_private=True,
            allowed_by=SETTING,
            timeout_seconds=5,
        )
        (request,) = receiver.requests
    assert outcome.successful is True and outcome.code == 202
    assert outcome.headers["x-receiver"] == ["test"]
    assert request.path == "/hook?x=1" and request.body == b'{"a": 1}'
    assert request.headers["Host"] == url.split("/")[2]
    assert request.headers["X-Test"] == "yes"
