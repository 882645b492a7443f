"""How fast Redis is right now, as a yardstick for the pipeline's Redis cost: a fixed, canned
workload of the kinds of work floodgate gives Redis (a script call per 50 "messages", each
writing a 4-field hash with its expiry, bumping a counter, appending to a stream and logging to
a small sorted set with its expiry), timed by Redis's own CPU (INFO cpu). It never changes
with floodgate's code, so the pipeline's Redis CPU per message divided by it is meant to follow
the code more than the machine, whose speed here drifts by a quarter and more within the hour
(bench/pipeline_throughput.py runs it on the same Redis right after the pipeline). It does so
only in part: it is Lua and data commands, and the pipeline's Redis also spends on its sockets,
which the machine's load moves differently (README, "A Redis yardstick"); judge a change by
pairs of runs taken in turns.

    .venv/bin/python bench/redis_yardstick.py --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets

import redis.asyncio as redis

PER_CALL = 50
CALLS_IN_FLIGHT = 8
# One "message": what every accepted message costs Redis at the least, written once
SCRIPT = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local rec = KEYS[1] .. ':r:' .. ARGV[1 + i]
  redis.call('HSET', rec, 'priority', 'normal', 'bot_id', '7000', 'chat_id', ARGV[1 + i],
    'accepted_at', '1796662028.555667')
  redis.call('EXPIRE', rec, 3600)
  local seq = redis.call('HINCRBY', KEYS[1] .. ':c:' .. ARGV[1 + i], 'seq', 1)
  redis.call('XADD', KEYS[1] .. ':s', '*', 'd', ARGV[2 + n], 's', seq)
  local log = KEYS[1] .. ':l:' .. (i % 50)
  redis.call('ZADD', log, 1796662028555 + i, ARGV[1 + i])
  redis.call('PEXPIRE', log, 5000)
end
return n
"""


async def _cpu_s(client: redis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(url: str, messages: int = 20_000) -> float:
    """µs of Redis's CPU per canned message (best of three rounds, so a burst of other work on
    the machine counts less)."""
    client = redis.Redis.from_url(url)
    prefix = f"yardstick{secrets.token_hex(4)}"
    payload = "x" * 250
    try:
        script = client.register_script(SCRIPT)
        best = float("inf")
        for round_ in range(3):
            calls = [
                [str(PER_CALL), *(f"{round_}-{k + i}" for i in range(PER_CALL)), payload]
                for k in range(0, messages, PER_CALL)
            ]
            await script(keys=[prefix], args=calls[0])  # loaded before the clock starts
            before = await _cpu_s(client)
            for start in range(0, len(calls), CALLS_IN_FLIGHT):
                await asyncio.gather(
                    *(
                        script(keys=[prefix], args=call)
                        for call in calls[start : start + CALLS_IN_FLIGHT]
                    )
                )
            after = await _cpu_s(client)
            best = min(best, (after - before) * 1e6 / (len(calls) * PER_CALL))
        return round(best, 2)
    finally:
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.unlink(key)
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    us = asyncio.run(measure(args.redis_url, args.messages))
    if args.json:
        print(json.dumps({"redis_yardstick_us_per_message": us}))
    else:
        print(f"redis yardstick: {us:.2f} µs of Redis CPU per canned message")


if __name__ == "__main__":
    main()
