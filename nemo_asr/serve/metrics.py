"""Prometheus metrics of one server (its own registry, so several apps in one process do not mix)."""
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """Request counts by status, latency histograms, batch sizes, queue depth, real-time factor, streams."""

    def __init__(self):
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter("nemo_serve_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=reg)
        self.latency = Histogram("nemo_serve_request_seconds", "HTTP request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=reg)
        self.batch_size = Histogram("nemo_serve_batch_size", "Requests (or stream windows) per model call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=reg)
        self.batch_seconds = Histogram("nemo_serve_batch_seconds", "Model call duration", buckets=LATENCY_BUCKETS,
                                       registry=reg)
        self.queue_wait = Histogram("nemo_serve_queue_wait_seconds", "Time the oldest request of a batch waited",
                                    buckets=LATENCY_BUCKETS, registry=reg)
        self.queue_depth = Gauge("nemo_serve_queue_depth", "Requests waiting for the model", registry=reg)
        self.real_time_factor = Histogram("nemo_serve_real_time_factor", "Model seconds per audio second",
                                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
                                          registry=reg)
        self.audio_seconds = Counter("nemo_serve_audio_seconds", "Audio recognised, by endpoint", ["endpoint"],
                                     registry=reg)
        self.streams_active = Gauge("nemo_serve_streams_active", "Open WebSocket streams", registry=reg)
        self.streams = Counter("nemo_serve_streams", "WebSocket streams by outcome", ["outcome"], registry=reg)
        self.stream_windows = Counter("nemo_serve_stream_windows", "Stream windows: recognised, or silent (the "
                                      "silence gate committed them as blank)", ["outcome"], registry=reg)

    def observe_batch(self, size, seconds, queue_wait):
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.queue_wait.observe(queue_wait)

    def render(self):
        """``(body, content type)`` of the Prometheus text exposition."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
