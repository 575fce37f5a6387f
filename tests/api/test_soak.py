"""Random concurrent traffic against the real server: what races would break.

Several clients at once create, run, wait on, stream, cancel (both actions), preempt
(every multitask strategy), update, copy and delete threads. Every answer must be a
success or a 4xx naming the problem, never a version conflict (no request here sends a
version, so one means the server's own writes raced); when the traffic stops, every run
must end and no thread may stay busy. A cancel racing a worker's claim was caught so.
"""

import asyncio
import random
import time

import httpx
import pytest

pytestmark = pytest.mark.system

ACTORS = 6
SECONDS = 12.0
OPERATIONS = (
    *("run", "run", "wait", "stream", "strategy", "cancel", "join"),
    *("state", "update", "copy", "history", "delete"),
)


class Soak:
    def __init__(self, client: httpx.AsyncClient, seed: int):
        self.client = client
        self.random = random.Random(seed)
        self.threads: list[str] = []
        self.failures: list[str] = []
        self.answers: dict[str, set[int]] = {}

    def seen(self, op: str, response: httpx.Response) -> httpx.Response:
        self.answers.setdefault(op, set()).add(response.status_code)
        if response.status_code >= 500:
            self.failures.append(f"{op}: {response.status_code} {response.text[:300]}")
        if response.status_code == 409 and "changed concurrently" in response.text:
            # No request here sends a version: the server's own writes raced each other.
            self.failures.append(f"{op}: {response.text[:300]}")
        return response

    async def step(self) -> None:
        rnd, client = self.random, self.client
        if not self.threads or rnd.random() < 0.12:
            response = self.seen("create", await client.post("/threads", json={}))
            if response.status_code == 200:
                self.threads.append(response.json()["thread_id"])
            return
        thread = rnd.choice(self.threads)
        base = f"/threads/{thread}"
        pipeline = {"assistant_id": "pipeline", "input": {"steps": rnd.randint(1, 6)}}
        pipeline["input"]["delay_s"] = 0.03
        op = rnd.choice(OPERATIONS)
        if op == "run":
            self.seen(op, await client.post(f"{base}/runs", json=pipeline))
        elif op == "wait":
            self.seen(op, await client.post(f"{base}/runs/wait", json=pipeline))
        elif op == "stream":
            body = pipeline | {"stream_mode": ["values", "custom"]}
            async with client.stream("POST", f"{base}/runs/stream", json=body) as response:
                async for _ in response.aiter_lines():
                    pass
            self.seen(op, response)
        elif op == "strategy":
            strategy = rnd.choice(["interrupt", "rollback", "reject", "enqueue"])
            body = pipeline | {"multitask_strategy": strategy}
            self.seen(f"{op}:{strategy}", await client.post(f"{base}/runs", json=body))
        elif op in ("cancel", "join"):
            runs = self.seen("list", await client.get(f"{base}/runs"))
            if runs.status_code != 200 or not runs.json():
                return
            run = f"{base}/runs/{rnd.choice(runs.json())['run_id']}"
            if op == "join":
                self.seen(op, await client.get(f"{run}/join"))
            else:
                params = {
                    "action": rnd.choice(["interrupt", "rollback"]),
                    "wait": rnd.choice([0, 1]),
                }
                self.seen(op, await client.post(f"{run}/cancel", params=params))
        elif op == "state":
            self.seen(op, await client.get(f"{base}/state"))
        elif op == "update":
            body = {"values": {"steps": 2}, "as_node": "step"}
            self.seen(op, await client.post(f"{base}/state", json=body))
        elif op == "copy":
            response = self.seen(op, await client.post(f"{base}/copy"))
            if response.status_code == 200:
                self.threads.append(response.json()["thread_id"])
        elif op == "history":
            self.seen(op, await client.post(f"{base}/history", json={"limit": 5}))
        elif op == "delete" and rnd.random() < 0.3:  # threads live a while
            response = self.seen(op, await client.delete(base))
            if response.status_code == 204:
                self.threads.remove(thread)

    async def run_until(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                await self.step()
            except httpx.HTTPError as exc:
                self.failures.append(f"transport: {exc!r}")


async def _active_runs(client: httpx.AsyncClient, threads: list[str]) -> list[tuple[str, str]]:
    active = []
    for thread in threads:
        response = await client.get(f"/threads/{thread}/runs", params={"limit": 100})
        if response.status_code == 404:
            continue  # deleted by another actor of the soak
        active += [
            (thread, r["status"]) for r in response.json() if r["status"] in ("pending", "running")
        ]
    return active


async def test_random_concurrent_traffic_gets_no_5xx_and_leaves_no_run_behind(live_api):
    headers = {"X-Api-Key": live_api.keys["alice"]}
    async with httpx.AsyncClient(base_url=live_api.api, headers=headers, timeout=60) as client:
        soaks = [Soak(client, seed) for seed in range(ACTORS)]
        deadline = time.monotonic() + SECONDS
        await asyncio.gather(*(soak.run_until(deadline) for soak in soaks))

        threads = [thread for soak in soaks for thread in soak.threads]
        settle = time.monotonic() + 90
        while (active := await _active_runs(client, threads)) and time.monotonic() < settle:
            await asyncio.sleep(0.5)
        busy = []
        for thread in threads:
            response = await client.get(f"/threads/{thread}")
            if response.status_code == 200 and response.json()["status"] == "busy":
                busy.append(thread)

    failures = [failure for soak in soaks for failure in soak.failures]
    answers = {}
    for soak in soaks:
        for op, codes in soak.answers.items():
            answers.setdefault(op, set()).update(codes)
    assert failures == [], failures[:10]
    assert active == [], f"runs that never ended: {active[:10]}"
    assert busy == [], f"threads left busy: {busy[:10]}"
    # The traffic did what it is for: runs ran, cancels and preemptions happened.
    assert 200 in answers["run"] and 200 in answers["wait"] and 200 in answers["stream"]
    assert answers.get("cancel") and any(op.startswith("strategy:") for op in answers)
