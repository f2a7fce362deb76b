"""nemo-serve's page in a real headless Chromium: upload a file, and record from a (fake) microphone.

Chromium comes from ``scripts/install_system_deps.sh``; it is driven over the
DevTools protocol with the ``websockets`` client nemo-serve already needs.
The fake microphone plays a WAV file of real AN4 speech.
"""
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("uvicorn")
from websockets.sync.client import connect  # noqa: E402

from nemo_asr.metrics import char_error_rate  # noqa: E402
from nemo_asr.serve.app import Settings, create_app  # noqa: E402

from test_serve import WAV, Server, serve_model  # noqa: E402,F401 (serve_model is a fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install_system_deps.sh)")]


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, folder, fake_audio):
        profile = os.path.join(folder, "profile")
        os.makedirs(profile)
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--autoplay-policy=no-user-gesture-required",
             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={fake_audio}%noloop", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 60
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            assert time.time() < deadline and self.process.poll() is None, "chromium did not start"
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            page = next(t for t in json.loads(response.read()) if t["type"] == "page")
        self.stack = contextlib.ExitStack()
        self.socket = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def js(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        status = self.js("document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {expression}; page status: {status!r}")

    def close(self):
        self.stack.close()
        self.process.terminate()
        self.process.wait(30)


@pytest.fixture
def speech(tmp_path):
    """Four AN4 utterances with short pauses, as one WAV, and their offline transcript."""
    names = sorted(os.listdir(WAV))[:4]
    pause = np.zeros(4000, dtype=np.float32)
    samples = np.concatenate([part for name in names
                              for part in (sf.read(os.path.join(WAV, name), dtype="float32")[0], pause)])
    path = str(tmp_path / "speech.wav")
    sf.write(path, np.concatenate([pause, samples, pause]), 16000, subtype="PCM_16")
    return path


def test_page_uploads_and_records_live(tmp_path, serve_model, speech):  # noqa: F811
    expected = serve_model.decode(serve_model.infer_batch([sf.read(speech, dtype="float32")[0]])[0])["text"]
    assert expected.strip()
    with Server(create_app(serve_model, Settings(chunk_s=0.5, left_s=1.0, right_s=0.5))) as server:
        browser = Browser(str(tmp_path), speech)
        try:
            browser.call("Page.enable")
            browser.call("Page.navigate", url=server.url("/"))
            browser.wait_for("document.readyState === 'complete' && !!document.getElementById('upload')")

            # upload: the file input gets the WAV, the page shows text and a words table
            document = browser.call("DOM.getDocument")
            node = browser.call("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#file")
            browser.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[speech])
            browser.js("document.getElementById('upload').click()")
            browser.wait_for("document.getElementById('transcript').dataset.final === 'true'")
            assert browser.js("document.getElementById('transcript').textContent") == expected
            rows = browser.js("document.querySelectorAll('#words tbody tr').length")
            assert rows == len(expected.split())

            # microphone: partial text appears while audio plays, then the final text
            browser.js("document.getElementById('transcript').textContent = ''")
            browser.js("document.getElementById('record').click()")
            browser.wait_for("document.getElementById('status').textContent.startsWith('Listening')")
            partial = browser.wait_for("document.getElementById('transcript').textContent.trim()")
            assert browser.js("document.getElementById('transcript').dataset.final") is None
            time.sleep(sf.info(speech).duration)
            browser.js("document.getElementById('stop').click()")
            browser.wait_for("document.getElementById('transcript').dataset.final === 'true'")
            live = browser.js("document.getElementById('transcript').textContent")
        finally:
            browser.close()
    assert partial
    # the browser captures at 48 kHz and starts a little late: nearly the same characters
    assert char_error_rate([live], [expected])[0] <= 0.25, (expected, live)


def test_page_keeps_the_text_when_the_server_shuts_down_mid_stream(tmp_path, speech):
    """SIGTERM to nemo-serve while the page records: the page shows the final text of what was heard,
    stops the microphone and says the server is restarting."""
    import signal

    from test_serve_ops import _serve

    process, port = _serve(["--chunk_s", "0.5", "--left_s", "1.0", "--right_s", "0.5"])
    signalled = False
    try:
        browser = Browser(str(tmp_path), speech)
    except BaseException:
        process.kill()
        raise
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        browser.wait_for("document.readyState === 'complete' && !!document.getElementById('record')")
        browser.js("document.getElementById('record').click()")
        browser.wait_for("document.getElementById('status').textContent.startsWith('Listening')")
        partial = browser.wait_for("document.getElementById('transcript').textContent.trim()")
        process.send_signal(signal.SIGTERM)
        signalled = True
        browser.wait_for("document.getElementById('status').textContent.startsWith('The server is restarting')")
        assert browser.js("document.getElementById('transcript').dataset.final") == "true"
        final = browser.js("document.getElementById('transcript').textContent").strip()
        assert browser.js("document.getElementById('record').disabled") is False
        assert browser.js("document.getElementById('stop').disabled") is True
    finally:
        browser.close()
        if not signalled:
            process.kill()
        try:
            process.wait(60)  # it drains and ends by the signal (or, when the test failed early, is killed)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert partial and final
    assert process.returncode == -signal.SIGTERM
