"""The BentoML 1.4 real-time endpoint: a thin shell around the scoring core.

``bentoml serve serving.service:LeadScoringService`` (or ``leadscore serve``). Settings come from
the environment once, at start-up (see :meth:`serving.loader.ServingSettings.from_env`).

Routes: ``POST /score`` (BentoML API, pydantic IO), ``GET /model`` and ``POST /reload`` (mounted
FastAPI app), and BentoML's ``/livez``, ``/readyz`` (ready only once a model is loaded, via
``__is_ready__``) and ``/metrics``. With API keys configured, ``/score``, ``/model`` and
``/reload`` need ``Authorization: Bearer <key>`` (checked before a body is read). Lead attributes are
never logged at INFO.

Latency: ``/score`` is a coroutine. Small requests (up to ``INLINE_LEADS`` leads and
``INLINE_EVENTS`` events, the real-time case) are checked and scored right on the event loop: the
work is a few hundred microseconds of GIL-bound Python and numpy, and a hand-off to a worker thread
would add two thread wake-ups (each one a scheduling delay on a busy machine) and GIL contention
with the loop. Larger requests go to a small thread pool, where their answers are also written to JSON
(the bytes BentoML would write on the loop), so that they do not stall the loop (health checks, other
callers); so does the parsing and validation of a body over ``INLINE_BODY_BYTES``
(:class:`ScoreRequestIODescriptor`; BentoML would run it on the loop before the handler). One worker
process scores on one core; ``leadscore serve --workers N`` runs N processes.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import hashlib
import hmac
import json
import logging
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import anyio
import bentoml
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from features.build import features_from_payloads
from features.schema import naive_utc_datetime, utc_now
from serving.core import ScoringCore
from serving.loader import MIB, REQUEST_TIMEOUT_SECONDS, ChampionHolder, ServingSettings
from serving.memory import TRIM_AFTER_BODY_BYTES, MemoryTrimmer
from serving.openapi import documented
from serving.schemas import (
    FUTURE_TOLERANCE,
    MAX_BATCH_HARD,
    MAX_TOP_K,
    Instant,
    LeadError,
    LeadIn,
    LeadScore,
    ModelIdentity,
    ReasonCount,
    ScoreRequest,
    ScoreResponse,
    check_leads,
    clipped,
    default_as_of,
    request_error,
    validation_error_response,
)

logger = logging.getLogger("leadscore.serving")
ops = FastAPI(title="leadscore operations")
UNAUTHORIZED = "missing or invalid API key (Authorization: Bearer <key>)"
INLINE_LEADS = 16  # requests with up to this many leads ...
INLINE_EVENTS = 2_000  # ... and events in all are checked and scored on the event loop
INLINE_BODY_BYTES = 32 << 10  # larger request bodies are parsed and validated on a worker thread
PARSE_THREADS = 2  # threads parsing and validating bodies over INLINE_BODY_BYTES
BATCH_THREADS = 2  # threads scoring larger requests (LightGBM releases the GIL while it explains)
JSON = "application/json"  # the media type BentoML gives a returned ScoreResponse
DEFAULT_SETTINGS = ServingSettings()  # the body limit before the service instance exists
_trimmer: MemoryTrimmer | None = None  # glibc keeps what a large request's threads freed: see serving.memory


class RedactValidationErrors(logging.Filter):
    """BentoML logs invalid requests with the pydantic error, which quotes input values (lead
    attributes): keep only the error count and the first field locations, each cut short (a key is
    input too), without traceback or values."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            locations = [clipped(".".join(map(str, e["loc"]))) for e in exc.errors(include_input=False)[:10]]
            record.msg = "invalid request %s [%s]: %d validation error(s) at %s"
            record.args = (*(record.args or ())[:2], exc.error_count(), locations)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class ApiKeys:
    """The configured API keys, kept as SHA-256 digests; none configured: every caller is authorized."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._digests = tuple(hashlib.sha256(key.encode()).digest() for key in keys)

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def authorized(self, header: str | None) -> bool:
        """``Authorization: Bearer <key>`` against the configured keys (the scheme is case-blind).

        Constant time: the SHA-256 digests of the given key and of every configured key are compared
        with ``hmac.compare_digest`` (equal lengths, no early exit, every key checked).
        """
        if not self._digests:
            return True
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = hashlib.sha256(token.strip().encode()).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        return matched


def _service_keys() -> ApiKeys | None:
    """The API keys of the running service instance (None before it is created)."""
    try:
        service = bentoml.get_current_service()
    except BentoMLException:
        return None
    return getattr(service, "api_keys", None)


PROTECTED_PATHS = {"/score": UNAUTHORIZED, "/model": "missing or invalid API key",
                   "/reload": "missing or invalid API key"}


class RequireApiKey:
    """ASGI middleware, outermost of the service's: a request to a protected route without a valid
    API key gets its 401 before its body is read (BentoML parses and validates a ``/score`` body
    before the handler runs: a caller without a key would get a 400 describing its request, and
    make the server parse up to the whole body). The keys are the service instance's; the handlers
    check them again (and alone before the instance exists)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = PROTECTED_PATHS.get(scope.get("path", "").rstrip("/")) if scope["type"] == "http" else None
        keys = _service_keys() if message is not None and scope.get("method") != "OPTIONS" else None
        if keys is None:  # not protected, a CORS preflight (no key in it), or no service instance yet
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", []) if k.lower() == b"authorization"), None)
        if keys.authorized(None if header is None else header.decode("latin-1")):
            await self.app(scope, receive, send)
            return
        content = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})


