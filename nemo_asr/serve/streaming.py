"""``WS /v1/stream``: live recognition of 16-bit mono PCM with buffered windows.

Protocol (JSON text messages from the server):

1. connect to ``/v1/stream?sample_rate=16000`` (any rate 8-96 kHz; resampled).
   With API keys, send ``Authorization: Bearer KEY``, or (browsers cannot set
   headers) offer the subprotocols ``nemo-asr`` and ``bearer.KEY``;
2. the server answers ``{"type": "ready", "sample_rate": ..., "chunk_s": ...,
   "partial_s": ..., "silence_gate_db": ...}``;
3. send binary frames of little-endian int16 samples, any size;
4. every ``partial_s`` of audio the server sends ``{"type": "partial", "text": ...,
   "stable_text": ..., "audio_s": ...}``: ``stable_text`` will not change,
   ``text`` adds a guess from the right context;
5. send the text frame ``{"eof": true}``; the last message is
   ``{"type": "final", "final": true, "text", "words", "duration",
   "latency_ms", "final_pass"}`` and the server closes the socket (code 1000).

Partials come from buffered windows (``parts/streaming.py``): a window
commits ``chunk_s`` of audio (2 s by default, with 2 s of left and 1 s of
right context), and between commits a preview window refreshes the text every
``partial_s`` (1 s), so the cadence a listener sees does not set the windows'
accuracy. The final text
of a stream up to ``final_pass_s`` long (default 30 s) comes from one more
pass over the whole stream (``"final_pass": "offline"``), so it equals what
``POST /v1/transcribe`` returns for the same audio; a longer stream's final
text is the merge of its windows (``"final_pass": "buffered"``). The reason:
the models normalise features over the whole utterance, which no window
sees, so buffered text can differ from offline text near window edges
(``benchmarks/serve_streaming.py`` measures by how much). A window whose
loudest 20 ms frame is ``silence_gate_db`` (30 dB) below the loudest frame of
the last 30 s (``parts/streaming.py``) is committed as blank without a model call: normalised on its own, a
window of room noise would be read as speech.

A protocol error gets ``{"type": "error", "error": ...}`` and a close code:
1003 (frame the server cannot use), 1007 (text frame that is not the JSON
above), 1008 (API key), 1009 (stream longer than ``--max_stream_s``), 1011
(server bug), 1013 (overloaded, still loading or shutting down).

When the server is told to stop (SIGTERM, ``SpeechService.drain_streams``),
each open stream gets a final message for the audio it has sent so far, with
``"drained": true``, and the close code 1012 (service restart). Its
``duration`` says how much audio the text covers; frames sent after that
point were not recognised, so a client resends them to another replica.
"""
import asyncio
import json
import logging
import time

import numpy as np
from starlette.websockets import WebSocketDisconnect

from .app import RequestError

_logger = logging.getLogger("nemo_asr.serve")
_access = logging.getLogger("nemo_asr.serve.access")
SUBPROTOCOL = "nemo-asr"


