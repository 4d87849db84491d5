"""``streamer run``: the stream."""

from __future__ import annotations

import sys

from streamer.cli.common import ConfigFile, settings


def run(config: ConfigFile = None) -> None:
    """Consume, score and publish until SIGTERM/SIGINT (settings: STREAMER_* variables)."""
    from streamer import service
    from streamer.observability import logs

    loaded = settings(config, require=("kafka_bootstrap_servers", "input_topic", "output_topic"))
    logs.configure(loaded.log_level, json=loaded.log_format == "json")
    if loaded.workers > 1:  # STREAMER_WORKERS: a supervisor of N ordinary ``run`` processes
        from streamer.service import workers

        sys.exit(workers.supervise(loaded))  # click's Exit would be swallowed (not standalone)
    service.run(loaded)
