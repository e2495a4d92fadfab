"""Body limits enforced on the bytes actually received, chunked or not.

A declared `Content-Length` over the cap is refused before a byte is read. Otherwise the body
is read here, chunk by chunk, and reading stops at the first chunk that takes it past the cap:
a 64 MiB chunked upload costs us at most `cap` bytes of memory, never the whole stream. The
app then reads the buffered body as usual (`replay`), so nothing downstream changes.
"""

from __future__ import annotations

from starlette.types import Message, Receive, Scope

from serving.errors import BadRequest, TooLarge


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is nobody to answer."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise BadRequest("Content-Length is not a number") from None
    return None


def has_body(scope: Scope) -> bool:
    """Only calls announcing a body (a length, or chunked transfer) are read here."""
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered == b"content-length":
            return bool(value != b"0")
        if lowered == b"transfer-encoding":
            return True
    return False


async def read_capped(scope: Scope, receive: Receive, cap: int) -> bytes:
    """The whole body, or `TooLarge` as soon as more than `cap` bytes are declared or received."""
    declared = _declared_length(scope)
    if declared is not None and declared > cap:
        raise TooLarge(f"the body is {declared} bytes; the cap is {cap}")
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > cap:
            raise TooLarge(f"the body exceeds the cap of {cap} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields the buffered body once, then waits on the real one (disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
