"""The uvicorn server of ``nemo-serve``, with a shutdown that drains live streams as well as requests.

Plain uvicorn, on SIGTERM, answers the HTTP requests in flight but closes
open WebSockets at once (code 1012), so a live stream loses the text of the
audio it had already sent. ``DrainingServer`` puts one phase in front of
uvicorn's own shutdown:

1. the first SIGTERM or Ctrl-C stops accepting connections and calls
   ``SpeechService.drain_streams``: ``/readyz`` turns 503 and every open
   stream gets the final text of its audio so far (``"drained": true``),
   then close code 1012;
2. once no stream is open, or after ``drain_timeout_s``, uvicorn's shutdown
   runs as usual: requests in flight are answered (up to
   ``--graceful_timeout_s``), the app shuts down, and the process ends by
   the signal it got (exit status 143 for SIGTERM in a shell).

A second signal skips the rest of the stream phase; a second Ctrl-C after
that stops at once, as in uvicorn.
"""
import logging
import sys
import time

import uvicorn

_logger = logging.getLogger("nemo_asr.serve")


class DrainingServer(uvicorn.Server):
    def __init__(self, config, service, drain_timeout_s=30.0):
        super().__init__(config)
        self.service, self.drain_timeout_s = service, drain_timeout_s
        self.drain_requested, self.drain_deadline = False, None

    def handle_exit(self, sig, frame):
        if self.drain_requested or self.should_exit:  # a second signal: on to uvicorn's own shutdown
            return super().handle_exit(sig, frame)
        self._captured_signals.append(sig)  # re-raised at the end, like uvicorn does
        self.drain_requested = True  # acted on by on_tick, in the event loop

    async def on_tick(self, counter):
        if self.drain_requested and self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.drain_timeout_s
            for server in self.servers:  # no new connections
                server.close()
            _logger.info("shutting down: ending %d open stream(s) with their final text", self.service.open_streams)
            self.service.drain_streams()
        if self.drain_deadline is not None and not self.should_exit:
            if self.service.open_streams == 0:
                self.should_exit = True
            elif time.monotonic() > self.drain_deadline:
                _logger.warning("%d stream(s) still open after %g s; closing them", self.service.open_streams,
                                self.drain_timeout_s)
                self.should_exit = True
        return await super().on_tick(counter)


def serve(app, drain_timeout_s, **config):
    """Run ``app`` (``create_app``'s) until a signal; ``config``: ``uvicorn.Config`` options."""
    config = uvicorn.Config(app, **config)
    server = DrainingServer(config, app.state.service, drain_timeout_s)
    server.run()
    if not server.started:  # it could not bind or start; uvicorn has logged why
        sys.exit(3)