class StreamError(Exception):
    """End a stream with an error message and WebSocket close ``code``."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def _rate(websocket, model_rate):
    text = websocket.query_params.get("sample_rate", str(model_rate))
    if not text.isdigit() or not 8000 <= int(text) <= 96000:
        raise StreamError(1003, f"sample_rate must be an integer from 8000 to 96000, got {text!r}")
    return int(text)


class _Session:
    """One stream: PCM in, resampled, windows through the batcher, partials and the final result out."""

    def __init__(self, websocket, service, rate):
        self.websocket, self.service, self.model = websocket, service, service.model
        self.rate, self.settings = rate, service.settings
        self.stream = self.model.new_stream(self.settings.chunk_s, self.settings.left_s, self.settings.right_s,
                                            self.settings.partial_s, self.settings.silence_gate_db)
        self.resampler = None
        if rate != self.model.sample_rate:
            import soxr

            self.resampler = soxr.ResampleStream(rate, self.model.sample_rate, 1, dtype="float32", quality="HQ")
        self.received_s = 0.0
        self.whole = []  # resampled audio, kept for the final pass while the stream is short enough

    def _samples(self, data, last=False):
        if len(data) % 2:
            raise StreamError(1003, f"binary frames must hold 16-bit PCM (an even number of bytes), got {len(data)}")
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        self.received_s += len(samples) / self.rate
        if self.received_s > self.settings.max_stream_s:
            raise StreamError(1009, f"stream exceeds {self.settings.max_stream_s:g} s of audio")
        if self.resampler is not None:
            samples = self.resampler.resample_chunk(samples, last=last)
        return samples

    async def _infer(self, samples):
        try:
            return await self.service.infer(samples)
        except RequestError as err:
            raise StreamError(1013, err.message) from err

    async def _run(self, windows):
        ran = 0
        for window in windows:
            if window.silent:  # quiet against the stream's loudest recent frame: blank, no model call
                self.stream.commit(window, None)
            else:
                self.stream.commit(window, await self._infer(window.audio.numpy()))
            self.service.metrics.stream_windows.labels("silent" if window.silent else "recognised").inc()
            ran += 1
        return ran

    def _feed(self, samples):
        self.stream.feed(samples)
        if self.whole is not None:
            self.whole.append(samples)
            if self.stream.samples > self.settings.final_pass_s * self.model.sample_rate:
                self.whole = None

    async def audio(self, data):
        self._feed(self._samples(data))
        ran = await self._run(self.stream.ready_windows())
        if ran:
            text = self.stream.text(self.model.labels, tentative=True)
            await self.websocket.send_json({"type": "partial", "text": text,
                                            "stable_text": self.stream.text(self.model.labels),
                                            "audio_s": round(self.received_s, 3)})

    async def finish(self, drained=False):
        started = time.perf_counter()
        if self.resampler is not None:
            self._feed(self.resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        if self.whole is not None and self.stream.samples:
            whole = np.concatenate([np.asarray(x, dtype=np.float32) for x in self.whole])
            result = dict(self.model.decode(await self._infer(whole)), final_pass="offline")
        else:
            await self._run(self.stream.final_windows())
            result = dict(self.model.stream_result(self.stream), final_pass="buffered")
        self.service.metrics.audio_seconds.labels("stream").inc(self.received_s)
        extra = {"drained": True} if drained else {}
        await self.websocket.send_json({"type": "final", "final": True, **result,
                                        "duration": round(self.stream.samples / self.model.sample_rate, 3),
                                        "latency_ms": round((time.perf_counter() - started) * 1e3, 2), **extra})


async def stream(websocket):
    service = websocket.app.state.service
    metrics = service.metrics
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if not service.authorised(websocket.headers):
        metrics.streams.labels("unauthorised").inc()
        await websocket.close(code=1008)  # before accept: the handshake is refused (HTTP 403)
        return
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    started, outcome = time.perf_counter(), "error"
    service.open_streams += 1
    session, drain = None, asyncio.ensure_future(service.draining.wait())
    try:
        if service.draining.is_set():
            raise StreamError(1013, "server is shutting down; connect to another replica")
        if not service.ready:
            raise StreamError(1013, "model is still loading; retry shortly")
        session = _Session(websocket, service, _rate(websocket, service.model.sample_rate))
        await websocket.send_json({"type": "ready", "sample_rate": service.model.sample_rate, "input_rate": session.rate,
                                   "chunk_s": round(session.stream.chunk * service.model.frame_seconds, 3),
                                   "partial_s": round(session.stream.preview * service.model.frame_seconds, 3),
                                   "silence_gate_db": session.stream.silence_gate_db})
        while True:
            receive = asyncio.ensure_future(websocket.receive())
            await asyncio.wait({receive, drain}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():  # shutting down: the final text of what arrived, then "service restart"
                receive.cancel()
                await session.finish(drained=True)
                outcome = "drained"
                await websocket.close(code=1012)
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                outcome = "disconnected"
                return
            if message.get("bytes") is not None:
                await session.audio(message["bytes"])
                continue
            try:
                control = json.loads(message.get("text") or "")
            except ValueError:
                raise StreamError(1007, "text frames must be JSON; send {\"eof\": true} to end the stream") from None
            if not isinstance(control, dict) or control.get("eof") is not True:
                raise StreamError(1007, f"unknown control message {str(control)[:80]!r}; "
                                        "send {\"eof\": true} to end the stream")
            await session.finish()
            outcome = "completed"
            await websocket.close(code=1000)
            return
    except WebSocketDisconnect:
        outcome = "disconnected"
    except StreamError as err:
        outcome = f"error_{err.code}"
        await _close_with(websocket, err.code, err.message)
    except Exception:  # noqa: BLE001 - the client still gets an answer; the traceback goes to the log
        _logger.exception("stream failed")
        outcome = "error_1011"
        await _close_with(websocket, 1011, "internal server error (see the server log)")
    finally:
        drain.cancel()
        service.open_streams -= 1
        metrics.streams.labels(outcome).inc()
        client = websocket.client or ("", 0)
        _access.info(json.dumps({"client": client[0], "path": "/v1/stream", "outcome": outcome,
                                 "audio_s": round(session.received_s, 3) if session else 0.0,
                                 "ms": round((time.perf_counter() - started) * 1e3, 2)}))


async def _close_with(websocket, code, message):
    try:
        await websocket.send_json({"type": "error", "error": message})
        await websocket.close(code=code)
    except (WebSocketDisconnect, RuntimeError):  # the client is gone already
        pass
