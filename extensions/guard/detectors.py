"""Find personal data and secrets in text: ``scan(texts) -> findings`` (pure, no I/O).

Each detector is a regular expression for candidates plus a check that keeps the
real ones: Luhn and issuer prefixes for cards, country length and mod-97 for IBANs,
SSA rules for US SSNs, HMRC prefix rules for UK NINOs, structure and surrounding
words for phone numbers, entropy for generic ``api_key=`` values. Overlapping
candidates are resolved by kind priority (secrets first, phone numbers last).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from extensions.guard.checks import (
    IBAN_LENGTHS,
    iban_ok,
    luhn_ok,
    shannon_bits,
    uk_nino_ok,
    us_ssn_ok,
)


class Kind(StrEnum):
    """A kind of sensitive data; ``[NAME]`` replaces it when redacted."""

    SECRET = "secret"  # API keys, access tokens, private key blocks
    IBAN = "iban"
    CARD = "card"
    EMAIL = "email"
    US_SSN = "us_ssn"
    UK_NINO = "uk_nino"
    PHONE = "phone"

    @property
    def label(self) -> str:
        return f"[{self.name}]"


ALL_KINDS: frozenset[Kind] = frozenset(Kind)
_PRIORITY = {kind: i for i, kind in enumerate(Kind)}  # lower wins an overlap


@dataclass(frozen=True, slots=True)
class Finding:
    """``texts[text]`` holds data of ``kind`` at ``[start, end)``; ``rule`` names the detector."""

    text: int
    start: int
    end: int
    kind: Kind
    rule: str


Span = tuple[int, int, str]  # start, end, rule
Detector = Callable[[str], Iterator[Span]]

# ---------------------------------------------------------------- e-mail addresses

# Patterns start with a character class where they can (a lookbehind comes after it):
# the regular expression engine then skips quickly to the positions worth trying.
_EMAIL_DOMAIN = re.compile(
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w-])"
)
_LOCAL_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_FILE_SUFFIXES = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "js", "ts", "css", "py", "html", "json"}
)


def _emails(text: str) -> Iterator[Span]:
    if "@" not in text:
        return
    for m in _EMAIL_DOMAIN.finditer(text):
        if m.group(1).lower() in _FILE_SUFFIXES:  # icon@2x.png is a file name
            continue
        at = start = m.start()
        while start > 0 and text[start - 1] in _LOCAL_PART and at - start <= 64:
            start -= 1
        if start == at or at - start > 64 or not text[start].isalnum():
            continue
        if start > 0 and text[start - 1].isalnum():  # a letter outside ASCII
            continue
        yield start, m.end(), "email"


# ---------------------------------------------------------------- payment cards

_CARD = re.compile(r"\d(?<![\w+.,/-]\d)(?:[ -]?\d){12,18}(?![\w]|[.,/-]\d)")
_CARD_ISSUER = re.compile(
    r"4(?:\d{12}|\d{15}|\d{18})"  # Visa 13, 16, 19
    r"|5[1-5]\d{14}|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)\d{12}"  # Mastercard
    r"|3[47]\d{13}"  # American Express
    r"|3(?:0[0-5]|[689]\d)\d{11,16}"  # Diners Club
    r"|35\d{14,17}|(?:2131|1800)\d{11}"  # JCB
    r"|6\d{15,18}"  # Discover, UnionPay, Maestro 6
    r"|5[06-9]\d{11,17}"  # Maestro 5
)


def _card_groups_ok(candidate: str) -> bool:
    """No separators, or one separator kind between groups of 4 (Amex/Diners: 4-6-5, 4-6-4)."""
    seps = {ch for ch in candidate if not ch.isdigit()}
    if not seps:
        return True
    if len(seps) > 1:
        return False
    sizes = [len(g) for g in candidate.split(seps.pop())]
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(s == 4 for s in sizes[:-1]) and 1 <= sizes[-1] <= 4


def _card_ok(candidate: str) -> bool:
    digits = candidate.replace(" ", "").replace("-", "")
    return bool(_card_groups_ok(candidate) and _CARD_ISSUER.fullmatch(digits) and luhn_ok(digits))


def _cards(text: str) -> Iterator[Span]:
    for m in _CARD.finditer(text):
        candidate = m.group()
        # the whole run, else without a last group of 3-4 digits: a CVV right after the
        # number ("4111 1111 1111 1111 123")
        cut = max(candidate.rfind(" "), candidate.rfind("-"))
        ends = [len(candidate)] + ([cut] if 3 <= len(candidate) - cut - 1 <= 4 else [])
        for end in ends:
            if _card_ok(candidate[:end]):
                yield m.start(), m.start() + end, "card_luhn"
                break


# ---------------------------------------------------------------- IBANs

_IBAN = re.compile(r"([A-Z](?<!\w[A-Z])[A-Z]\d{2})((?: ?[A-Z0-9]){10,32})")


def _ibans(text: str) -> Iterator[Span]:
    for m in _IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1)[:2])
        if length is None:
            continue
        body, taken, end = m.group(2), 0, m.start(2)
        for i, ch in enumerate(body):
            if ch != " ":
                taken += 1
                if taken == length - 4:
                    end = m.start(2) + i + 1
                    break
        else:
            continue
        if end < len(text) and text[end].isalnum():  # longer than this country's IBANs
            continue
        if iban_ok(m.group(1) + text[m.start(2) : end].replace(" ", "")):
            yield m.start(), end, "iban_mod97"


# ---------------------------------------------------------------- national identifiers

# (?![\w]|-\w): not part of a longer code such as 123-45-6789-A
_SSN = re.compile(r"(\d(?<![\w-]\d)\d\d)([- ])(\d{2})\2(\d{4})(?![\w]|-\w)")
_SSN_BARE = re.compile(r"(\d(?<![\w-]\d)\d\d)(\d{2})(\d{4})(?![\w]|-\w)")
_SSN_CONTEXT = re.compile(r"(?i)\b(?:ssn|social security|ss#|ss no)")


def _us_ssns(text: str) -> Iterator[Span]:
    for m in _SSN.finditer(text):
        if us_ssn_ok(m.group(1), m.group(3), m.group(4)):
            yield m.start(), m.end(), "us_ssn"
    if not _SSN_CONTEXT.search(text):
        return
    for m in _SSN_BARE.finditer(text):  # nine bare digits only next to the words
        if _SSN_CONTEXT.search(text, max(0, m.start() - 32), m.start()) and us_ssn_ok(*m.groups()):
            yield m.start(), m.end(), "us_ssn_context"


_NINO = re.compile(r"([A-Z](?<!\w[A-Z])[A-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-D])(?!\w)")


def _uk_ninos(text: str) -> Iterator[Span]:
    for m in _NINO.finditer(text):
        if uk_nino_ok(m.group(1)):
            yield m.start(), m.end(), "uk_nino"


# ---------------------------------------------------------------- phone numbers

_PHONE = re.compile(r"[+(\d][\d \t().-]{5,30}\d(?:\s?(?:x|ext\.?\s?)\d{1,5})?")
_NOT_BEFORE_PHONE = frozenset("_@.+/:#$€£%,-")  # nor a letter or digit
_PHONE_WORDS = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|ring|text|sms|whatsapp|fax|dial"
    r"|contact|reach)\w*"
)
_NOT_PHONE_WORDS = re.compile(
    r"(?i)\b(?:order|invoice|ref|reference|tracking|account|acct|ticket|case|sku|serial"
    r"|item|part|po|confirmation|booking|transaction|id|isbn|version|build|zip|postcode"
    r"|total|amount|population|batch|lot|policy|claim|customer no|ssn|social security|nino"
    r"|national insurance|iban)\b"
)
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{4}-\d{4}")
_EXTENSION = re.compile(r"\s?(?:x|ext\.?\s?)\d{1,5}$")
_GROUPS = re.compile(r"\d+")


def _context(text: str, start: int) -> tuple[int, int]:
    """Where the nearest phone word and non-phone word end before ``start`` (-1: none)."""
    window = text[max(0, start - 40) : start]
    phone = max((m.end() for m in _PHONE_WORDS.finditer(window)), default=-1)
    other = max((m.end() for m in _NOT_PHONE_WORDS.finditer(window)), default=-1)
    return phone, other


def _phone_ok(candidate: str, text: str, start: int) -> bool:
    core = _EXTENSION.sub("", candidate)
    groups = _GROUPS.findall(core)
    digits = "".join(groups)
    n = len(digits)
    if n < 7 or n > 17 or _DATE.fullmatch(core):
        return False
    international = core.startswith("+") or (core.startswith("00") and digits[2:3] != "0")
    dotted = "." in core and not international
    if dotted and (len(groups) == 2 or (len(groups) == 4 and max(map(len, groups)) <= 3)):
        return False  # a decimal number or an IP address
    phone_word, other_word = _context(text, start)
    if other_word > phone_word:
        return False  # "order 555-123-4567", "ticket 0113 496 0000"
    if international:
        return 8 <= n - (2 if core.startswith("00") else 0) <= 15
    if n > 15:
        return False
    if phone_word >= 0:
        return True
    if len(groups) < 2 or n > 12:
        return False  # bare digits need a phone word nearby
    sizes = [len(g) for g in groups]
    nanp = (n == 10 and sizes in ([3, 3, 4], [3, 7])) or (n == 11 and sizes == [1, 3, 3, 4])
    national = digits[0] == "0" and 10 <= n <= 12 and min(sizes) >= 2 and sizes != [3, 2, 4]
    return nanp or national


def _phone_bounded(text: str, start: int, end: int) -> bool:
    """Not glued to a word, a path, an amount or a longer number on either side."""
    before = text[start - 1] if start else " "
    if before.isalnum() or before in _NOT_BEFORE_PHONE:
        return False
    if text[start] in "+(" and not text[start + 1].isdigit():
        return False
    after = text[end : end + 2]
    if not after:
        return True
    return not (
        after[0].isalnum() or after[0] in "_/" or (after[0] in ".,:-" and after[1:].isdigit())
    )


def _phones(text: str) -> Iterator[Span]:
    for m in _PHONE.finditer(text):
        if not _phone_bounded(text, m.start(), m.end()):
            continue
        candidate = m.group().rstrip(" \t.-(")
        if candidate.count("(") != candidate.count(")"):
            continue
        if _phone_ok(candidate, text, m.start()):
            yield m.start(), m.start() + len(candidate), "phone"


# ---------------------------------------------------------------- secrets

_SECRET = re.compile(
    r"(?P<openai>\bsk-(?:proj-|ant-(?:api\d\d-)?|live-|test-)?[A-Za-z0-9_-]{20,})"
    r"|(?P<stripe>\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,})"
    r"|(?P<aws_access_key>\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b)"
    r"|(?P<github_token>\bgh[pousr]_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{22,255})"
    r"|(?P<slack_token>\bxox[abposr]-[A-Za-z0-9-]{10,})"
    r"|(?P<slack_webhook>https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,})"
    r"|(?P<google_api_key>\bAIza[0-9A-Za-z_-]{35})"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
    r"|(?P<private_key>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*\Z))",
    re.DOTALL,
)
_SECRET_MARKERS: tuple[str, ...] = (
    "sk-",
    "sk_",
    "rk_",
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "ghp_",
    "gho_",
    "ghu_",
)
_SECRET_MARKERS += (
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "hooks.slack",
    "AIza",
    "eyJ",
    "-----BEGIN",
)
# a value assigned to a name that ends like a secret's (AWS_SECRET_ACCESS_KEY=, "password": ...)
_ASSIGNED = re.compile(r"[:=](?=[ \t]*[\"']?([^\s\"'`<>,;]{12,}))")  # zero-width: overlaps
_SECRET_NAME = re.compile(  # just before the ':' or '=' of _ASSIGNED
    r"(?i)(?:api[_-]?key|apikey|secret|access[_-]?key|token|password|passwd|pwd"
    r"|private[_-]?key|credentials?)[\"']?\s*$"
)
_BEARER = re.compile(r"(?i)\bbearer\s+([^\s\"'`<>,;]{12,})")
_ASSIGN_MARKERS = ("key", "secret", "token", "pass", "pwd", "bearer", "credential")
_PLACEHOLDER = re.compile(r"(?i)your|example|xxxx|changeme|placeholder|redacted|dummy|<|\$\{")


def _high_entropy(value: str, min_bits: float) -> bool:
    return (
        any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and shannon_bits(value) >= min_bits
        and not _PLACEHOLDER.search(value)
    )


def _secrets(text: str) -> Iterator[Span]:
    if any(marker in text for marker in _SECRET_MARKERS):
        for m in _SECRET.finditer(text):
            rule = m.lastgroup or "secret"
            if rule != "openai" or _high_entropy(m.group(), 3.5):  # not "sk-learn-docs-..."
                yield m.start(), m.end(), rule
    lower = text.lower()
    if not any(marker in lower for marker in _ASSIGN_MARKERS):
        return
    for m in _ASSIGNED.finditer(text):
        if _SECRET_NAME.search(text, max(0, m.start() - 32), m.start()):
            value = m.group(1).rstrip(".)]}")
            if _high_entropy(value, 3.0):
                yield m.start(1), m.start(1) + len(value), "assigned_secret"
    if "bearer" in lower:
        for m in _BEARER.finditer(text):
            value = m.group(1).rstrip(".)]}")
            if _high_entropy(value, 3.0):
                yield m.start(1), m.start(1) + len(value), "bearer_token"


# ---------------------------------------------------------------- scanning

_DIGIT = re.compile(r"\d")
DETECTORS: dict[Kind, Detector] = {
    Kind.SECRET: _secrets,
    Kind.IBAN: _ibans,
    Kind.CARD: _cards,
    Kind.EMAIL: _emails,
    Kind.US_SSN: _us_ssns,
    Kind.UK_NINO: _uk_ninos,
    Kind.PHONE: _phones,
}
_NEED_DIGITS = frozenset({Kind.IBAN, Kind.CARD, Kind.US_SSN, Kind.UK_NINO, Kind.PHONE})


def scan_text(text: str, kinds: Collection[Kind] = ALL_KINDS, index: int = 0) -> list[Finding]:
    """Non-overlapping findings in ``text``, in order of position."""
    has_digits = _DIGIT.search(text) is not None
    found = [
        Finding(index, start, end, kind, rule)
        for kind in Kind
        if kind in kinds and (has_digits or kind not in _NEED_DIGITS)
        for start, end, rule in DETECTORS[kind](text)
    ]
    if len(found) > 1:
        found.sort(key=lambda f: (_PRIORITY[f.kind], f.start))
        kept: list[Finding] = []
        for f in found:
            if all(f.end <= k.start or f.start >= k.end for k in kept):
                kept.append(f)
        found = kept
    found.sort(key=lambda f: f.start)
    return found


def scan(texts: Sequence[str], kinds: Collection[Kind] = ALL_KINDS) -> list[Finding]:
    """Findings in every text of ``texts`` (``Finding.text`` is its index)."""
    return [f for i, text in enumerate(texts) if text for f in scan_text(text, kinds, i)]


def redact_text(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with each finding replaced by ``[KIND]`` (findings of this text, in order)."""
    if not findings:
        return text
    out, pos = [], 0
    for f in findings:
        out.append(text[pos : f.start])
        out.append(f.kind.label)
        pos = f.end
    out.append(text[pos:])
    return "".join(out)
