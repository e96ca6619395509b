"""TFE wire shapes for configuration versions (HCP Terraform "Configuration Versions" API,
https://developer.hashicorp.com/terraform/cloud-docs/api-docs/configuration-versions).

Client quirks honoured here:
- go-tfe decodes ``status-timestamps`` into a struct of RFC 3339 times and pytfe into a
  ``dict[str, str]``, so only the timestamps a version has are sent, never nulls.
- ``upload-url`` is only shown in the response to the create request, as TFE does; it is
  absolute (terraform PUTs to it as given) and needs no token.
- ``error`` is TFE's short error description; Terrapod has one kind of error (the tarball was
  refused), so it carries the same text as ``error-message``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from terrapod.configversions.models import ERRORED, ConfigurationVersion
from terrapod.jsonapi.documents import Resource, iso, resource
from terrapod.jsonapi.models import Omitted, Timestamp, WireModel, listing, single, to_one
from terrapod.jsonapi.parsing import Attributes

# (object key, HTTP method) -> absolute signed URL
UrlFor = Callable[[str, str], str]


class ConfigurationVersionAttributes(Attributes):
    """What a client may set when it creates a configuration version."""

    auto_queue_runs: bool = Field(
        default=True,
        description="Queue a run in the workspace as soon as the configuration is uploaded",
    )
    speculative: bool = Field(
        default=False, description="Runs of this configuration can only plan, never apply"
    )
    provisional: bool = Field(
        default=False,
        description="Does not become the workspace's current configuration until a run "
        "that uses it is applied",
    )


# -- responses ------------------------------------------------------------------------------


class StatusTimestamps(WireModel):
    """When the version entered each status it has been in (``queued-at``: created)."""

    queued_at: Timestamp | Omitted = None
    uploaded_at: Timestamp | Omitted = None
    errored_at: Timestamp | Omitted = None
    archived_at: Timestamp | Omitted = None


# Member for member what serialize() sends.
class ConfigurationVersionResponseAttributes(WireModel):
    """A configuration version. ``upload-url`` is a signed URL (no token needed) in the
    create response only, null elsewhere."""

    auto_queue_runs: bool
    error: str | None
    error_message: str | None
    source: str
    speculative: bool
    provisional: bool
    status: Literal["pending", "uploaded", "errored", "archived"]
    status_timestamps: StatusTimestamps
    upload_url: str | None


class ConfigurationVersionRelationships(WireModel):
    # Commit details of a version made from VCS; always null (no VCS yet).
    ingress_attributes: to_one("ingress-attributes")  # type: ignore[valid-type]


class ConfigurationVersionLinks(WireModel):
    self_: str = Field(alias="self")
    download: str


ConfigurationVersionDocument = single(
    "configuration-versions",
    ConfigurationVersionResponseAttributes,
    relationships=ConfigurationVersionRelationships,
    links=ConfigurationVersionLinks,
)
ConfigurationVersionList = listing(
    "configuration-versions",
    ConfigurationVersionResponseAttributes,
    relationships=ConfigurationVersionRelationships,
    links=ConfigurationVersionLinks,
)

# GET /configuration-versions/{id}/download: the tarball exactly as it was uploaded.
TARBALL_CONTENT = {
    "application/octet-stream": {
        "schema": {
            "type": "string",
            "format": "binary",
            "description": "The configuration as uploaded: a gzip-compressed tar archive",
        }
    }
}


def _timestamps(stored: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (stored or {}).items():
        if isinstance(value, str):
            out[name] = iso(datetime.fromisoformat(value)) or value
    return out


def serialize(cv: ConfigurationVersion, *, upload_url: str | None = None) -> Resource:
    failed = cv.error_message if cv.status == ERRORED else None
    attributes: dict[str, Any] = {
        "auto-queue-runs": cv.auto_queue_runs,
        "error": failed,
        "error-message": failed,
        "source": cv.source,
        "speculative": cv.speculative,
        "provisional": cv.provisional,
        "status": cv.status,
        "status-timestamps": _timestamps(cv.status_timestamps),
        "upload-url": upload_url,
    }
    return resource(
        "configuration-versions",
        cv.id,
        attributes,
        relationships={"ingress-attributes": {"data": None}},
        links={
            "self": f"/api/v2/configuration-versions/{cv.id}",
            "download": f"/api/v2/configuration-versions/{cv.id}/download",
        },
    )
