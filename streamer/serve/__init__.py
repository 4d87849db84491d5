"""``streamer serve``: synchronous scoring over HTTP on the stream's own kernel.

The card-authorization path cannot wait for a topic, so this answers one request at a
time, but it scores with the same ``ScoringKernel``, feature cache, model and thresholds
as ``streamer run``: requests that arrive together are merged into one kernel call
(``batcher``), so throughput grows with load. Needs the ``serve`` extra (FastAPI and
uvicorn); the streaming core never imports this package.
"""
