"""schemathesis against the API's OpenAPI schema on a real server: no 5xx, and every answer
conforms to what its route declares (its content type, and its JSON to the schema of its
status: every route declares its answers, tests/api/test_openapi.py).

Routes that wait for a run to finish (wait, stream, join) are left out of the fuzzing:
generated inputs would start arbitrarily long runs; the SDK end-to-end tests cover them.
"""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.app import api as ninja_api

pytestmark = pytest.mark.system


def test_fuzzing_the_api_finds_no_server_error_or_schema_violation(live_api, tmp_path):
    schema_file = tmp_path / "openapi.json"
    schema_file.write_text(json.dumps(ninja_api.get_openapi_schema()))
    with httpx.Client(base_url=live_api.api, headers={"X-Api-Key": live_api.keys["alice"]}) as c:
        thread = c.post("/threads", json={"metadata": {"graph_id": "pipeline"}}).json()
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[parameters]\n"
        f'thread_id = "{thread["thread_id"]}"\n'
        f'session_id = "{thread["metadata"]["session_id"]}"\n'
        'assistant_id = "pipeline"\n'
    )

    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(config),
            "run",
            str(schema_file),
            "--url",
            live_api.url,
            "-H",
            f"X-Api-Key:{live_api.keys['alice']}",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "25",
            "--exclude-path-regex",
            "(wait|stream|join)$",
            "--request-timeout",
            "30",
            "--seed",
            "20261124",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert result.returncode == 0, result.stdout[-6000:]
    assert "passed" in result.stdout
