"""The stream as a service: built from settings, checked, run until stopped.

Names are imported on first use: ``streamer run`` starts the model's last check before
it imports the rest of the stream (``runner``), so the two overlap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamer.lazy import exports

_EXPORTS = {
    "Service": "streamer.service.assembly",
    "build": "streamer.service.assembly",
    "feature_cache": "streamer.service.assembly",
    "load": "streamer.service.assembly",
    "StopFlag": "streamer.service.runner",
    "run": "streamer.service.runner",
}
__all__ = ["Service", "StopFlag", "build", "feature_cache", "load", "run"]

if TYPE_CHECKING:
    from streamer.service.assembly import Service, build, feature_cache, load
    from streamer.service.runner import StopFlag, run


__getattr__ = exports(__name__, _EXPORTS)
