"""The ASGI application: ``POST /v1/transcribe``, ``WS /v1/stream``, the page at ``/`` and operations endpoints.

Built on Starlette (the ASGI toolkit FastAPI is made of; we need routing,
WebSockets and lifespan, not request-model validation, since bodies are audio)
and served by uvicorn. Every accepted request gets exactly one answer: a
result, or a JSON error ``{"error": ...}`` with the status saying whose
fault it is (4xx: the request, 503/504: load, 500: a bug, logged with its
traceback).

Nothing a client sends names a file on the server, and uploads stay in
memory (the body is read under the size limit, multipart is parsed from
bytes): nothing is written to disk.
"""
import asyncio
import contextlib
import email.parser
import email.policy
import hmac
import io
import json
import logging
import os
import time
import uuid

import numpy as np
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from .batcher import DynamicBatcher, QueueFullError
from .metrics import ServiceMetrics

_logger = logging.getLogger("nemo_asr.serve")
_access = logging.getLogger("nemo_asr.serve.access")
STATIC = os.path.join(os.path.dirname(__file__), "static")
# decoded size is bounded by these and --max_audio_s: a small compressed upload cannot claim gigabytes
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8


class Settings:
    """Limits and behaviour of one server (``nemo-serve --help`` documents each)."""

    def __init__(self, max_body_bytes=32 << 20, max_audio_s=120.0, max_stream_s=3600.0, request_timeout_s=30.0,
                 max_batch_size=16, max_wait_ms=10.0, max_queue=256, max_batch_seconds=240.0, api_keys=(),
                 chunk_s=2.0, left_s=2.0, right_s=1.0, final_pass_s=30.0, partial_s=1.0, metrics_keys=None,
                 silence_gate_db=30.0):
        self.max_body_bytes, self.max_audio_s, self.max_stream_s = int(max_body_bytes), max_audio_s, max_stream_s
        self.request_timeout_s, self.max_batch_size, self.max_wait_ms = request_timeout_s, max_batch_size, max_wait_ms
        self.max_queue, self.max_batch_seconds = max_queue, max_batch_seconds
        self.api_keys = [k.encode() for k in api_keys if k]
        # /metrics: its own keys when given ([] = open to all); else (None) the API keys
        self.metrics_keys = self.api_keys if metrics_keys is None else [k.encode() for k in metrics_keys if k]
        if metrics_keys and not self.metrics_keys:
            raise ValueError("metrics_keys holds only blank keys; pass [] to leave /metrics open")
        self.chunk_s, self.left_s, self.right_s, self.final_pass_s = chunk_s, left_s, right_s, final_pass_s
        if silence_gate_db is not None and not 0 < silence_gate_db < float("inf"):
            raise ValueError(f"silence_gate_db must be a positive number of dB, or None (off), got {silence_gate_db}")
        self.partial_s, self.silence_gate_db = partial_s, silence_gate_db  # gate: None = off


class RequestError(Exception):
    """A request the server refuses: HTTP ``status`` and a message for the client."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def decode_audio(data, target_sr, max_seconds):
    """Mono float32 samples at ``target_sr`` from encoded audio bytes (any libsndfile format, rate, channels)."""
    import soundfile as sf

    from ..parts.audio import resample

    if not data:
        raise RequestError(415, "the request holds no audio (empty body)")
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - libsndfile's reasons are all "not audio we can read"
        raise RequestError(415, f"not an audio file libsndfile can read ({str(err).strip() or type(err).__name__})")
    if info.frames <= 0:
        raise RequestError(415, "the audio holds no samples")
    if info.samplerate > MAX_SAMPLE_RATE or info.channels > MAX_CHANNELS:
        raise RequestError(415, f"audio of {info.samplerate} Hz x {info.channels} channels is not accepted "
                                f"(at most {MAX_SAMPLE_RATE} Hz and {MAX_CHANNELS} channels)")
    if info.frames / info.samplerate > max_seconds:
        raise RequestError(413, f"audio is {info.frames / info.samplerate:.1f} s long; this server accepts up to "
                                f"{max_seconds:g} s per request (use the streaming endpoint for longer audio)")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001
        raise RequestError(415, f"the audio could not be decoded ({str(err).strip() or type(err).__name__})")
    if not np.isfinite(samples).all():
        raise RequestError(415, "the audio holds NaN or infinite samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    return resample(np.ascontiguousarray(mono, dtype=np.float32), rate, target_sr)


def multipart_file(body, content_type):
    """The bytes of the uploaded file in a ``multipart/form-data`` body (field ``file``, else the first file)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise RequestError(400, "malformed multipart/form-data body")
    parts = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") is not None]
    chosen = ([p for p in parts if p.get_param("name", header="content-disposition") == "file"]
              or [p for p in parts if p.get_filename()])
    if not chosen:
        raise RequestError(400, "multipart body has no file field (send the audio as field 'file')")
    return chosen[0].get_payload(decode=True) or b""


