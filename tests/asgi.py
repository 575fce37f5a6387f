"""An HTTP request sent straight to an ASGI application, as an ASGI server sends it."""

from asgiref.testing import ApplicationCommunicator


def http_scope(path: str, headers=(), method: str = "GET") -> dict:
    """The scope of an HTTP/1.1 request for ``path`` from 127.0.0.1 to 127.0.0.1:8000."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def http_get(application, path: str, headers=()) -> tuple[int, dict[str, str], bytes]:
    """``application``'s answer to a GET of ``path``: its status, headers (lower-case
    names) and whole body."""
    communicator = ApplicationCommunicator(application, http_scope(path, headers))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(timeout=10)
    body = b""
    while True:
        message = await communicator.receive_output(timeout=10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(timeout=10)
    headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, body
