"""Sending task requests to task services, off the request path (HCP Terraform's "Run Tasks
Integration": the request payload, version 1).

The worker runs in every server process. It is woken by the ``runtasks`` bus topic once a
stage has started (published after that transaction commits) and sweeps every
``runtasks.sweep_seconds`` anyway, so a lost wake-up only delays a request. Each sweep:

1. claims the pending results of running stages, one conditional UPDATE each (two processes
   never send the same request), giving each a fresh access token whose hash is stored;
2. POSTs each request, outside any transaction, signed with ``X-TFC-Task-Signature`` (hex
   HMAC-SHA512 of the body with the task's key) when the task has a key, through
   :mod:`terrapod.outbound`: the task's host is resolved again, a private, loopback,
   link-local or reserved address is refused (never connected to) unless
   ``runtasks.allow_private_addresses`` is set, and the request goes to the address checked;
   a request that is refused, cannot be delivered, or is answered with anything but 2xx,
   errors its result;
3. errors results whose service has not called back by their deadline
   (``runtasks.callback_timeout_seconds`` after the request).

An errored or failed result may settle its stage, which moves the run on or ends it
(:func:`terrapod.runtasks.service.settle_stage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from datetime import timedelta

import orjson
from cryptography.exceptions import InvalidTag
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from terrapod import __version__, outbound
from terrapod.config import Settings
from terrapod.configversions.models import ConfigurationVersion
from terrapod.crypto import SecretBox
from terrapod.db.transactions import write_transaction
from terrapod.observability.logging import get_logger
from terrapod.runs import queue as run_queue
from terrapod.runtasks import service
from terrapod.runtasks.models import (
    POST_PLAN,
    PRE_APPLY,
    RESULT_ERRORED,
    RunTask,
    TaskResult,
    TaskStage,
)
from terrapod.storage import keys
from terrapod.storage.signing import UrlSigner
from terrapod.timefmt import iso
from terrapod.users.models import User

log = get_logger("terrapod.runtasks")

SIGNATURE_HEADER = "X-TFC-Task-Signature"
PAYLOAD_VERSION = 1


def signature(key: bytes, body: bytes) -> str:
    """The value of ``X-TFC-Task-Signature``: hex HMAC-SHA512 of the exact body bytes."""
    return hmac.new(key, body, hashlib.sha512).hexdigest()


class TaskDeliveries:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: SecretBox,
        signer: UrlSigner,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._box = box
        self._signer = signer
        self._settings = settings
        self._wake = asyncio.Event()
        self._busy = asyncio.Lock()

    @property
    def base_url(self) -> str:
        """Where task services reach this server (callback and download URLs)."""
        s = self._settings
        return s.runtasks.callback_base_url or s.external_url or f"http://{s.host}:{s.port}"

    def wake(self, _payload: object = None) -> None:
        """Bus subscriber: a stage started; send its requests now."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("run task sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self._settings.runtasks.sweep_seconds
                )
            self._wake.clear()

    async def sweep(self) -> None:
        """Send every pending request, then error the overdue results (one sweep at a time
        in this process; other processes are kept apart by the claims)."""
        async with self._busy:
            while await self._deliver_some():
                pass
            await self._time_out()

    @property
    def _overridable(self) -> bool:
        return self._settings.runtasks.mandatory_failures_overridable

    async def _deliver_some(self) -> bool:
        rt = self._settings.runtasks
        now = service.utcnow()
        deadline = now + timedelta(seconds=rt.request_timeout_seconds + rt.callback_timeout_seconds)
        failed: list[tuple[str, str]] = []
        deliveries: list[service.Delivery] = []
        async with write_transaction(self._sessionmaker) as session:
            claimed = await service.claim_deliveries(session, deadline)
            for result, stage, task, token in claimed:
                try:
                    deliveries.append(await self._prepare(session, result, stage, task, token))
                except _Undeliverable as exc:
                    failed.append((result.id, str(exc)))
        sent = await asyncio.gather(*(self._send(d) for d in deliveries))
        failed.extend((d.result_id, err) for d, err in zip(deliveries, sent, strict=True) if err)
        for result_id, message in failed:
            async with write_transaction(self._sessionmaker) as session:
                await service.end_result(
                    session, result_id, RESULT_ERRORED, message, overridable=self._overridable
                )
        return bool(claimed)

    async def _time_out(self) -> None:
        seconds = self._settings.runtasks.callback_timeout_seconds
        async with self._sessionmaker() as session:
            overdue = await service.overdue_results(session, service.utcnow())
        for result_id in overdue:
            async with write_transaction(self._sessionmaker) as session:
                await service.end_result(
                    session,
                    result_id,
                    RESULT_ERRORED,
                    f"the task service did not report a result within {seconds:g} seconds",
                    overridable=self._overridable,
                )

    async def _prepare(
        self,
        session: AsyncSession,
        result: TaskResult,
        stage: TaskStage,
        task: RunTask | None,
        token: str,
    ) -> service.Delivery:
        if task is None:
            raise _Undeliverable(f"run task {result.task_name} was deleted")
        if not task.enabled:
            raise _Undeliverable(f"run task {task.name} is disabled")
        try:
            key = service.hmac_key_of(self._box, task)
        except (InvalidTag, ValueError):
            raise _Undeliverable(
                f"the HMAC key of run task {task.name} cannot be decrypted: the server's secret "
                "key changed since it was set (set the task's hmac-key again)"
            ) from None
        ctx = await run_queue.load(session, stage.run_id)
        run, ws, org = ctx.run, ctx.workspace, ctx.organization
        user = await session.get(User, run.created_by_id) if run.created_by_id else None
        cv = (
            await session.get(ConfigurationVersion, run.configuration_version_id)
            if run.configuration_version_id
            else None
        )
        base = self.base_url
        payload: dict[str, object] = {
            "payload_version": PAYLOAD_VERSION,
            "stage": stage.stage,
            "access_token": token,
            "capabilities": {"outcomes": True},
            "configuration_version_download_url": (
                base + self._signer.signed_path(keys.configuration_version(cv.id), "GET")
                if cv is not None
                else None
            ),
            "configuration_version_id": cv.id if cv is not None else None,
            "is_speculative": run.plan_only,
            "organization_name": org.name,
            "plan_json_api_url": (
                base + self._signer.signed_path(keys.plan_json(run.id), "GET")
                if stage.stage in (POST_PLAN, PRE_APPLY)
                else None
            ),
            "run_app_url": f"{base}/app/{org.name}/{ws.name}/runs/{run.id}",
            "run_created_at": iso(run.created_at),
            "run_created_by": user.username if user is not None else "",
            "run_id": run.id,
            "run_message": run.message,
            "task_result_callback_url": f"{base}/api/v2/task-results/{result.id}/callback",
            "task_result_enforcement_level": result.enforcement_level,
            "task_result_id": result.id,
            "vcs_branch": None,
            "vcs_commit_url": None,
            "vcs_pull_request_url": None,
            "vcs_repo_url": None,
            "workspace_app_url": f"{base}/app/{org.name}/{ws.name}",
            "workspace_id": ws.id,
            "workspace_name": ws.name,
            "workspace_working_directory": ws.working_directory or "",
        }
        return service.Delivery(result.id, task.url, orjson.dumps(payload), key)

    async def _send(self, delivery: service.Delivery) -> str | None:
        """POST one request; None when the service accepted it, else why it failed."""
        headers = {"Content-Type": "application/json", "User-Agent": f"Terrapod/{__version__}"}
        if delivery.hmac_key is not None:
            headers[SIGNATURE_HEADER] = signature(delivery.hmac_key, delivery.body)
        rt = self._settings.runtasks
        outcome = await outbound.post(
            delivery.url,
            delivery.body,
            headers,
            allow_private=rt.allow_private_addresses,
            allowed_by=service.ALLOWED_BY,
            timeout_seconds=rt.request_timeout_seconds,
        )
        if outcome.code is None:
            # outbound.post says "not sent: ..." when it refused the URL without connecting.
            if outcome.body.startswith("not sent: "):
                reason = outcome.body.removeprefix("not sent: ")
                return f"the task request to {delivery.url} was not sent: {reason}"
            reason = outcome.body.removeprefix("could not deliver: ")
            return f"could not deliver the task request to {delivery.url}: {reason}"
        if not outcome.successful:
            return f"the task service at {delivery.url} refused the request (HTTP {outcome.code})"
        return None


class _Undeliverable(Exception):
    """A request that cannot be made; its result is errored with this message."""
