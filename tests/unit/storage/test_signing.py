"""Signed object tokens: bound to key, method and expiry; path-safe."""

from __future__ import annotations

import re

import pytest

from terrapod.storage.signing import (
    OBJECTS_PATH,
    SignatureExpired,
    SignatureInvalid,
    SignedUrlError,
    UrlSigner,
)

SECRET = b"s" * 32
NOW = 1_700_000_000.0
KEY = "workspaces/ws-abc/state-versions/sv-def.tfstate"


@pytest.fixture
def signer() -> UrlSigner:
    return UrlSigner(SECRET, default_ttl=300)


def test_round_trip(signer: UrlSigner) -> None:
    token = signer.sign(KEY, "PUT", now=NOW)

    assert signer.verify(token, "PUT", now=NOW + 1) == KEY


def test_method_is_case_insensitive(signer: UrlSigner) -> None:
    assert signer.verify(signer.sign(KEY, "get", now=NOW), "GET", now=NOW) == KEY


def test_expiry_uses_default_ttl(signer: UrlSigner) -> None:
    token = signer.sign(KEY, "GET", now=NOW)

    assert signer.verify(token, "GET", now=NOW + 299) == KEY
    with pytest.raises(SignatureExpired, match="signed URL expired"):
        signer.verify(token, "GET", now=NOW + 300)


def test_explicit_ttl(signer: UrlSigner) -> None:
    token = signer.sign(KEY, "GET", ttl=10, now=NOW)

    signer.verify(token, "GET", now=NOW + 9)
    with pytest.raises(SignatureExpired):
        signer.verify(token, "GET", now=NOW + 10)


def test_token_for_one_method_does_not_work_for_the_other(signer: UrlSigner) -> None:
    with pytest.raises(SignatureInvalid):
        signer.verify(signer.sign(KEY, "PUT", now=NOW), "GET", now=NOW)
    with pytest.raises(SignatureInvalid):
        signer.verify(signer.sign(KEY, "GET", now=NOW), "PUT", now=NOW)


def test_expired_token_for_wrong_method_is_invalid(signer: UrlSigner) -> None:
    with pytest.raises(SignatureInvalid):
        signer.verify(signer.sign(KEY, "PUT", now=NOW), "GET", now=NOW + 10_000)


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def test_any_changed_character_is_invalid(signer: UrlSigner) -> None:
    token = signer.sign(KEY, "GET", now=NOW)

    for index in range(len(token)):
        if token[index] == ".":
            continue
        with pytest.raises(SignatureInvalid):
            signer.verify(_flip(token, index), "GET", now=NOW)


def test_forged_payload_with_reused_mac_is_invalid(signer: UrlSigner) -> None:
    genuine = signer.sign(KEY, "GET", now=NOW)
    other = signer.sign("workspaces/ws-other/state-versions/sv-1.tfstate", "GET", now=NOW)

    forged = other.split(".")[0] + "." + genuine.split(".")[1]

    with pytest.raises(SignatureInvalid):
        signer.verify(forged, "GET", now=NOW)


def test_other_secret_is_invalid(signer: UrlSigner) -> None:
    token = UrlSigner(b"t" * 32, 300).sign(KEY, "GET", now=NOW)

    with pytest.raises(SignatureInvalid):
        signer.verify(token, "GET", now=NOW)


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "a.b.c", "%2F.abc", "a b.c", "abc=.def", "Zm9v.", "Zm9v." + "A" * 5000],
)
def test_malformed_tokens_are_invalid(signer: UrlSigner, token: str) -> None:
    with pytest.raises(SignatureInvalid):
        signer.verify(token, "GET", now=NOW)


def test_errors_share_a_base_class() -> None:
    assert issubclass(SignatureInvalid, SignedUrlError)
    assert issubclass(SignatureExpired, SignedUrlError)


@pytest.mark.parametrize(
    "key",
    [KEY, "a", "odd?key/with spaces/and#hash/ünïcode/~tilde+plus", "x" * 1024, "a/b?c=d&e=f"],
)
def test_token_is_path_safe(signer: UrlSigner, key: str) -> None:
    for method in ("GET", "PUT"):
        token = signer.sign(key, method, now=NOW)

        assert re.fullmatch(r"[A-Za-z0-9_.-]+", token), token
        assert "/" not in token and "?" not in token and "=" not in token
        assert signer.verify(token, method, now=NOW) == key


def test_signed_path_and_url(signer: UrlSigner) -> None:
    path = signer.signed_path(KEY, "GET")
    url = signer.signed_url("https://tp.example.com/", KEY, "PUT", ttl=5)

    assert path.startswith(f"{OBJECTS_PATH}/")
    assert signer.verify(path.rsplit("/", 1)[1], "GET") == KEY
    assert url.startswith("https://tp.example.com/objects/")
    assert signer.verify(url.rsplit("/", 1)[1], "PUT") == KEY


def test_sign_refuses_bad_input(signer: UrlSigner) -> None:
    with pytest.raises(ValueError, match="DELETE"):
        signer.sign(KEY, "DELETE")
    with pytest.raises(ValueError, match="segment"):
        signer.sign("../etc/passwd", "GET")
    with pytest.raises(ValueError, match="ttl"):
        signer.sign(KEY, "GET", ttl=0)
    with pytest.raises(ValueError, match="16 bytes"):
        UrlSigner(b"short", 300)