class DocumentedOpenApi:
    """ASGI middleware: ``GET /docs.json`` answers BentoML's OpenAPI document as
    :func:`serving.openapi.documented` completes it (error shape, 401/408/413/415/503, nullable fields)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != "/docs.json" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def documenting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            content = b"".join(body)
            if start.get("status") == 200:
                try:
                    keys, settings = _service_keys(), _service_settings()
                    content = json.dumps(documented(json.loads(content), bool(keys and keys.required),
                                                    settings.max_body_mb, settings.receive_timeout_seconds)).encode()
                except (ValueError, TypeError, AttributeError) as exc:  # BentoML's document goes out unchanged
                    logger.warning("could not complete the OpenAPI document: %s: %s", type(exc).__name__, exc)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(content)).encode())]})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, documenting_send)


def _service_settings() -> ServingSettings:
    """The service instance's settings, the defaults before the instance exists."""
    try:
        settings = getattr(bentoml.get_current_service(), "settings", None)
    except BentoMLException:
        settings = None
    return settings or DEFAULT_SETTINGS


def _size_text(size: int) -> str:
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size:,} bytes"


class BodyLimit:
    """ASGI middleware: a request body over ``LEADSCORE_MAX_BODY_MB`` gets a 413 in the service's error
    shape before it is read in full, so that no route reads or parses it (BentoML would read any size,
    then parse it: 200 MB took a worker to 2 GB). A ``Content-Length`` over the limit is refused from
    the headers alone (no ``100 Continue`` is sent, no byte is read); a body without one (chunked) is
    counted as it comes and refused once past the limit. A body within the limit is read here and handed
    on, chunk by chunk as it came (the routes read every body whole anyway). The 413 closes the connection
    (``Connection: close``): the server would otherwise receive and discard the rest of the body for as
    long as the client sends it. A body that stops coming (no byte for ``LEADSCORE_RECEIVE_TIMEOUT_SECONDS``),
    or that is not complete after half of ``LEADSCORE_REQUEST_TIMEOUT_SECONDS`` (a byte now and then), gets a
    408 in the same shape, which closes the connection too (BentoML would hold the request until its request
    timeout answered 504)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length = headers.get(b"content-length")
        if (b"transfer-encoding" not in headers if length is None else length.strip() == b"0"):
            await self.app(scope, receive, send)  # no body
            return
        settings = _service_settings()
        limit, wait = settings.max_body_bytes, settings.receive_timeout_seconds
        loop = asyncio.get_running_loop()
        # the body's own deadline: half the request timeout for the body, half for its parsing and scoring
        body_seconds = settings.request_timeout_seconds / 2
        body_deadline = loop.time() + body_seconds
        # the HTTP parser refuses a malformed Content-Length (400) and never hands on more bytes than it says
        if length is not None and length.strip().isdigit() and int(length) > limit:
            await self._refuse(scope, send, limit, f"its Content-Length is {int(length):,} bytes")
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            try:  # a wait per piece (a stalled body), within the body's deadline (a trickled one)
                async with asyncio.timeout_at(min(loop.time() + wait, body_deadline)):
                    message = await receive()
            except TimeoutError:
                if loop.time() >= body_deadline:
                    reason = (f"not complete after {body_seconds:g} s (half of LEADSCORE_REQUEST_TIMEOUT_SECONDS)",
                              "send it faster, or fewer leads per request")
                else:
                    reason = (f"no byte came for {wait:g} s (LEADSCORE_RECEIVE_TIMEOUT_SECONDS)",
                              "send the whole body without pausing")
                await self._time_out(scope, send, reason, received, length)
                return
            if message["type"] != "http.request":  # the client left: nobody to answer
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                sent = "with" if length is not None else "without"
                await self._refuse(scope, send, limit, f"at least {received:,} bytes, sent {sent} a Content-Length")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        queued = collections.deque(chunks)
        del chunks

        async def replaying_receive() -> dict[str, Any]:
            if queued:
                return {"type": "http.request", "body": queued.popleft(), "more_body": bool(queued)}
            return await receive()  # a disconnect, for a route that listens for one

        try:
            await self.app(scope, replaying_receive, send)
        finally:
            if received >= TRIM_AFTER_BODY_BYTES:  # what its parsing and scoring freed goes back to the system
                _memory_trimmer().request()

    @staticmethod
    async def _refuse(scope: dict[str, Any], send: Any, limit: int, size: str) -> None:
        logger.warning("refused a request body over the limit of %s on %s %s: %s", _size_text(limit),
                       scope.get("method"), clipped(scope.get("path", "")), size)
        error = request_error("body", f"request body over the limit of {_size_text(limit)} (LEADSCORE_MAX_BODY_MB): "
                                      f"{size}; split the leads over several requests")
        await _send_closing(send, 413, json.dumps(error).encode())

    @staticmethod
    async def _time_out(scope: dict[str, Any], send: Any, reason: tuple[str, str], received: int,
                        length: bytes | None) -> None:
        announced = f" of the {int(length):,} its Content-Length announced" if length and length.strip().isdigit() else ""
        why, advice = reason
        logger.warning("timed out a request body on %s %s: %s, %s bytes%s received", scope.get("method"),
                       clipped(scope.get("path", "")), why, f"{received:,}", announced)
        error = request_error("body", f"request body incomplete: {why}, {received:,} bytes{announced} received; "
                                      f"{advice}")
        await _send_closing(send, 408, json.dumps(error).encode())


def _memory_trimmer() -> MemoryTrimmer:
    global _trimmer
    if _trimmer is None:  # made at the first large request (loads nothing on import)
        _trimmer = MemoryTrimmer()
    return _trimmer


async def _send_closing(send: Any, status: int, content: bytes) -> None:
    """An error answer in JSON that ends the connection (the rest of the request body is not read)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                            (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})


