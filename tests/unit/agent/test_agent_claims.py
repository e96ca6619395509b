"""The agent's claim keys on ``runs/next`` (docs/dev/agents.md, "Claim keys"), against the
fake server (tests/unit/agent/fakeserver.py): every retry of one poll carries the poll's key,
so an answer lost after the claim is given again; the next poll has a key of its own. The
server's side is tests/api/test_listener_claims.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from terrapod.agent.http import Backoff, ListenerClient, token_joiner
from tests.unit.agent.fakeserver import AGENT_TOKEN, FakeServer

FAST = Backoff(initial_seconds=0.001, cap_seconds=0.01)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def listener(server: FakeServer) -> AsyncIterator[ListenerClient]:
    async with server.client() as http:
        client = ListenerClient(
            http,
            token_joiner(http, AGENT_TOKEN, name="host-1", capacity=1, backoff=FAST),
            backoff=FAST,
        )
        await client.join()
        yield client


async def test_a_lost_answer_is_claimed_again_by_the_retry_with_the_same_key(
    server: FakeServer, listener: ListenerClient
) -> None:
    first, second = server.queue_job(), server.queue_job()
    server.unreachable = 1
    server.unavailable = 1
    server.lose_answers = 2
    ticket = await listener.next_job(wait=0)
    assert ticket is not None
    assert ticket.job_id == first.job_id
    assert ticket.run_token == first.run_token  # the token of the answer that arrived
    assert second.status == "queued"  # the retries claimed nothing else
    keys = {key for key, _ in server.polls}
    assert len(keys) == 1
    (key,) = keys
    assert key is not None and re.fullmatch(r"[A-Za-z0-9_-]{22,64}", key)
    assert [attempt for _, attempt in server.polls] == ["0", "1", "2", "3", "4"]
    # the job works with the ticket the agent got
    assert await listener.job(ticket).heartbeat(wait=0) is None


async def test_each_answered_poll_is_followed_by_a_new_key(
    server: FakeServer, listener: ListenerClient
) -> None:
    assert await listener.next_job(wait=0) is None  # 204
    server.queue_job()
    assert await listener.next_job(wait=0) is not None  # 200
    assert await listener.next_job(wait=0) is None
    keys = [key for key, _ in server.polls]
    assert len(set(keys)) == 3
    assert [attempt for _, attempt in server.polls] == ["0", "0", "0"]


async def test_a_poll_repeated_after_joining_again_keeps_its_key(
    server: FakeServer, listener: ListenerClient
) -> None:
    server.queue_job()
    server.expire_credentials()  # 401, join again, repeat the poll
    assert await listener.next_job(wait=0) is not None
    assert server.joins == 2
    assert len({key for key, _ in server.polls}) == 1
    assert [attempt for _, attempt in server.polls] == ["0", "1"]
