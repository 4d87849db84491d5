"""Features: the Redis layout, reference data, feature engineering, the cache and its loader.

The pure pieces (layout, reference data, engineering) are re-exported here, so training
code can ``from streamer import features`` and see the one definition serving uses. The
first ``import redis`` leaves out what streamer never uses (``redis_import``).
"""

from streamer.features.engineering import (
    FEATURE_NAMES,
    MAX_GAP_S,
    RISKY_MCCS,
    EventColumns,
    assemble,
    event_columns,
    unknown_features,
)
from streamer.features.layout import (
    CARD_DEFAULTS,
    CARD_FIELDS,
    CARD_INDEX,
    LAYOUT_VERSION,
    MERCHANT_DEFAULTS,
    MERCHANT_FIELDS,
    MERCHANT_INDEX,
    card_key,
    defaults_vector,
    merchant_key,
    pack,
    pack_rows,
    unpack_rows,
)
from streamer.features.redis_import import install as install_redis_import
from streamer.features.reference import (
    CHANNELS,
    ENTRY_MODES,
    KNOWN_CURRENCIES,
    country_code,
    country_codes,
    currency_exponent,
)

install_redis_import()  # before any module of this package imports redis

__all__ = [
    "CARD_DEFAULTS",
    "CARD_FIELDS",
    "CARD_INDEX",
    "CHANNELS",
    "ENTRY_MODES",
    "FEATURE_NAMES",
    "KNOWN_CURRENCIES",
    "LAYOUT_VERSION",
    "MAX_GAP_S",
    "MERCHANT_DEFAULTS",
    "MERCHANT_FIELDS",
    "MERCHANT_INDEX",
    "RISKY_MCCS",
    "EventColumns",
    "assemble",
    "card_key",
    "country_code",
    "country_codes",
    "currency_exponent",
    "defaults_vector",
    "event_columns",
    "merchant_key",
    "pack",
    "pack_rows",
    "unknown_features",
    "unpack_rows",
]