RECORDED_BODY_BYTES = 1 << 20  # request bodies up to this size are kept to name the lead ids of their errors


class ValidationErrorShape:
    """ASGI middleware: BentoML answers a ``/score`` request its pydantic model refuses with
    ``{"error": "N validation error for ScoreRequestIODescriptor", "detail": [...]}``; rewrite that
    400 into the service's own error shape (lead index and id, field, messages). Other answers pass
    through untouched; the request body is parsed again only on that error path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "").rstrip("/") != "/score":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        encoding = headers.get(b"content-encoding", b"").strip().lower()
        refusal = None
        # BentoML's form parser answers a bad multipart body 500, and reads a JSON body sent as a form
        # (curl -d without a content type) as one unknown field named by the whole body
        if media_type.startswith(b"multipart/") or media_type == b"application/x-www-form-urlencoded":
            kind = "multipart" if media_type.startswith(b"multipart/") else "form-encoded"
            refusal = request_error("content-type", f"{kind} (form) bodies are not accepted: send the request as "
                                                    "JSON (application/json)")
        elif encoding not in (b"", b"identity"):  # BentoML would read the compressed bytes as JSON
            refusal = request_error("content-encoding", f"{clipped(encoding.decode('latin-1'))!r} bodies are not "
                                                        "accepted: send the JSON uncompressed")
        if refusal is not None:
            content = json.dumps(refusal).encode()
            await send({"type": "http.response.start", "status": 415,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(content)).encode())]})
            await send({"type": "http.response.body", "body": content})
            return
        chunks: list[bytes] = []
        start: dict[str, Any] | None = None
        body: list[bytes] = []

        recorded = 0

        async def recording_receive() -> dict[str, Any]:
            nonlocal recorded
            message = await receive()
            if message["type"] == "http.request" and recorded <= RECORDED_BODY_BYTES:
                body_part = message.get("body", b"")
                recorded += len(body_part)
                # a large body is not kept twice: its errors then name lead indexes without ids
                if recorded <= RECORDED_BODY_BYTES:
                    chunks.append(body_part)
                else:
                    chunks.clear()
            return message

        async def rewriting_send(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 400:
                start = message  # held until the whole body is known
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            try:
                content = _reshaped(b"".join(body), b"".join(chunks) if recorded <= RECORDED_BODY_BYTES else b"")
            except Exception as exc:  # the 400 still goes out (an escaping error leaves the client waiting)
                logger.warning("could not reshape a 400 answer: %s", type(exc).__name__)
                content = b"".join(body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(content)).encode())]})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, recording_receive, rewriting_send)


def _reshaped(answer: bytes, request: bytes) -> bytes:
    """BentoML's validation-error body in the service's shape (unchanged when it is another 400)."""
    try:
        parsed = json.loads(answer)
        detail = parsed.get("detail") if isinstance(parsed, dict) else None
        if not isinstance(detail, list):
            return answer
        try:
            sent = json.loads(request)
        except (ValueError, RecursionError):  # nested deeper than Python's parser goes: no lead ids
            sent = None
        shaped = validation_error_response(detail, sent)
    except (ValueError, RecursionError):
        return answer
    return answer if shaped is None else json.dumps(shaped, default=str).encode()


# The ``/score`` input spec: ScoreRequest as BentoML builds it (same name, no docstring: its OpenAPI
# document and validation errors are unchanged), whose body is parsed and validated on a worker thread
# when it exceeds INLINE_BODY_BYTES. BentoML 1.4 does that before the handler, on the event loop: 16
# leads of 10,000 events held the loop (health checks, other requests) for seconds. A refused body
# raises the same ValidationError (the same 400) from the thread.
# At most PARSE_THREADS large bodies are parsed at once (each builds hundreds of MB of objects).
class ScoreRequestIODescriptor(bentoml.IODescriptor, ScoreRequest):
    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> ScoreRequestIODescriptor:
        body = await request.body()  # kept by the request: the inline path below reads it again
        if len(body) <= INLINE_BODY_BYTES or getattr(serde, "media_type", None) != "application/json":
            return await super().from_http_request(request, serde)
        global _parse_limiter
        if _parse_limiter is None:  # made on the worker's event loop, at its first large body
            _parse_limiter = anyio.CapacityLimiter(PARSE_THREADS)
        return await anyio.to_thread.run_sync(cls.model_validate_json, body, limiter=_parse_limiter)


_parse_limiter: anyio.CapacityLimiter | None = None


def query_top_k(text: str) -> int | None:
    """A ``?top_k=`` value as its count, None unless it is ASCII digits of a count 0..MAX_TOP_K (leading
    zeros allowed; int() refuses a text of over 4,300 digits, so the digits are counted first)."""
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > len(str(MAX_TOP_K)) or int(digits) > MAX_TOP_K:
        return None
    return int(digits)


def _error(ctx: bentoml.Context | None, status: int, body: dict[str, Any]) -> JSONResponse:
    if ctx is not None:
        ctx.response.status_code = status
    return JSONResponse(body, status_code=status)


@bentoml.service(
    name="lead_scoring",
    workers=1,
    # the largest request the limits allow costs 10 s of CPU: 30 s answered some of them 504 on a busy machine
    # (see REQUEST_TIMEOUT_SECONDS). BentoML reads it when it builds the app, before __init__ reads the settings:
    # `leadscore serve` passes LEADSCORE_REQUEST_TIMEOUT_SECONDS as "services.lead_scoring.traffic.timeout"
    traffic={"timeout": REQUEST_TIMEOUT_SECONDS},
    # one access-log line per request costs ~10-25% of the request's CPU (0.2-1 ms measured; request
    # counts and latencies are in /metrics). `leadscore serve --access-log` (or BENTOML_CONFIG_OPTIONS
    # "services.lead_scoring.logging.access.enabled=true") turns it back on.
    logging={"access": {"enabled": False}},
)
@bentoml.asgi_app(ops, path="/")
class LeadScoringService:
    """Scores leads with the champion model; picks up a newly promoted champion without restart."""

    def __init__(self) -> None:
        self.settings = ServingSettings.from_env(os.environ, endpoint=True)
        service_log = logging.getLogger("leadscore")
        if service_log.level == logging.NOTSET:  # BentoML leaves the root at WARNING: show model swaps
            service_log.setLevel(logging.INFO)
        self.api_keys = ApiKeys(self.settings.api_keys)
        logging.getLogger("bentoml._internal.server.http_app").addFilter(RedactValidationErrors())
        self.holder = ChampionHolder(self.settings)
        try:
            self.holder.reload()
        except Exception as exc:  # not ready yet; the poller keeps trying
            logger.error("no model loaded at start-up: %s: %s", type(exc).__name__, exc)
        self._stop = threading.Event()
        threading.Thread(target=self.holder.poll, args=(self._stop,), daemon=True, name="champion-poll").start()
        self._batch_pool = ThreadPoolExecutor(BATCH_THREADS, thread_name_prefix="score-batch")
        # Start-up objects (libraries, the model) leave the cyclic collector's view: without this, a
        # full collection walks millions of long-lived objects (a ~0.4 s pause measured under load).
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.holder.core is not None

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self._batch_pool.shutdown(wait=False, cancel_futures=True)

    def authorized(self, header: str | None) -> bool:
        """``Authorization: Bearer <key>`` against the configured keys (see :class:`ApiKeys`)."""
        return self.api_keys.authorized(header)

    @bentoml.api(route="/score", input_spec=ScoreRequestIODescriptor)
    async def score(
        self,
        leads: list[LeadIn] = Field(..., min_length=1, max_length=MAX_BATCH_HARD),
        as_of: Instant | None = Field(None, description=ScoreRequest.model_fields["as_of"].description),
        top_k: ReasonCount | None = Field(None, ge=0, le=MAX_TOP_K,
                                          description=ScoreRequest.model_fields["top_k"].description),
        ctx: bentoml.Context = None,  # type: ignore[assignment]
    ) -> ScoreResponse:
        """Score one or many leads: calibrated probability, 0-100 score, grade, MQL flag, reasons."""
        if not self.authorized(ctx.request.headers.get("authorization")):
            return _error(ctx, 401, {"error": UNAUTHORIZED})
        core = self.holder.core  # one reference for the whole request (reload-safe)
        if core is None:
            return _error(ctx, 503, {"error": "no model loaded yet"})
        if len(leads) > self.settings.max_batch:
            return _error(ctx, 400, request_error("leads", f"batch of {len(leads)} exceeds the limit "
                                                           f"{self.settings.max_batch}"))
        query_k = ctx.request.query_params.get("top_k")
        if query_k is not None:
            top_k = query_top_k(query_k)
            if top_k is None:
                return _error(ctx, 400, request_error("top_k", f"query value {query_k[:20]!r} must be 0..{MAX_TOP_K}"))
        if top_k is None:
            top_k = self.settings.scoring.top_k  # at most MAX_TOP_K: checked at start-up
        if len(leads) <= INLINE_LEADS and sum(len(lead.events) for lead in leads) <= INLINE_EVENTS:
            answer = self._answer(core, leads, as_of, top_k)
        else:
            job = functools.partial(self._written_answer, core, leads, as_of, top_k)
            answer = await asyncio.get_running_loop().run_in_executor(self._batch_pool, job)
        if isinstance(answer, bytes):
            return Response(answer, media_type=JSON)
        return answer if isinstance(answer, ScoreResponse) else _error(ctx, *answer)

    def _written_answer(self, core: ScoringCore, leads: list[LeadIn], as_of: datetime | None,
                        top_k: int) -> bytes | tuple[int, dict[str, Any]]:
        """A large request's answer (:meth:`_answer`, on a batch thread) written to JSON there too, as BentoML
        writes a returned ScoreResponse (``model_dump_json``, UTF-8) on the event loop: ~10 ms per 1,000 leads
        of 20 reasons; the answer's objects are freed on this thread as well."""
        answer = self._answer(core, leads, as_of, top_k, release=True)
        return answer.model_dump_json().encode() if isinstance(answer, ScoreResponse) else answer

    def _answer(self, core: ScoringCore, leads: list[LeadIn], as_of: datetime | None, top_k: int,
                release: bool = False) -> ScoreResponse | tuple[int, dict[str, Any]]:
        """The request's checks and scores: the answer, or the status and body of an error. ``release``:
        empty ``leads`` (the request's own list) at the end, so that a large request's objects are freed
        on this worker thread (tens of milliseconds for 160,000 events), not on the event loop."""
        try:
            return self._checked_scores(core, leads, as_of, top_k)
        finally:
            if release:
                leads.clear()

    def _checked_scores(self, core: ScoringCore, leads: list[LeadIn], as_of: datetime | None,
                        top_k: int) -> ScoreResponse | tuple[int, dict[str, Any]]:
        now = utc_now()
        at = naive_utc_datetime(as_of) if as_of is not None else default_as_of(leads, now)
        if at > now + FUTURE_TOLERANCE:
            return 400, request_error("as_of", f"{at.isoformat()} is in the future (now {now.isoformat()} UTC)")
        payloads = [lead.payload() for lead in leads]
        unseen = [core.spec.unseen_in_payload(payload) for payload in payloads]  # warnings and reasons
        try:
            warnings = check_leads(leads, at, core.spec, self.settings.non_negative_attributes, unseen)
        except LeadError as exc:
            return 400, exc.as_response()
        try:
            return self._score(core, leads, payloads, unseen, at, top_k, warnings)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            logger.exception("scoring failed, error_id=%s, model %s v%s, %d leads", error_id,
                             core.info.name, core.info.version, len(leads))
            return 500, {"error": "internal scoring error; see the server log", "error_id": error_id}

    @staticmethod
    def _score(core: ScoringCore, leads: list[LeadIn], payloads: list[dict[str, Any]],
               unseen: list[dict[str, list[str]]], at: datetime, top_k: int,
               warnings: list[list[str]]) -> ScoreResponse:
        matrix = features_from_payloads(payloads, core.spec, at)
        batch = core.score_matrix([lead.lead_id for lead in leads], matrix, top_k,
                                  core.spec.unseen_values_of_payloads(unseen))
        records = batch.to_records()
        scores = []
        for record, lead, notes in zip(records, leads, warnings, strict=True):
            record["lead_id"] = lead.lead_id  # keep the caller's type (int or str)
            record["warnings"] = notes
            scores.append(LeadScore.model_validate(record))
        identity = ModelIdentity.model_validate(core.describe())
        closing = core.describe_closing()
        closing_identity = None if closing is None else ModelIdentity.model_validate(closing)
        return ScoreResponse(model=identity, time_to_close_model=closing_identity, as_of=at, scores=scores)

    # ----- operations (mounted FastAPI app) ---------------------------------------------------
    @ops.get("/model")
    def model(self, authorization: str | None = Header(None)) -> Any:
        """Names, versions, training date, horizon and MQL threshold of the served model."""
        if not self.authorized(authorization):
            return JSONResponse({"error": "missing or invalid API key"}, status_code=401)
        core = self.holder.core
        if core is None:
            return JSONResponse({"error": "no model loaded yet", "detail": self.holder.last_error}, status_code=503)
        closing = core.describe_closing()
        body: dict[str, Any] = {"models": [core.describe(), *([closing] if closing else [])]}
        if self.holder.explain_error is not None:
            body["explain_error"] = self.holder.explain_error
        if self.holder.last_error is not None:  # the newest champion(s) could not be loaded: still serving these
            body["reload_error"] = self.holder.last_error
        return body

    @ops.post("/reload")
    def reload(self, authorization: str | None = Header(None)) -> Any:
        """Load the current champion now (this worker; others follow at their next check)."""
        if not self.authorized(authorization):
            return JSONResponse({"error": "missing or invalid API key"}, status_code=401)
        try:
            swapped = self.holder.reload(force=False)
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            logger.error("reload failed, error_id=%s: %s: %s", error_id, type(exc).__name__, exc)
            if self.holder.core is None:  # nothing to keep serving: say why, as GET /model does
                return JSONResponse({"error": "reload failed and no model is loaded", "detail": str(exc)[:500],
                                     "error_id": error_id}, status_code=503)
            return JSONResponse({"error": "reload failed; the previous model keeps serving",
                                 "error_id": error_id}, status_code=500)
        core = self.holder.core
        return {"reloaded": swapped, "model": core.describe() if core else None}


LeadScoringService.add_asgi_middleware(RequireApiKey)  # the first added is the outer one
LeadScoringService.add_asgi_middleware(ValidationErrorShape)
LeadScoringService.add_asgi_middleware(BodyLimit)
LeadScoringService.add_asgi_middleware(DocumentedOpenApi)
