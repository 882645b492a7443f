"""REDIS_URL to client: one server, a Redis Cluster, Sentinel; bad URLs named, never their
password."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.asyncio.connection import Connection
from redis.exceptions import ClusterDownError, DataError, MaxConnectionsError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.broker import BrokerUnavailable, Commit, Entry
from shared.context import dlq_keys
from shared.keys import Keys
from shared.models import Priority
from shared.redis_batch import is_busy
from shared.redis_broker import RedisBroker
from shared.redis_client import RedisUrlError, _HiredisPacking, _packing, connect
from tests.cluster import RedisCluster, SentinelSetup
from tests.helpers import eventually

SECRET = "hunter2-very-secret"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"memcached://u:{SECRET}@h:1", "unknown scheme"),
        (f"redis+cluster://u:{SECRET}@h:1,h:port", "host 2 has port 'port'"),
        (f"redis+cluster://u:{SECRET}@h:1,,h:2", "host 2 is empty"),
        (f"redis+sentinel://u:{SECRET}@h:26379", "name the Sentinel service"),
        (f"redis+sentinel://{SECRET}@h:99999/svc", "not a number from 1 to 65535"),
        (f"redis://u:{SECRET}@h:notaport/0", "u:<redacted>@h:notaport"),
    ],
)
def test_bad_url_names_the_problem_and_hides_the_password(url: str, problem: str) -> None:
    with pytest.raises(RedisUrlError) as caught:
        connect(url)
    assert problem in str(caught.value)
    assert SECRET not in str(caught.value)


# Arguments of every kind a command carries: text (also non-ASCII and empty), bytes, numbers.
ARGS = ["k", "ünïcode ✓", "", b"\x00\xffbytes", 0, -7, 12345678901234567890, 1.5, 0.1, 1e20]


def test_packing_is_redis_py_own() -> None:
    """The hiredis packer writes exactly the bytes redis-py's own packer does; what hiredis does
    not take goes through redis-py's, with its errors."""
    plain, packing = Connection(), _packing(Connection)()
    assert isinstance(packing, _HiredisPacking)
    for args in [
        ("SET", "k", "v"),
        ("EVALSHA", b"abc", 3, *ARGS, *ARGS),
        ("CONFIG GET", "maxmemory"),
        (b"CLIENT LIST",),
        ("SET", "k", "x" * 10_000),
        ("SET", "k", memoryview(b"mv")),
        ("SET", "k", bytearray(b"ba")),
        ("SET", "k", memoryview(b"abcdef")[::2]),  # hiredis alone would send "abc"
    ]:
        assert b"".join(map(bytes, packing.pack_command(*args))) == b"".join(
            map(bytes, plain.pack_command(*args))
        ), args
    for bad in (True, None, object()):
        with pytest.raises(DataError):
            packing.pack_command("SET", "k", bad)
    # text encoded otherwise than as strict UTF-8 (an encoding in the URL) is packed as asked
    latin, packing_latin = Connection(encoding="latin-1"), _packing(Connection)(encoding="latin-1")
    assert packing_latin.pack_command("SET", "k", "é") == latin.pack_command("SET", "k", "é")
    assert b"\xe9" in b"".join(packing_latin.pack_command("SET", "k", "é"))


def _connection_classes(client: redis.Redis) -> list[type]:
    """The classes of the connections ``client`` makes, on every node it knows."""
    if isinstance(client, ClusterClient):
        return [node.connection_class for node in client.get_nodes()]
    return [client.connection_pool.connection_class]


async def _round_trip(url: str, keys: Keys) -> None:
    client = connect(url)
    try:
        broker = RedisBroker(client, dlq_keys(keys))
        await broker.ping()
        await broker.commit(Commit(adds=[(keys.ingest, "m1", b"x", "")]))
        assert (await broker.depths([keys.ingest], []))[keys.ingest] == 1
        # a script call of 1,000 arguments comes back as sent, through the hiredis packer
        args = [ARGS[i % len(ARGS)] for i in range(1000)]
        echoed = await client.eval("return ARGV", 1, keys.ingest, *args)
        assert echoed == [str(a).encode() if not isinstance(a, bytes) else a for a in args]
        classes = _connection_classes(client)
        assert classes
        assert all(issubclass(c, _HiredisPacking) for c in classes), classes
    finally:
        await client.aclose()


async def test_one_server_url_reaches_the_server(redis_url: str, keys: Keys) -> None:
    await _round_trip(redis_url, keys)


async def test_cluster_url_reaches_the_cluster(redis_cluster: RedisCluster, keys: Keys) -> None:
    await _round_trip(redis_cluster.url, keys)


