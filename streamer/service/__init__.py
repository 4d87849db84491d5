"""The stream as a service: built from settings, checked, run until stopped."""

from streamer.service.assembly import Service, build, feature_cache, load
from streamer.service.runner import StopFlag, run

__all__ = ["Service", "StopFlag", "build", "feature_cache", "load", "run"]
