"""nemo-serve over real sockets: HTTP transcription, limits, auth, metrics, WebSocket streaming, draining."""
import contextlib
import io
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import torch
import pytest
import soundfile as sf

pytest.importorskip("uvicorn")
pytest.importorskip("websockets")

from websockets.sync.client import connect  # noqa: E402

from nemo_asr.inference import Recognizer  # noqa: E402
from nemo_asr.model_config import load_model_config  # noqa: E402
from nemo_asr.serve.app import Settings, create_app  # noqa: E402
from nemo_asr.serve.model import ServingModel  # noqa: E402

HERE = os.path.dirname(__file__)
WAV = os.path.join(HERE, "data", "an4_subset", "wav")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVE_MODEL = os.path.join(HERE, "data", "serve_model")  # tests/scripts/make_serve_model.py


def load_serve_model():
    """The tiny QuartzNet trained on the AN4 subset: it spells real words on real audio."""
    recognizer = Recognizer(load_model_config(os.path.join(HERE, "data", "configs", "tiny_quartznet.yaml")))
    recognizer.load(SERVE_MODEL)
    return ServingModel.from_recognizer(recognizer, recognizer.runner("pytorch"), name="tiny_quartznet")


@pytest.fixture(scope="module")
def serve_model():
    return load_serve_model()


@pytest.fixture(scope="module")
def model(serve_model):
    return serve_model


