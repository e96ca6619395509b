"""A claimed job as the agent holds it: the spec, the run token and the signed URLs.

``runs/next`` answers with one (docs/dev/agents.md); the Kubernetes executor hands it to the
pod it launches, through a Secret, as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from terrapod.runner.spec import JobSpec
from terrapod.runner.wire import WireError, spec_from_dict, spec_to_dict

URL_NAMES = (
    "configuration",
    "state",
    "plan_file",
    "plan_file_upload",
    "plan_json_upload",
    "plan_json_redacted_upload",
)


@dataclass(frozen=True)
class JobTicket:
    job_id: str
    run_id: str
    phase: str
    spec: JobSpec
    run_token: str = field(repr=False)
    run_token_expires_at: str | None
    urls: dict[str, str | None]
    base_url: str
    """The server's address as the agent reaches it (``https://terrapod.example.com``)."""
    agent_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "run_id": self.run_id,
            "phase": self.phase,
            "spec": spec_to_dict(self.spec),
            "run_token": self.run_token,
            "run_token_expires_at": self.run_token_expires_at,
            "urls": dict(self.urls),
            "base_url": self.base_url,
            "agent_id": self.agent_id,
        }

    @classmethod
    def from_dict(
        cls, data: object, *, base_url: str | None = None, agent_id: str | None = None
    ) -> JobTicket:
        """A ticket from a ``runs/next`` answer (give ``base_url`` and ``agent_id``) or from
        :meth:`to_dict`'s output."""
        if not isinstance(data, dict):
            raise WireError("job must be an object")
        for name in ("job_id", "run_id", "phase", "run_token"):
            if not isinstance(data.get(name), str):
                raise WireError(f"job.{name} must be a string")
        urls = data.get("urls") or {}
        if not isinstance(urls, dict):
            raise WireError("job.urls must be an object")
        base = base_url or data.get("base_url")
        agent = agent_id or data.get("agent_id")
        if not isinstance(base, str) or not isinstance(agent, str):
            raise WireError("job.base_url and job.agent_id must be strings")
        expires = data.get("run_token_expires_at")
        return cls(
            job_id=data["job_id"],
            run_id=data["run_id"],
            phase=data["phase"],
            spec=spec_from_dict(data.get("spec")),
            run_token=data["run_token"],
            run_token_expires_at=expires if isinstance(expires, str) else None,
            urls={name: _url(urls.get(name), name) for name in URL_NAMES},
            base_url=base,
            agent_id=agent,
        )


def _url(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise WireError(f"job.urls.{name} must be a string or null")