def _upload_to_waveform(body, content_type, sample_rate, max_seconds):
    if content_type.startswith("multipart/form-data"):
        body = multipart_file(body, content_type)
    return decode_audio(body, sample_rate, max_seconds)


def _flag(value):
    return str(value).lower() in ("1", "true", "yes", "on")


class SpeechService:
    """State shared by the routes: the model, the batcher, the metrics and the readiness flag."""

    def __init__(self, model, settings=None, warm_up=True):
        self.model, self.settings = model, settings or Settings()
        self.metrics = ServiceMetrics()
        self.ready = False
        self.draining = asyncio.Event()  # set by drain_streams(): open streams end with a final, then 1012
        self.open_streams = 0  # counted by the stream handler; the metrics gauge reads it
        self.metrics.streams_active.set_function(lambda: self.open_streams)
        self.warm_up = warm_up
        self.decoding = asyncio.Semaphore(os.cpu_count() or 1)
        self.batcher = DynamicBatcher(self._run_batch, self.settings.max_batch_size, self.settings.max_wait_ms,
                                      self.settings.max_queue,
                                      int(self.settings.max_batch_seconds * model.sample_rate),
                                      on_batch=self.metrics.observe_batch)

    def _run_batch(self, waveforms):
        started = time.perf_counter()
        results = self.model.infer_batch(waveforms)
        seconds = time.perf_counter() - started
        audio = sum(len(w) for w in waveforms) / self.model.sample_rate
        if audio > 0:
            self.metrics.real_time_factor.observe(seconds / audio)
        return results

    async def startup(self):
        self.batcher.start()
        if self.warm_up:
            seconds = await asyncio.get_running_loop().run_in_executor(None, self.model.warm_up)
            _logger.info("model warmed up in %.2f s", seconds)
        self.ready = True

    def drain_streams(self):
        """Start a shutdown: ``/readyz`` answers 503, new streams are refused (1013), and each open stream
        gets the final text of the audio it has sent so far, then close code 1012 (service restart).
        The model keeps serving until ``shutdown``; call from the event loop's thread."""
        self.draining.set()

    async def shutdown(self):
        self.ready = False
        await self.batcher.close()

    def authorised(self, headers, keys=None):
        """True when no keys are configured or ``Authorization: Bearer <key>`` matches one (constant time).
        ``keys``: the keys to check against (default: the API keys)."""
        keys = self.settings.api_keys if keys is None else keys
        if not keys:
            return True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
            token = next((p[len("bearer."):] for p in protocols if p.startswith("bearer.")), "")
        matched = False
        for key in keys:  # compare with every key: time does not depend on which matched
            matched |= hmac.compare_digest(key, token.strip().encode())
        return matched

    async def infer(self, waveform):
        """Log-probs for one waveform through the batcher, within the request timeout."""
        try:
            return await asyncio.wait_for(self.batcher.submit(waveform, len(waveform)),
                                          self.settings.request_timeout_s)
        except QueueFullError as err:
            raise RequestError(503, f"server busy ({err}); retry shortly", {"Retry-After": "1"}) from err
        except asyncio.TimeoutError as err:
            raise RequestError(504, f"no result within {self.settings.request_timeout_s:g} s") from err


