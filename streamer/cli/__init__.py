"""The ``streamer`` command line."""

from streamer.cli.app import app, main

__all__ = ["app", "main"]
