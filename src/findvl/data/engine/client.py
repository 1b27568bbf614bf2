"""A minimal client for OpenAI-compatible ``/chat/completions`` servers (vLLM, llama.cpp, Ollama).

Only the standard library is used. One call is one HTTP request; retrying is the caller's job,
helped by :class:`RetryPolicy`, because a reply can also be rejected after it arrives (malformed
markup) and both kinds of failure share one retry budget.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

USER_AGENT = "findvl-data-engine"


class TransientRequestError(RuntimeError):
    """A failure worth retrying: timeout, connection error, HTTP 429 or 5xx."""


class RejectedRequestError(RuntimeError):
    """A failure not worth retrying: any other HTTP 4xx, or a reply without message content."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    Attributes:
        retries: how many times a failed attempt is repeated (``retries + 1`` attempts in all).
        base_delay_s: wait before the first retry; doubles with each further retry.
        max_delay_s: upper bound of one wait, before jitter.
    """

    retries: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"RetryPolicy: retries must be >= 0, got {self.retries}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("RetryPolicy: delays must be >= 0")

    def delay_s(self, retry_index: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry_index`` (0-based).

        ``min(max_delay, base * 2**retry_index)`` plus a jitter drawn uniformly from
        ``[0, base_delay_s)`` with ``rng`` (seed it for reproducible schedules).
        """
        delay = min(self.max_delay_s, self.base_delay_s * (2.0**retry_index))
        return delay + rng.uniform(0.0, self.base_delay_s)


class ChatClient:
    """Sends chat requests to ``{endpoint}/chat/completions``.

    Args:
        endpoint: base URL, e.g. ``http://127.0.0.1:8000/v1``.
        model: model name the server serves.
        timeout_s: per-request timeout (connect and read), seconds.
        temperature: sampling temperature sent with each request.
        api_key: sent as ``Authorization: Bearer ...`` when given.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        model: str,
        timeout_s: float = 120.0,
        temperature: float = 0.2,
        api_key: str | None = None,
    ) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"ChatClient: endpoint must be an http(s) URL, got {endpoint!r}")
        if timeout_s <= 0:
            raise ValueError(f"ChatClient: timeout_s must be > 0, got {timeout_s}")
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.temperature = temperature
        self._api_key = api_key

    def _request(self, messages: Sequence[dict[str, str]]) -> urllib.request.Request:
        body = {"model": self.model, "messages": list(messages), "temperature": self.temperature}
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body).encode("utf-8")
        return urllib.request.Request(self.url, data=data, headers=headers, method="POST")

    def complete(self, messages: Sequence[dict[str, str]]) -> str:
        """Send one request and return ``choices[0].message.content``.

        Raises:
            TransientRequestError: timeout, connection failure, HTTP 429 or 5xx, or a body that
                is not JSON (a proxy's error page).
            RejectedRequestError: another HTTP 4xx, or JSON without message content.
        """
        deadline = _Deadline(self.timeout_s)
        with deadline:
            raw = self._send(messages, deadline)
        if deadline.expired:
            raise TransientRequestError(
                f"timeout: no complete reply within {self.timeout_s}s from {self.url}"
            )
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise TransientRequestError(f"reply from {self.url} is not JSON: {error}") from error
        return _message_content(payload, url=self.url)

    def _send(self, messages: Sequence[dict[str, str]], deadline: _Deadline) -> bytes:
        opener = urllib.request.build_opener(_DeadlineHTTP(deadline), _DeadlineHTTPS(deadline))
        try:
            with opener.open(self._request(messages), timeout=self.timeout_s) as resp:
                return _read_limited(resp, self.url)
        except urllib.error.HTTPError as error:
            try:
                detail = error.read()[:300].decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                detail = ""
            message = f"HTTP {error.code} from {self.url}: {detail}"
            if error.code == 429 or error.code >= 500:
                raise TransientRequestError(message) from error
            raise RejectedRequestError(message) from error
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as error:
            # http.client.IncompleteRead (a reply cut short) is an HTTPException
            if deadline.expired or isinstance(error, TimeoutError):
                raise TransientRequestError(
                    f"timeout: no complete reply within {self.timeout_s}s from {self.url}"
                ) from error
            raise TransientRequestError(f"connection error to {self.url}: {error}") from error


#: Largest reply body read (bytes); a longer one is a failed request.
MAX_REPLY_BYTES = 16 << 20


def _read_limited(resp, url: str) -> bytes:
    data = resp.read(MAX_REPLY_BYTES + 1)
    if len(data) > MAX_REPLY_BYTES:
        raise RejectedRequestError(f"reply from {url} is larger than {MAX_REPLY_BYTES} bytes")
    missing = getattr(resp, "length", None)
    if missing:  # the server closed before sending its Content-Length
        raise http.client.IncompleteRead(data, missing)
    return data


class _Deadline:
    """Bounds a whole request: when ``seconds`` pass, the sockets opened for it are shut down,
    so a server that sends its reply one byte at a time cannot keep the request alive (the
    socket timeout alone bounds only each single read)."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _connection_class(base: type, deadline: _Deadline) -> type:
    class DeadlineConnection(base):
        def connect(self) -> None:
            super().connect()
            deadline.add(self.sock)

    return DeadlineConnection


class _DeadlineHTTP(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._conn = _connection_class(http.client.HTTPConnection, deadline)

    def http_open(self, req):
        return self.do_open(self._conn, req)


class _DeadlineHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._conn = _connection_class(http.client.HTTPSConnection, deadline)

    def https_open(self, req):
        return self.do_open(self._conn, req, context=self._context)


def _message_content(payload: object, *, url: str) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError) as error:
        raise RejectedRequestError(f"reply from {url} has no choices[0].message.content") from error
    if not isinstance(content, str):
        raise RejectedRequestError(f"reply from {url}: message content is not a string")
    return content
