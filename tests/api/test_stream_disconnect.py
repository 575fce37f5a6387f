"""on_disconnect and cancel_on_disconnect: a client that goes away mid-stream, against a
real server (manage.py serve, or uvicorn with a Celery worker in production mode)."""

import time

import pytest

pytestmark = pytest.mark.system

SLOW = {
    "assistant_id": "pipeline",
    "input": {"steps": 12, "delay_s": 0.25},
    "stream_mode": "custom",
}


def final_status(http, location: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = http.get(location).json()["status"]
        if status not in ("pending", "running"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"{location} still {status}")


def leave_after_first_step(http, method: str, path: str, **kwargs) -> str:
    """Open the stream, read until the run's first step, go away; the run's location."""
    with http.stream(method, path, **kwargs) as response:
        assert response.status_code == 200
        location = response.headers.get("Content-Location")
        for line in response.iter_lines():
            if line.startswith("event: custom"):
                break
    return location


@pytest.mark.parametrize(
    "on_disconnect,status",
    [("cancel", "interrupted"), ("continue", "success"), (None, "success")],
    ids=["cancel", "continue", "default-continue"],
)
@pytest.mark.parametrize("stateless", [False, True], ids=["thread", "stateless"])
def test_a_client_leaving_a_stream_cancels_the_run_only_with_cancel(
    live_api, on_disconnect, status, stateless
):
    with live_api.client() as http:
        body = dict(SLOW) | ({"on_disconnect": on_disconnect} if on_disconnect else {})
        if stateless:
            path = "/runs/stream"
        else:
            path = f"/threads/{http.post('/threads', json={}).json()['thread_id']}/runs/stream"

        location = leave_after_first_step(http, "POST", path, json=body)

        assert final_status(http, location) == status
        if status == "success":  # it went on, and can be joined again
            joined = http.get(location + "/join").json()
            assert joined["completed_steps"] == list(range(1, 13))


@pytest.mark.parametrize("cancel,status", [("true", "interrupted"), ("false", "success")])
def test_leaving_a_joined_stream_cancels_with_cancel_on_disconnect(live_api, cancel, status):
    with live_api.client() as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        run = http.post(f"/threads/{thread}/runs", json=SLOW).json()
        location = f"/threads/{thread}/runs/{run['run_id']}"

        leave_after_first_step(
            http, "GET", location + "/stream", params={"cancel_on_disconnect": cancel}
        )

        assert final_status(http, location) == status


def test_leaving_a_wait_cancels_with_on_disconnect_cancel(live_api):
    with live_api.client() as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        body = dict(SLOW, on_disconnect="cancel")
        with http.stream("POST", f"/threads/{thread}/runs/wait", json=body) as response:
            location = response.headers["Content-Location"]
        # Gone before the run ended: it is cancelled.
        assert final_status(http, location) == "interrupted"
        assert http.get(f"/threads/{thread}").json()["status"] != "busy"
