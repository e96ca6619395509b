"""Prometheus metrics: counters and histograms only, never database writes."""

from __future__ import annotations

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
