"""Build real-shaped Terraform state files (format version 4) for tests."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


def state(
    serial: int,
    lineage: str = "lin-1",
    *,
    outputs: dict[str, Any] | None = None,
    resources: int = 1,
    pad_bytes: int = 0,
) -> bytes:
    doc: dict[str, Any] = {
        "version": 4,
        "terraform_version": "1.15.5",
        "serial": serial,
        "lineage": lineage,
        "outputs": outputs or {},
        "resources": [
            {
                "mode": "managed",
                "type": "terraform_data",
                "name": f"r{i}",
                "provider": 'provider["terraform.io/builtin/terraform"]',
                "instances": [
                    {"schema_version": 0, "attributes": {"id": f"id-{i}", "pad": "x" * pad_bytes}}
                ],
            }
            for i in range(resources)
        ]
        + [
            {
                "mode": "data",
                "type": "terraform_remote_state",
                "name": "ignored",
                "provider": 'provider["terraform.io/builtin/terraform"]',
                "instances": [{"schema_version": 0, "attributes": {}}],
            }
        ],
        "check_results": None,
    }
    return json.dumps(doc).encode()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def create_body(
    content: bytes | None,
    serial: int,
    *,
    lineage: str = "lin-1",
    md5sum: str | None = None,
    outputs: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "serial": serial,
        "md5": md5sum or md5(content or b""),
        "lineage": lineage,
    }
    if content is not None:
        attrs["state"] = b64(content)
    if outputs is not None:
        attrs["json-state-outputs"] = b64(json.dumps(outputs).encode())
    if force:
        attrs["force"] = True
    return {"data": {"type": "state-versions", "attributes": attrs}}
