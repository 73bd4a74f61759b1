"""Checksums and validity rules that turn a pattern match into a finding (pure functions)."""

from __future__ import annotations

import math
from collections import Counter

# IBAN length per country (SWIFT IBAN registry), as "CCnn" entries.
_IBAN_TABLE = """
AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22
DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HN28
HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25
MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29
RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29
VA22 VG24 XK20 YE30
"""
IBAN_LENGTHS: dict[str, int] = {e[:2]: int(e[2:]) for e in _IBAN_TABLE.split()}


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of a payment card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """Country length and the ISO 13616 mod-97 check (``iban``: upper case, no spaces)."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


_SSN_NEVER_ISSUED = frozenset({"078051120", "219099999", "123456789"})


def us_ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000; no known fakes."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_NEVER_ISSUED


_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def uk_nino_ok(prefix: str) -> bool:
    """HMRC prefix rules: D, F, I, Q, U, V never used; O never second; some pairs reserved."""
    first, second = prefix[0], prefix[1]
    if first in "DFIQUV" or second in "DFIOQUV":
        return False
    return prefix not in _NINO_BAD_PREFIXES


def shannon_bits(value: str) -> float:
    """Bits of entropy per character of ``value`` (0 for the empty string)."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())
