"""What counts as a secret, and how settings and errors are printed without them.

A property is secret when librdkafka itself marks it sensitive (its CONFIGURATION.md; it
prints those ``[redacted]`` in its own dumps), or when its name says so: password, secret,
passphrase, token, credential, private key, JAAS config, user info. URLs lose their
password (``redis://user:***@host``). Used for logs, error lines and anything rendered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

LIBRDKAFKA_SENSITIVE = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl_key",
        "ssl.keystore.password",
        "ssl.engine.callback_data",
    }
)
_SECRET_NAME = re.compile(
    r"pass(word|phrase)?|secret|token|credential|private[._ -]?key|jaas|user\.info|key\.pem"
    r"|api[._-]?key|auth",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
MASK = "***"


def is_secret(name: str) -> bool:
    """True for a property or setting whose value must never be shown."""
    lowered = name.lower()
    return lowered in LIBRDKAFKA_SENSITIVE or bool(_SECRET_NAME.search(lowered))


def redact_properties(props: Mapping[str, Any]) -> dict[str, Any]:
    """``props`` with every secret value replaced by ``***`` (URLs lose their password)."""
    return {
        k: MASK if is_secret(k) else redact_url(v) if isinstance(v, str) else v
        for k, v in props.items()
    }


def redact_url(text: str) -> str:
    """``redis://user:pass@host`` → ``redis://user:***@host``, anywhere in ``text``."""

    def mask(m: re.Match[str]) -> str:
        user = m["userinfo"].split(":", 1)[0] if ":" in m["userinfo"] else ""
        return f"{m['scheme']}{user}:{MASK}@"

    return _URL_CREDENTIALS.sub(mask, text)


def redact_values(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` (non-empty values) replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
