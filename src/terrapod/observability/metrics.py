"""Prometheus metrics: counters and histograms only, never database writes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "terrapod_http_requests_total",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "terrapod_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "terrapod_http_requests_in_flight", "Requests being served", registry=self.registry
        )
        self.build_info = Gauge(
            "terrapod_build_info", "Terrapod version", ["version"], registry=self.registry
        )
        self.run_status_changes = Counter(
            "terrapod_run_status_changes_total",
            "Runs entering each status (final statuses count finished runs)",
            ["status"],
            registry=self.registry,
        )
        # The built-in agent's (a `terrapod agent` process has its own registry, cli.py).
        self.agent = AgentMetrics(self.registry)
        # Per agent pool ("builtin": the servers' built-in agents), refreshed from the
        # database every few seconds by a background task (terrapod.app), never on a scrape.
        pool_labels = ["pool", "pool_name", "organization"]
        self.pool_agents_online = Gauge(
            "terrapod_agent_pool_agents_online",
            "Agents of the pool heard of within the heartbeat timeout",
            pool_labels,
            registry=self.registry,
        )
        self.pool_capacity = Gauge(
            "terrapod_agent_pool_capacity",
            "Jobs the pool's online agents take at once",
            pool_labels,
            registry=self.registry,
        )
        self.pool_jobs_active = Gauge(
            "terrapod_agent_pool_jobs_active",
            "Jobs of the pool being run now",
            pool_labels,
            registry=self.registry,
        )
        self.pool_jobs_queued = Gauge(
            "terrapod_agent_pool_jobs_queued",
            "Jobs of the pool waiting for an agent",
            pool_labels,
            registry=self.registry,
        )

    def set_pool_gauges(self, rows: Iterable[PoolNumbers]) -> None:
        """Replace every pool gauge (a deleted pool's series disappear)."""
        gauges = (
            self.pool_agents_online,
            self.pool_capacity,
            self.pool_jobs_active,
            self.pool_jobs_queued,
        )
        for gauge in gauges:
            gauge.clear()
        for row in rows:
            labels = (row.pool, row.name, row.organization)
            self.pool_agents_online.labels(*labels).set(row.agents_online)
            self.pool_capacity.labels(*labels).set(row.capacity)
            self.pool_jobs_active.labels(*labels).set(row.active_jobs)
            self.pool_jobs_queued.labels(*labels).set(row.queued_jobs)


class AgentMetrics:
    """One agent's metrics (docs/usage/agents.md, "Metrics"), updated by
    :class:`terrapod.agent.loop.Agent` and its HTTP client's retries. The built-in agent's go on
    the server's registry (its /metrics); a ``terrapod agent`` process serves a registry of its
    own (``--metrics-port``). Counters and gauges only: nothing here costs a job any time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs_running = Gauge(
            "terrapod_agent_jobs_running", "Jobs the agent is running now", registry=registry
        )
        self.job_duration = Histogram(
            "terrapod_agent_job_duration_seconds",
            "Time the agent spent on a job, by phase and outcome",
            ["phase", "outcome"],
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=registry,
        )
        self.capacity = Gauge(
            "terrapod_agent_capacity", "Jobs the agent runs at once at most", registry=registry
        )
        self.jobs_claimed = Counter(
            "terrapod_agent_jobs_claimed",
            "Jobs the agent claimed, by phase",
            ["phase"],
            registry=registry,
        )
        self.jobs_reported = Counter(
            "terrapod_agent_jobs_reported",
            "Job ends the agent reported, by outcome (handed_back included; "
            "reported_by_job: the job reported itself, e.g. a Kubernetes pod)",
            ["outcome"],
            registry=registry,
        )
        self.server_calls_failed = Counter(
            "terrapod_agent_server_calls_failed",
            "Calls to the server that failed for good (refused or unreadable answers): "
            "listener (join, heartbeat, renew, claim) or job (reporting a job's end)",
            ["kind"],
            registry=registry,
        )
        self.server_retries = Counter(
            "terrapod_agent_server_retries",
            "Calls to the server retried because it was unreachable or answered 5xx or 429, "
            "by kind: listener (join, heartbeat, renew, claim) or job (the job routes and files)",
            ["kind"],
            registry=registry,
        )
        self.last_heartbeat = Gauge(
            "terrapod_agent_last_heartbeat_timestamp_seconds",
            "When the server last answered the agent's listener heartbeat (or its join)",
            registry=registry,
        )
        self.credential_expiry = Gauge(
            "terrapod_agent_credential_expiry_timestamp_seconds",
            "When the agent's current credential expires (0 before it joined)",
            registry=registry,
        )
        self.info = Info(
            "terrapod_agent",
            "The agent, once joined: its agent id, its pool id (builtin: a server's built-in "
            "agent) and Terrapod's version",
            registry=registry,
        )
        for kind in ("listener", "job"):  # the series exist from the start, at 0
            self.server_calls_failed.labels(kind)
            self.server_retries.labels(kind)


class PoolNumbers(Protocol):
    """One pool's numbers (terrapod.agentpools.service.PoolGauge has this shape)."""

    @property
    def pool(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def organization(self) -> str: ...
    @property
    def agents_online(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def active_jobs(self) -> int: ...
    @property
    def queued_jobs(self) -> int: ...
