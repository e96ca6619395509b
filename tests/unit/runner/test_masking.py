"""Sensitive values are masked in a log that arrives in arbitrary chunks."""

from __future__ import annotations

import json

import pytest

from terrapod.runner.masking import LogMasker, mask_strings

SECRET = "s3cr3t-value"


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0

    async def __call__(self, data: bytes) -> None:
        self.data += data
        self.writes += 1


async def _masked(chunks: list[bytes], secrets: list[str]) -> bytes:
    sink = Sink()
    masker = LogMasker(secrets, sink)
    for chunk in chunks:
        await masker.write(chunk)
    await masker.flush()
    return bytes(sink.data)


@pytest.mark.parametrize("split_at", range(1, 30))
async def test_value_split_across_reads_is_masked(split_at: int) -> None:
    text = f"token = {SECRET} and again {SECRET}\n".encode()

    out = await _masked([text[:split_at], text[split_at:]], [SECRET])

    assert out == b"token = *** and again ***\n"


async def test_tail_without_newline_is_masked_at_flush() -> None:
    assert await _masked([b"last words: ", SECRET.encode()], [SECRET]) == b"last words: ***"


async def test_complete_lines_pass_on_at_once() -> None:
    sink = Sink()
    masker = LogMasker([SECRET], sink)

    await masker.write(b"one\ntwo\nthr")

    assert bytes(sink.data) == b"one\ntwo\n"


async def test_json_escaped_form_is_masked() -> None:
    secret = 'pa"ss<word>&\\'
    line = json.dumps({"@message": f"value {secret}"}).replace("<", "\\u003c")
    line = line.replace(">", "\\u003e").replace("&", "\\u0026")

    out = await _masked([line.encode() + b"\n"], [secret])

    assert out == b'{"@message": "value ***"}\n'


async def test_each_line_of_a_multi_line_value_is_masked() -> None:
    key = "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----"
    heredoc = b"    <<-EOT\n        -----BEGIN KEY-----\n        AAAABBBBCCCC\n    EOT\n"

    out = await _masked([heredoc], [key])

    assert b"AAAABBBBCCCC" not in out and b"BEGIN KEY" not in out


async def test_short_values_are_not_masked() -> None:
    assert await _masked([b"Plan: 1 to add\n"], ["1"]) == b"Plan: 1 to add\n"


async def test_long_line_is_passed_on_before_it_ends_and_stays_masked() -> None:
    line = b"x" * 100_000 + SECRET.encode() + b"y" * 100_000
    sink = Sink()
    masker = LogMasker([SECRET], sink)

    for start in range(0, len(line), 4096):
        await masker.write(line[start : start + 4096])
    written_before_the_end = bytes(sink.data)
    await masker.flush()

    assert written_before_the_end
    assert bytes(sink.data) == b"x" * 100_000 + b"***" + b"y" * 100_000


async def test_without_secrets_output_passes_through() -> None:
    assert await _masked([b"a", b"b\nc"], []) == b"ab\nc"


def test_strings_in_a_json_document_are_masked() -> None:
    document = {"a": [f"x{SECRET}y", 3, None], "b": {"c": SECRET}}

    assert mask_strings(document, [SECRET]) == {"a": ["x***y", 3, None], "b": {"c": "***"}}