async def test_sentinel_url_reaches_the_primary(redis_sentinel: SentinelSetup, keys: Keys) -> None:
    await _round_trip(redis_sentinel.url, keys)


async def test_fresh_cluster_client_takes_many_calls_at_once(
    redis_cluster: RedisCluster, keys: Keys
) -> None:
    """Ten pollers starting at once on a new client: every call routed by its slot, none
    failing on a connection closed under it."""
    for attempt in range(30):
        client = connect(redis_cluster.url)
        fresh = Keys(f"{keys.namespace}-{attempt}")
        try:
            broker = RedisBroker(client, dlq_keys(fresh))
            calls = (broker.lease(fresh.poll_lease(bot), "me", 3000) for bot in range(10))
            assert await asyncio.gather(*calls) == [True] * 10
        finally:
            await client.aclose()


async def test_cluster_calls_wait_for_a_place_then_say_busy(
    redis_cluster: RedisCluster, keys: Keys
) -> None:
    """Past its size the cluster client's calls wait, as the one-server pool's do, and a call
    that waits too long is busy, never an outage."""
    client = connect(redis_cluster.url, max_connections=1, pool_wait=0.2)
    try:
        await client.ping()
        blocker = asyncio.create_task(client.blpop([keys.senders + ":nothing"], timeout=1))
        await asyncio.sleep(0.1)  # the only place waits in BLPOP
        with pytest.raises(MaxConnectionsError) as caught:
            await client.get(keys.senders)
        assert is_busy(caught.value)
        await blocker
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(keys.senders)
            assert await pipe.execute() == [None]
    finally:
        await client.aclose()


async def _cluster_state(port: int) -> str:
    client = redis.Redis(port=port, decode_responses=True)
    try:
        info: str = await client.execute_command("CLUSTER", "INFO")
    finally:
        await client.aclose()
    return info


async def test_cluster_down_is_an_outage(dead_sockets: None, keys: Keys) -> None:
    """While a slot has no primary (its primary and replica dead), every node of the cluster
    answers CLUSTERDOWN, also for the slots it serves: a broker call, a batched script call and
    a replicated commit then say the broker is unavailable, never fail as a bug (a sender had
    dead-lettered a message for a failover's CLUSTERDOWN, as a poison message)."""
    with RedisCluster() as cluster:
        client = connect(cluster.url)
        try:
            broker = RedisBroker(client, dlq_keys(keys))
            add = Commit(adds=[(keys.ingest, "m1", b"x", "")])
            await broker.commit(add)  # the client learns the slot map
            serving = cluster.owner(keys.ingest)
            victim = next(p for p in cluster.primaries() if p != serving)
            cluster.kill(cluster.replica_of(victim))
            cluster.kill(victim)
            while "cluster_state:fail" not in await _cluster_state(serving):
                await asyncio.sleep(0.1)
            entry = Entry(keys.send(Priority.HIGH), "1-1", b"p", seq=1)
            chat, parked = keys.order(1, 2, Priority.HIGH)
            calls = {
                "commit": lambda: broker.commit(add),
                "replicated commit": lambda: broker.commit(replace(add, replicated=True)),
                "gate": lambda: broker.gate(chat, parked, entry, "g", 1, keys.parked_count),
            }
            for name, call in calls.items():
                with pytest.raises(BrokerUnavailable):
                    await call()
                print(f"{name}: unavailable")
        finally:
            await client.aclose()


async def test_a_pipeline_follows_a_failover(dead_sockets: None) -> None:
    """The cluster client sends nothing twice by itself, so it must load the slot map anew
    after a failed pipeline as after a failed call: pipelines (the gate, the limiter's batches,
    replicated commits) to a slot whose primary was replaced went to the dead one for good."""
    with RedisCluster() as cluster:
        client = connect(cluster.url)
        key = "{fgprobe}:pipe"

        async def both() -> list[object]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(key, "1")
                pipe.get(key)
                return list(await pipe.execute())

        try:
            assert client.retry.get_retries() == 0  # a lost reply is the caller's to judge
            assert await both() == [True, b"1"]
            owner = cluster.owner(key)
            cluster.kill(owner)

            async def replaced() -> bool:
                return cluster.serving(key) not in (None, owner)

            await eventually(replaced, 20)
            answered = None
            for _ in range(50):  # the first calls may still meet the dead primary, not later
                try:
                    answered = await both()
                    break
                except (RedisConnectionError, RedisTimeoutError, ClusterDownError):
                    await asyncio.sleep(0.1)
            assert answered == [True, b"1"]
        finally:
            await client.aclose()
