"""Prometheus metrics: counters and histograms only, never database writes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.agent_jobs_running = Gauge(
            "terrapod_agent_jobs_running",
            "Jobs the built-in agent is running now",
            registry=self.registry,
        )
        self.agent_job_duration = Histogram(
            "terrapod_agent_job_duration_seconds",
            "Time the built-in agent spent on a job, by phase and outcome",
            ["phase", "outcome"],
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=self.registry,
        )
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
