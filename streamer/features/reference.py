"""Reference data the features and validation share: countries, currencies, channels.

Pure lookup tables, built once at import.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

_COUNTRY_CODES: dict[str, float] = {
    a + b: float((ord(a.upper()) - 64) * 32 + (ord(b.upper()) - 64))
    for a in string.ascii_letters
    for b in string.ascii_letters
}  # every case variant is a key, so the vectorized path is one dict look-up per code


def country_code(alpha2: str | None) -> float:
    """A deterministic number for an ISO 3166-1 alpha-2 code: ``(A-64)*32 + (B-64)``.

    "DE" is 4*32 + 5 = 133. Anything that is not two ASCII letters (None, "", "D1") is 0.0,
    which the features read as unknown. Case does not matter.
    """
    return _COUNTRY_CODES.get(alpha2, 0.0) if alpha2 else 0.0


def country_codes(alpha2s: Sequence[str | None]) -> npt.NDArray[np.float64]:
    """``country_code`` of many codes at once (one dict look-up per code, no numpy per code)."""
    codes = map(_COUNTRY_CODES.get, alpha2s, repeat(0.0))  # type: ignore[arg-type]
    return np.fromiter(codes, dtype=np.float64, count=len(alpha2s))


# ISO 4217 active codes; exponents are 2 unless listed below.
_ISO_4217 = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP
    MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR
    RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW
    ZWG
"""
KNOWN_CURRENCIES: frozenset[str] = frozenset(_ISO_4217.split())
_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
}
MINOR_PER_MAJOR: dict[str, float] = {c: 10.0 ** _EXPONENTS.get(c, 2) for c in KNOWN_CURRENCIES}


def currency_exponent(code: str) -> int:
    """Minor-unit exponent of an ISO 4217 currency: JPY 0, EUR 2, KWD 3; unknown codes 2."""
    return _EXPONENTS.get(code, 2)


CHANNELS: tuple[str, ...] = ("POS", "ECOMMERCE", "ATM", "MOTO", "RECURRING", "UNKNOWN")
"""Channel symbols in schema order; a channel's code is its index."""
ENTRY_MODES: tuple[str, ...] = (
    "CHIP",
    "CONTACTLESS",
    "MAGSTRIPE",
    "MANUAL",
    "CREDENTIAL_ON_FILE",
    "TOKENIZED_WALLET",
    "UNKNOWN",
)
"""Entry-mode symbols in schema order; an entry mode's code is its index."""
CHANNEL_CODES = {s: i for i, s in enumerate(CHANNELS)}
ENTRY_CODES = {s: i for i, s in enumerate(ENTRY_MODES)}
THREE_DS_CODES: dict[bool | None, int] = {None: -1, False: 0, True: 1}