async def read_body(request, limit):
    """The request body, refusing (413) one larger than ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def transcribe(request):
    service = request.app.state.service
    if not service.authorised(request.headers):
        raise RequestError(401, "missing or wrong API key (send Authorization: Bearer <key>)",
                           {"WWW-Authenticate": "Bearer"})
    if not service.ready:
        raise RequestError(503, "model is still loading; retry shortly", {"Retry-After": "2"})
    started = time.perf_counter()
    use_lm = _flag(request.query_params.get("lm", "false"))
    if use_lm and service.model.lm_decoder is None:
        raise RequestError(400, "lm=true but this server has no language model (start it with --lm_path)")
    try:
        body = await read_body(request, service.settings.max_body_bytes)
    except ClientDisconnect:
        raise RequestError(499, "client disconnected during the upload") from None
    content_type = request.headers.get("content-type", "")
    async with service.decoding:  # at most one decode per core at a time: bounded memory and CPU
        waveform = await asyncio.get_running_loop().run_in_executor(
            None, _upload_to_waveform, body, content_type, service.model.sample_rate, service.settings.max_audio_s)
    decoded = time.perf_counter()
    log_probs = await service.infer(waveform)
    inferred = time.perf_counter()
    result = await asyncio.get_running_loop().run_in_executor(None, service.model.decode, log_probs, use_lm)
    done = time.perf_counter()
    duration = len(waveform) / service.model.sample_rate
    service.metrics.audio_seconds.labels("transcribe").inc(duration)
    return JSONResponse({**result, "duration": round(duration, 3), "model": service.model.name,
                         "timings_ms": {"decode_audio": round((decoded - started) * 1e3, 2),
                                        "queue_and_inference": round((inferred - decoded) * 1e3, 2),
                                        "ctc_decoding": round((done - inferred) * 1e3, 2),
                                        "total": round((done - started) * 1e3, 2)}})


async def healthz(request):
    return JSONResponse({"status": "ok"})


async def readyz(request):
    service = request.app.state.service
    if service.draining.is_set():
        return JSONResponse({"status": "draining"}, status_code=503)
    if service.ready:
        return JSONResponse({"status": "ready", "model": service.model.name})
    return JSONResponse({"status": "loading"}, status_code=503)


async def metrics(request):
    service = request.app.state.service
    if not service.authorised(request.headers, service.settings.metrics_keys):
        raise RequestError(401, "missing or wrong metrics key (send Authorization: Bearer <key>; Prometheus: "
                                "authorization.credentials_file)", {"WWW-Authenticate": "Bearer"})
    service.metrics.queue_depth.set(service.batcher.depth)
    body, content_type = service.metrics.render()
    return Response(body, media_type=content_type)


async def index(request):
    return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")


def create_app(model, settings=None, warm_up=True):
    """The Starlette app serving ``model`` (a ``ServingModel``)."""
    from .streaming import stream

    service = SpeechService(model, settings, warm_up)

    async def lifespan(app):
        await service.startup()
        yield
        await service.shutdown()

    app = Starlette(routes=[
        Route("/", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/v1/transcribe", transcribe, methods=["POST"]),
        WebSocketRoute("/v1/stream", stream),
    ], lifespan=contextlib.asynccontextmanager(lifespan))
    app.state.service = service
    app.add_middleware(AccessLogMiddleware, service=service)
    return app


class AccessLogMiddleware:
    """One JSON access-log line and the request metrics per HTTP request; errors become JSON answers."""

    def __init__(self, app, service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:12]
        status = {"code": 500, "sent": False}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except RequestError as err:
            if status["sent"]:
                raise
            if err.status == 499:  # nobody to answer; counted and logged, without a traceback
                status["code"] = 499
                return
            await JSONResponse({"error": err.message}, status_code=err.status,
                               headers={**err.headers, "x-request-id": request_id})(scope, receive, send)
            status["code"] = err.status
        except Exception:  # noqa: BLE001 - a bug still gets one answer, and its traceback in the log
            _logger.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            if status["sent"]:
                raise
            await JSONResponse({"error": "internal server error (see the server log)"}, status_code=500,
                               headers={"x-request-id": request_id})(scope, receive, send)
            status["code"] = 500
        finally:
            seconds = time.perf_counter() - started
            path = scope.get("path", "")
            endpoint = path if path in ("/", "/healthz", "/readyz", "/metrics", "/v1/transcribe") else "other"
            self.service.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.service.metrics.latency.labels(endpoint).observe(seconds)
            client = scope.get("client") or ("", 0)
            _access.info(json.dumps({"request_id": request_id, "client": client[0], "method": scope.get("method"),
                                     "path": path, "status": status["code"], "ms": round(seconds * 1e3, 2)}))