class Server:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                   access_log=False, timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def ws(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def server(model):
    with Server(create_app(model, Settings(max_audio_s=10, max_body_bytes=1 << 20, max_stream_s=30))) as running:
        yield running


def post(url, data, headers=None):
    """``(status, json body, headers with lower-case names)`` of a POST."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), {k.lower(): v for k, v in err.headers.items()}


def get(url, headers=None):
    """``(status, body: JSON when it is JSON else text, headers)`` of a GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        response = err
    with response:
        text = response.read().decode()
        json_body = response.headers.get("content-type", "").startswith("application/json")
        return response.status, json.loads(text) if json_body else text, response.headers  # case-insensitive


def wav_bytes(samples, rate, subtype="PCM_16", fmt="WAV"):
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def an4(name="an443-mmxg-b.wav"):
    samples, rate = sf.read(os.path.join(WAV, name), dtype="float32")
    return samples, rate


def offline(model, samples):
    return model.decode(model.infer_batch([samples])[0])


def test_transcribe_returns_text_words_and_timings(server, model):
    samples, rate = an4()
    status, body, headers = post(server.url("/v1/transcribe"), wav_bytes(samples, rate))
    assert status == 200, body
    assert body["text"] == offline(model, samples)["text"]
    assert body["duration"] == pytest.approx(len(samples) / rate, abs=1e-3)
    assert set(body["timings_ms"]) == {"decode_audio", "queue_and_inference", "ctc_decoding", "total"}
    for word in body["words"]:
        assert 0 <= word["start"] < word["end"] <= body["duration"] + 0.05
        assert 0 < word["confidence"] <= 1
    assert " ".join(w["word"] for w in body["words"]) == " ".join(body["text"].split())
    assert "x-request-id" in headers


def test_any_rate_channels_and_format_are_resampled_and_mixed(server, model):
    samples, rate = an4()
    stereo_8k = np.stack([samples, samples], axis=1)[::2]
    status, body, _ = post(server.url("/v1/transcribe"), wav_bytes(stereo_8k, 8000, fmt="FLAC"))
    assert status == 200, body
    assert body["duration"] == pytest.approx(len(stereo_8k) / 8000, abs=1e-3)


def test_multipart_upload(server, model):
    samples, rate = an4()
    boundary = "xyzBOUNDARY"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + wav_bytes(samples, rate) + f"\r\n--{boundary}--\r\n".encode()
    status, result, _ = post(server.url("/v1/transcribe"), body,
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, result
    assert result["text"] == offline(model, samples)["text"]


@pytest.mark.parametrize("data, status, words", [
    (b"this is not audio at all", 415, "not an audio file"),
    (b"", 415, "no audio"),
    (wav_bytes(np.zeros(16000 * 11, dtype=np.float32), 16000), 413, "accepts up to 10 s"),
    (wav_bytes(np.array([0.0, np.nan, 0.1] * 100, dtype=np.float32), 16000, subtype="FLOAT"), 415, "NaN"),
])
def test_bad_input_gets_the_right_status_and_reason(server, data, status, words):
    code, body, _ = post(server.url("/v1/transcribe"), data)
    assert code == status
    assert words in body["error"]


def test_very_short_audio_is_transcribed_not_a_500(server):
    code, body, _ = post(server.url("/v1/transcribe"), wav_bytes(np.full(200, 0.01, dtype=np.float32), 16000))
    assert code == 200 and body["duration"] == pytest.approx(200 / 16000, abs=1e-3)


def test_audio_that_would_decode_huge_is_refused(server):
    """Silence at 384 kHz is tiny as FLAC but large once decoded: refused from its header."""
    huge = np.zeros((384000 * 2, 2), dtype=np.float32)
    code, body, _ = post(server.url("/v1/transcribe"), wav_bytes(huge, 384000, fmt="FLAC"))
    assert code == 415 and "at most 192000 Hz and 8 channels" in body["error"]


def test_multipart_without_a_file_field_is_a_400(server):
    boundary = "b0undary"
    body = f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{boundary}--\r\n"
    code, result, _ = post(server.url("/v1/transcribe"), body.encode(),
                           {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert code == 400 and "field 'file'" in result["error"]


def test_oversized_body_is_refused_before_it_is_read(server):
    """A declared Content-Length over the limit gets 413 at once; a chunked body is cut off at the limit."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/v1/transcribe")
    connection.putheader("Content-Length", str(1 << 30))
    connection.endheaders()  # no body follows: the server must answer from the headers alone
    response = connection.getresponse()
    assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["error"]
    connection.close()

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/v1/transcribe", body=iter([b"\0" * (1 << 19)] * 3), encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["error"]
    connection.close()


def test_lm_without_a_language_model_is_a_client_error(server):
    samples, rate = an4()
    code, body, _ = post(server.url("/v1/transcribe?lm=true"), wav_bytes(samples, rate))
    assert code == 400 and "--lm_path" in body["error"]


def test_lm_beam_search_returns_the_beams_own_words(model):
    """lm=true: the text comes from beam search with the KenLM model, its words and times from that beam."""
    from nemo_asr.inference import Recognizer
    from nemo_asr.serve.cli import build_parser, lm_decoder_for

    pytest.importorskip("kenlm")
    config = os.path.join(HERE, "data", "configs", "tiny_quartznet.yaml")
    lm = os.path.join(HERE, "data", "lm", "hot_hat.arpa")
    args = build_parser().parse_args(["--model_config", config, "--lm_path", lm, "--beam_width", "8",
                                      "--alpha", "2", "--beta", "1"])  # and the default pruning
    recognizer = Recognizer(load_model_config(config))
    with_lm = ServingModel(model.runner, model.labels, model.sample_rate, model.frame_samples,
                           lm_decoder=lm_decoder_for(args, recognizer))
    samples, rate = an4()
    with Server(create_app(with_lm, Settings(), warm_up=False)) as running:
        status, body, _ = post(running.url("/v1/transcribe?lm=true"), wav_bytes(samples, rate))
    assert status == 200, body
    assert [w["word"] for w in body["words"]] == body["text"].split()
    assert body["text"] and body["text"] != offline(model, samples)["text"]  # not the greedy text
    assert body["text"] == with_lm.decode(with_lm.infer_batch([samples])[0], use_lm=True)["text"]
    for word in body["words"]:
        assert 0 <= word["start"] < word["end"] <= body["duration"] + 0.05


def test_health_ready_and_metrics(server):
    with urllib.request.urlopen(server.url("/healthz")) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    with urllib.request.urlopen(server.url("/readyz")) as response:
        assert json.loads(response.read())["status"] == "ready"
    samples, rate = an4()
    post(server.url("/v1/transcribe"), wav_bytes(samples, rate))
    post(server.url("/v1/transcribe"), b"junk")
    with urllib.request.urlopen(server.url("/metrics")) as response:
        text = response.read().decode()
    assert 'nemo_serve_requests_total{endpoint="/v1/transcribe",status="200"}' in text
    assert 'nemo_serve_requests_total{endpoint="/v1/transcribe",status="415"}' in text
    for name in ("nemo_serve_request_seconds_bucket", "nemo_serve_batch_size_bucket", "nemo_serve_queue_depth",
                 "nemo_serve_real_time_factor_bucket"):
        assert name in text
    with connect(server.ws("/v1/stream")) as ws:  # the open-streams gauge follows the streams
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        with urllib.request.urlopen(server.url("/metrics")) as response:
            assert "nemo_serve_streams_active 1.0" in response.read().decode()


def test_concurrent_requests_are_batched(model):
    samples, rate = an4()
    data = wav_bytes(samples, rate)
    settings = Settings(max_batch_size=8, max_wait_ms=200)
    with Server(create_app(model, settings)) as running:
        results = []
        threads = [threading.Thread(target=lambda: results.append(post(running.url("/v1/transcribe"), data)))
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with urllib.request.urlopen(running.url("/metrics")) as response:
            text = response.read().decode()
    assert [r[0] for r in results] == [200] * 6
    assert len({r[1]["text"] for r in results}) == 1
    batches = float(next(line.split()[-1] for line in text.splitlines()
                         if line.startswith("nemo_serve_batch_size_count")))
    assert batches < 6  # warm-up batches excluded: the app's batcher only saw the requests


def test_api_keys_are_required_when_configured(model):
    samples, rate = an4()
    data = wav_bytes(samples, rate)
    with Server(create_app(model, Settings(api_keys=["s3cret"]), warm_up=False)) as running:
        assert post(running.url("/v1/transcribe"), data)[0] == 401
        assert post(running.url("/v1/transcribe"), data, {"Authorization": "Bearer wrong"})[0] == 401
        assert post(running.url("/v1/transcribe"), data, {"Authorization": "Bearer s3cret"})[0] == 200
        with pytest.raises(Exception):
            with connect(running.ws("/v1/stream")) as ws:
                ws.recv(timeout=10)
        with connect(running.ws("/v1/stream"), additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        with connect(running.ws("/v1/stream"), subprotocols=["nemo-asr", "bearer.s3cret"]) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        # /metrics follows the API keys by default; the probes stay open for load balancers
        status, body, headers = get(running.url("/metrics"))
        assert status == 401 and "metrics key" in body["error"] and headers["WWW-Authenticate"] == "Bearer"
        assert get(running.url("/metrics"), {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(running.url("/healthz"))[0] == 200 and get(running.url("/readyz"))[0] == 200


@pytest.mark.parametrize("metrics_keys, key, expected", [
    (["scrape"], "scrape", 200), (["scrape"], "s3cret", 401), (["scrape"], None, 401), ([], None, 200)])
def test_metrics_keys_apart_from_api_keys(model, metrics_keys, key, expected):
    """Prometheus gets its own key (an API key does not open /metrics then), or none at all ([])."""
    settings = Settings(api_keys=["s3cret"], metrics_keys=metrics_keys)
    with Server(create_app(model, settings, warm_up=False)) as running:
        status, body, _ = get(running.url("/metrics"), {"Authorization": f"Bearer {key}"} if key else {})
        assert status == expected, body
        if status == 200:
            assert "nemo_serve_requests_total" in body


def _stream(url, samples, rate, frame_s=0.1):
    """Messages of one stream of ``samples`` (floats; exact when they are int16 values / 32768)."""
    pcm = np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2")
    messages = []
    with connect(url) as ws:
        ready = json.loads(ws.recv(timeout=10))
        assert ready["type"] == "ready"
        assert ready["partial_s"] <= ready["chunk_s"] and ready["partial_s"] == pytest.approx(1.0, abs=0.02)
        step = int(rate * frame_s)
        for start in range(0, len(pcm), step):
            ws.send(pcm[start:start + step].tobytes())
        ws.send(json.dumps({"eof": True}))
        while True:
            message = json.loads(ws.recv(timeout=60))
            messages.append(message)
            if message["type"] in ("final", "error"):
                break
    return messages


def an4_streams(per_stream=4):
    """All 40 AN4 utterances, ``per_stream`` at a time with 0.25 s pauses: (name, 16-bit samples) pairs."""
    names = sorted(os.listdir(WAV))
    pause = np.zeros(4000, dtype=np.float32)
    for start in range(0, len(names), per_stream):
        parts = [an4(name)[0] for name in names[start:start + per_stream]]
        samples = np.concatenate([p for part in parts for p in (part, pause)])
        yield names[start], (np.clip(samples, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32768


def test_stream_partials_then_final_equal_to_offline_on_an4(server, model):
    """Streams of real AN4 speech (10 x ~5 s): partials while audio arrives, the final text equals offline."""
    for name, samples in an4_streams():
        messages = _stream(server.ws("/v1/stream"), samples, 16000)
        final = messages[-1]
        assert final["type"] == "final" and final["final"] is True and final["final_pass"] == "offline"
        assert [m["type"] for m in messages[:-1]] == ["partial"] * (len(messages) - 1)
        assert len(messages) - 1 >= int(len(samples) / 16000) - 1  # a partial per second of audio
        expected = offline(model, samples)["text"]
        assert expected.strip()
        assert final["text"] == expected, name


def test_buffered_final_text_stays_close_to_offline_on_an4(model):
    """Without the final pass the merged windows give the text: close to offline on real speech."""
    from nemo_asr.metrics import char_error_rate

    streamed, offline_texts = [], []
    with Server(create_app(model, Settings(final_pass_s=0), warm_up=False)) as running:
        for name, samples in an4_streams():
            final = _stream(running.ws("/v1/stream"), samples, 16000)[-1]
            assert final["final_pass"] == "buffered"
            streamed.append(final["text"])
            offline_texts.append(offline(model, samples)["text"])
    rate = char_error_rate(streamed, offline_texts)[0]
    assert rate <= 0.1, (rate, streamed, offline_texts)


@pytest.mark.parametrize("chunk, left, right, feed, preview", [
    (3, 5, 2, 700, None), (1, 0, 0, 160, None), (4, 2, 6, 10_000, None), (2, 3, 1, 1, None),
    (6, 4, 3, 320, 2), (5, 0, 2, 100, 1), (4, 2, 1, 5_000, 1)])
def test_buffered_windows_reproduce_a_frame_local_model_exactly(chunk, left, right, feed, preview):
    """Window bookkeeping: with a model whose frames depend only on their own audio, streaming is exact."""
    from nemo_asr.parts.streaming import BufferedCTCStream

    frame, classes = 320, 7
    rng = np.random.default_rng(chunk * 100 + left)
    truth = rng.integers(0, classes, size=53)
    audio = np.repeat(truth, frame).astype(np.float32)[: 53 * frame - 17]  # last frame cut short

    def infer(samples):
        frames = -(-len(samples) // frame)
        labels = torch.as_tensor(samples[::frame][:frames]).long()
        return torch.nn.functional.one_hot(labels, classes).float().log()

    stream = BufferedCTCStream(frame, chunk, left, right, blank=classes - 1, preview=preview)
    for start in range(0, len(audio), feed):
        stream.feed(audio[start:start + feed])
        for window in stream.ready_windows():
            stream.commit(window, infer(window.audio.numpy()))
            seen = stream.labels + stream.tentative  # committed and tentative frames line up with the audio
            assert seen == truth[: len(seen)].tolist()
        if preview and stream.committed:  # previews keep the text within `preview` frames of the newest audio
            assert -(-stream.samples // frame) - len(stream.labels + stream.tentative) <= preview
    for window in stream.final_windows():
        stream.commit(window, infer(window.audio.numpy()))
    assert stream.labels == truth.tolist()


def test_partials_come_every_preview_while_commits_wait_for_whole_chunks():
    """``preview`` < ``chunk``: the text is refreshed every ``preview`` frames of audio, commits stay ``chunk``
    long (the cadence a listener sees is independent of the window size that sets the accuracy)."""
    from nemo_asr.parts.streaming import BufferedCTCStream

    frame, chunk, left, right, preview = 160, 8, 4, 2, 2
    stream = BufferedCTCStream(frame, chunk, left, right, blank=0, preview=preview)
    refreshed, commits = [], []
    for index in range(60):
        stream.feed(np.zeros(frame, dtype=np.float32))
        for window in stream.ready_windows():
            before = stream.committed
            stream.commit(window, torch.zeros(-(-len(window.audio) // frame), 3))
            refreshed.append(index + 1)
            if stream.committed > before:
                commits.append(stream.committed - before)
    assert set(np.diff(refreshed)) == {preview}  # every 2 frames, before the first commit and after it
    assert commits[0] == left + chunk and set(commits[1:]) == {chunk}
    with pytest.raises(ValueError, match="preview"):
        BufferedCTCStream(frame, chunk, left, right, blank=0, preview=0)


def test_silence_gate_commits_quiet_windows_as_blank_without_running_the_model():
    """A pause 40 dB below the speech: windows that hold only the pause are ``silent`` (blank, no model
    call); every window with speech in it runs, and its frames are what they are without the gate."""
    from nemo_asr.parts.streaming import BufferedCTCStream

    frame, classes, blank = 320, 7, 6
    rng = np.random.default_rng(3)
    truth = rng.integers(1, classes - 1, size=80)  # 20 loud frames, 40 quiet ones, 20 loud
    level = np.where((np.arange(80) >= 20) & (np.arange(80) < 60), 0.0005, 0.05)  # -40 dB in the pause
    audio = (np.repeat(truth * level, frame)).astype(np.float32)

    def run(gate):
        stream, calls = BufferedCTCStream(frame, 4, 4, 2, blank=blank, silence_gate_db=gate), []

        def infer(window):
            calls.append(window.start)
            frames = -(-len(window.audio) // frame)  # a frame-local model: frame j says truth[start + j]
            labels = torch.as_tensor(truth[window.start:window.start + frames])
            return torch.nn.functional.one_hot(labels, classes).float().log()

        for start in range(0, len(audio), 1000):
            stream.feed(audio[start:start + 1000])
            for window in stream.ready_windows():
                stream.commit(window, None if window.silent else infer(window))
        for window in stream.final_windows():
            stream.commit(window, None if window.silent else infer(window))
        return stream, calls

    plain, plain_calls = run(None)
    gated, gated_calls = run(30.0)
    assert plain.labels == truth.tolist()
    assert len(gated_calls) < len(plain_calls)  # the pause's own windows never reached the model
    for index, (with_gate, without) in enumerate(zip(gated.labels, plain.labels)):
        assert with_gate in (without, blank), index  # a gated frame is blank, never another label
        if index < 20 or index >= 64:  # speech, and the frames after the pause, are recognised
            assert with_gate == without, index
    assert blank in gated.labels[28:52]  # the middle of the pause is blank
    # digital silence is below the absolute floor (-65 dBFS): silent even before any speech
    quiet = BufferedCTCStream(frame, 4, 4, 2, blank=blank, silence_gate_db=30.0)
    quiet.feed(np.zeros(20 * frame, dtype=np.float32))
    flags = []
    for window in quiet.final_windows():
        flags.append(window.silent)
        quiet.commit(window, None)
    assert flags and all(flags) and quiet.labels == [blank] * 20
    with pytest.raises(ValueError, match="silence_gate_db"):
        BufferedCTCStream(frame, 4, 4, 2, blank=blank, silence_gate_db=0)
    # a click at -1 dBFS, then quiet speech at -36 dBFS: over -45 dBFS, speech is never gated
    click = BufferedCTCStream(frame, 4, 4, 2, blank=blank, silence_gate_db=30.0)
    speech = np.random.default_rng(1).normal(0, 10 ** (-36 / 20), 60 * frame).astype(np.float32)
    click.feed(np.concatenate([np.full(frame, 0.9, dtype=np.float32), speech]))
    flags = []
    for window in click.final_windows():
        flags.append(window.silent)
        click.commit(window, None)
    assert flags and not any(flags)


def test_stream_with_a_long_pause_skips_its_windows_and_counts_them(server, model):
    """Over the socket: the ready message names the gate; the pause's windows are counted as silent."""
    first, second = (an4(name)[0] for name in sorted(os.listdir(WAV))[:2])  # the first peaks at -21 dBFS (20 ms)
    pause = np.random.default_rng(0).normal(0, 10 ** (-58 / 20), 8 * 16000).astype(np.float32)  # 37 dB below
    samples = np.concatenate([first, pause, second])
    with connect(server.ws("/v1/stream")) as ws:
        assert json.loads(ws.recv(timeout=10))["silence_gate_db"] == 30.0
    messages = _stream(server.ws("/v1/stream"), samples, 16000)
    assert messages[-1]["type"] == "final" and messages[-1]["text"]
    with urllib.request.urlopen(server.url("/metrics")) as response:
        metrics = response.read().decode()
    silent = [line for line in metrics.splitlines()
              if line.startswith('nemo_serve_stream_windows_total{outcome="silent"}')]
    assert silent and float(silent[0].split()[-1]) >= 3, silent


def test_stream_at_another_rate(server):
    samples, rate = an4()
    samples_8k = samples[::2]
    messages = _stream(server.ws("/v1/stream?sample_rate=8000"), samples_8k, 8000)
    assert messages[-1]["type"] == "final"
    assert messages[-1]["duration"] == pytest.approx(len(samples_8k) / 8000, abs=0.02)


@pytest.mark.parametrize("send, code, words", [
    (b"\x01\x02\x03", 1003, "even number of bytes"),
    ("not json", 1007, "must be JSON"),
    (json.dumps({"hello": 1}), 1007, "unknown control message"),
])
def test_malformed_stream_frames_get_an_error_and_a_close_code(server, send, code, words):
    from websockets.exceptions import ConnectionClosed

    with connect(server.ws("/v1/stream")) as ws:
        json.loads(ws.recv(timeout=10))
        ws.send(send)
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and words in error["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == code


def test_bad_sample_rate_and_too_long_stream(server):
    from websockets.exceptions import ConnectionClosed

    with connect(server.ws("/v1/stream?sample_rate=abc")) as ws:
        assert "sample_rate" in json.loads(ws.recv(timeout=10))["error"]
    with connect(server.ws("/v1/stream")) as ws:
        json.loads(ws.recv(timeout=10))
        silence = np.zeros(16000 * 31, dtype="<i2").tobytes()
        with pytest.raises(ConnectionClosed):
            for start in range(0, len(silence), 1 << 18):
                ws.send(silence[start:start + (1 << 18)])
            while True:
                message = json.loads(ws.recv(timeout=30))
                if message["type"] == "error":
                    assert "exceeds 30 s" in message["error"]
        assert ws.close_code == 1009


def test_client_disconnecting_mid_stream_is_counted_and_the_server_keeps_serving(server):
    samples, rate = an4()
    pcm = (samples * 32767).astype("<i2").tobytes()
    with contextlib.suppress(Exception), connect(server.ws("/v1/stream")) as ws:
        json.loads(ws.recv(timeout=10))
        ws.send(pcm[: len(pcm) // 2])
        ws.socket.close()  # vanish mid-stream without a close frame
    time.sleep(0.5)
    with urllib.request.urlopen(server.url("/metrics")) as response:
        text = response.read().decode()
    deadline = time.time() + 10
    while 'nemo_serve_streams_total{outcome="disconnected"}' not in text and time.time() < deadline:
        time.sleep(0.2)
        with urllib.request.urlopen(server.url("/metrics")) as response:
            text = response.read().decode()
    assert 'nemo_serve_streams_total{outcome="disconnected"}' in text
    assert post(server.url("/v1/transcribe"), wav_bytes(samples, rate))[0] == 200
