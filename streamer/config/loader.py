"""Loading the settings: sources, precedence, unknown names, and errors that name the setting.

Precedence, highest first: keyword overrides (command-line flags), environment variables,
the YAML file given with ``--config``, defaults. Any librdkafka property passes through,
either in ``kafka_properties`` (YAML or a JSON environment value) or as
``STREAMER_KAFKA_PROP_<NAME>`` where ``<NAME>`` is the property with dots written as
underscores, e.g. ``STREAMER_KAFKA_PROP_SASL_MECHANISM=SCRAM-SHA-512``.

A ``STREAMER_*`` variable or YAML key that is not a setting is an error with a "did you
mean" suggestion: a misspelt ``STREAMER_MAX_BATCHSIZE`` silently ignored is worse.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict, SettingsError

from streamer.config.settings import ENV_PREFIX, Settings
from streamer.errors import ConfigError

KAFKA_PROP_PREFIX = "STREAMER_KAFKA_PROP_"
NOT_SETTINGS = ("STREAMER_DEV_", "STREAMER_TEST_", "STREAMER_IMAGE", "STREAMER_SCHEMAS_DIR")
"""Prefixes of ``STREAMER_*`` variables that belong to the dev tools, tests, compose and the
image (``STREAMER_SCHEMAS_DIR``: where the codec finds the schemas, read by ``codec.schemas``)."""


def env_name(loc: Iterable[str | int]) -> str:
    """The environment variable for a setting (or a validation error location)."""
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def load_settings(
    config_file: Path | None = None,
    *,
    require: Iterable[str] = (),
    **overrides: Any,
) -> Settings:
    """Read and validate the settings; a problem raises ``ConfigError`` naming the setting.

    ``require`` lists fields the calling command cannot do without (``input_topic``…).
    ``overrides`` are flags the user gave; None values are ignored.
    """
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"--config {config_file}: no such file")
    check_names(os.environ)
    cls: type[Settings] = Settings
    if config_file is not None:

        class FileSettings(Settings):
            model_config = SettingsConfigDict(yaml_file=config_file)

        cls = FileSettings
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = cls(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except SettingsError as exc:
        raise ConfigError(_settings_error(exc)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed YAML
        raise ConfigError(f"--config {config_file}: {exc}") from None
    try:
        settings.require(*require)
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    props = kafka_props_from_env(os.environ)
    if props:
        merged = {**settings.kafka_properties, **props}
        settings = settings.model_copy(update={"kafka_properties": merged})
    return settings


def kafka_props_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``STREAMER_KAFKA_PROP_SASL_MECHANISM=X`` → ``{"sasl.mechanism": "X"}``."""
    return {
        name[len(KAFKA_PROP_PREFIX) :].lower().replace("_", "."): value
        for name, value in environ.items()
        if name.startswith(KAFKA_PROP_PREFIX) and len(name) > len(KAFKA_PROP_PREFIX)
    }


def property_origin(prop: str, environ: Mapping[str, str] | None = None) -> str:
    """Which variable a librdkafka property came from, for an error message."""
    env = os.environ if environ is None else environ
    for name in env:
        if name.startswith(KAFKA_PROP_PREFIX) and kafka_props_from_env({name: ""}).get(prop) == "":
            return name
    return "STREAMER_KAFKA_PROPERTIES / STREAMER_CONSUMER_PROPERTIES / STREAMER_PRODUCER_PROPERTIES"


def known_names() -> dict[str, str]:
    """Every settings variable, by name, with its field."""
    return {env_name([field]): field for field in Settings.model_fields}


def check_names(environ: Mapping[str, str]) -> None:
    """Refuse ``STREAMER_*`` variables that are not settings, suggesting the closest one."""
    known = known_names()
    dict_fields = [n for n, f in known.items() if _is_dict(f)]
    problems = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        if name.startswith((KAFKA_PROP_PREFIX, *NOT_SETTINGS)):
            continue
        if any(name.startswith(f"{d}__") for d in dict_fields):
            continue
        problems.append(f"{name} is not a setting{_did_you_mean(name, known)}")
    if problems:
        raise ConfigError("; ".join(problems))


def _is_dict(field: str) -> bool:
    annotation = Settings.model_fields[field].annotation
    return getattr(annotation, "__origin__", None) is dict


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = tuple(error["loc"])
        if error["type"] == "missing":
            message = "is required but not set"
        elif error["type"] == "extra_forbidden":
            field = str(loc[0]) if loc else ""
            suggestion = _did_you_mean(env_name([field]), known_names())
            message = f"is not a setting{suggestion}"
        problems.append(f"{env_name(loc)} {message}" if loc else message)
    return "invalid configuration: " + "; ".join(problems)


def _settings_error(exc: SettingsError) -> str:
    """pydantic-settings says 'error parsing value for field "x" from source "…"'."""
    found = re.search(r'field "([a-z_]+)"', str(exc))
    if found is None:
        return f"invalid configuration: {exc}"
    return f"{env_name([found.group(1)])} is not valid JSON: give a JSON object, e.g. " + (
        '\'{"security.protocol": "SASL_SSL"}\''
    )
