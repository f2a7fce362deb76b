"""``nemo-serve``: the speech service (HTTP, dynamic batching, WebSocket streaming, a browser page, metrics).

- ``model.ServingModel``: the loaded acoustic pipeline and its decoders;
- ``batcher.DynamicBatcher``: groups concurrent requests into batches;
- ``app.create_app``: the ASGI application (Starlette);
- ``cli.main``: the ``nemo-serve`` command (uvicorn).
"""
