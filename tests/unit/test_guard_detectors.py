"""PII detectors: checksums, positives of every kind, and hard negatives that must stay clean."""

from __future__ import annotations

import pytest

from extensions.guard.checks import iban_ok, luhn_ok, shannon_bits, uk_nino_ok, us_ssn_ok
from extensions.guard.detectors import Kind, redact_text, scan, scan_text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("digits", "ok"),
    [
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("79927398713", True),
        ("378282246310005", True),  # Amex test number
        ("378282246310006", False),
        ("6011111111111117", True),
    ],
)
def test_luhn(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok


@pytest.mark.parametrize(
    ("iban", "ok"),
    [
        ("GB82WEST12345698765432", True),
        ("DE89370400440532013000", True),
        ("NO9386011117947", True),  # the shortest country
        ("GB82WEST12345698765431", False),  # one digit off: mod 97 fails
        ("GB82WEST1234569876543", False),  # GB IBANs have 22 characters
        ("XX82WEST12345698765432", False),  # no such country
        ("DE8937040044053201300", False),
    ],
)
def test_iban_check(iban: str, ok: bool) -> None:
    assert iban_ok(iban) is ok


@pytest.mark.parametrize(
    ("ssn", "ok"),
    [
        ("123-45-6788", True),
        ("000-12-3456", False),
        ("666-12-3456", False),
        ("912-12-3456", False),
        ("123-00-4567", False),
        ("123-45-0000", False),
        ("078-05-1120", False),  # the Woolworth wallet number
    ],
)
def test_us_ssn_rules(ssn: str, ok: bool) -> None:
    assert us_ssn_ok(*ssn.split("-")) is ok


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("AB", True),
        ("CE", True),
        ("DA", False),
        ("AO", False),
        ("QA", False),
        ("GB", False),
        ("ZZ", False),
        ("TN", False),
    ],
)
def test_uk_nino_prefix_rules(prefix: str, ok: bool) -> None:
    assert uk_nino_ok(prefix) is ok


def test_entropy() -> None:
    assert shannon_bits("") == 0.0
    assert shannon_bits("aaaa") == 0.0
    assert shannon_bits("abcd") == pytest.approx(2.0)


POSITIVES = [
    ("mail me at john.doe+news@example.co.uk today", Kind.EMAIL, "john.doe+news@example.co.uk"),
    ("Contact: ANNA_B@mail.example.org.", Kind.EMAIL, "ANNA_B@mail.example.org"),
    ("call +44 20 7946 0958 tomorrow", Kind.PHONE, "+44 20 7946 0958"),
    ("Call me at (555) 123-4567 after 5pm.", Kind.PHONE, "(555) 123-4567"),
    ("office 206.269.0743x9150", Kind.PHONE, "206.269.0743x9150"),
    ("my mobile 07700 900123", Kind.PHONE, "07700 900123"),
    ("Tel: +33 1 83 41 77 76", Kind.PHONE, "+33 1 83 41 77 76"),
    ("text me on 5551234567", Kind.PHONE, "5551234567"),  # bare digits next to a phone word
    ("Front desk: 0161 496 0000", Kind.PHONE, "0161 496 0000"),
    ("card 4111 1111 1111 1111 exp 04/27", Kind.CARD, "4111 1111 1111 1111"),
    ("amex 3782-822463-10005", Kind.CARD, "3782-822463-10005"),
    ("charge 5555555555554444 please", Kind.CARD, "5555555555554444"),
    ("Card: 4111 1111 1111 1111 123", Kind.CARD, "4111 1111 1111 1111"),  # CVV right after
    ("IBAN DE89 3704 0044 0532 0130 00 please", Kind.IBAN, "DE89 3704 0044 0532 0130 00"),
    ("to GB82WEST12345698765432.", Kind.IBAN, "GB82WEST12345698765432"),
    ("SSN 219-45-6789 on file", Kind.US_SSN, "219-45-6789"),
    ("ssn: 219456789", Kind.US_SSN, "219456789"),  # bare digits next to the word
    ("NINO AB 12 34 56 C.", Kind.UK_NINO, "AB 12 34 56 C"),
    ("ni number JG103759A", Kind.UK_NINO, "JG103759A"),
    (
        "key sk-proj-abcDEF1234567890abcdefGHIJ ok",
        Kind.SECRET,
        "sk-proj-abcDEF1234567890abcdefGHIJ",
    ),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", Kind.SECRET, "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("id AKIAIOSFODNN7EXAMPL3 here", Kind.SECRET, "AKIAIOSFODNN7EXAMPL3"),
    ("ghp_" + "a1B2" * 9, Kind.SECRET, "ghp_" + "a1B2" * 9),
    (
        "SLACK=xoxb-12345678901-1234567890123-AbCdEf",
        Kind.SECRET,
        "xoxb-12345678901-1234567890123-AbCdEf",
    ),
    (
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCY3K9z2",
        Kind.SECRET,
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCY3K9z2",
    ),
    ('{"password": "Tr0ub4dor&3xKq9zLm2"}', Kind.SECRET, "Tr0ub4dor&3xKq9zLm2"),
    (
        "app.yaml:\n  client_secret: 6a885cf648431ff1b52910491fa432d7\n",
        Kind.SECRET,
        "6a885cf648431ff1b52910491fa432d7",
    ),
    (
        "Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        Kind.SECRET,
        "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    ),
]


@pytest.mark.parametrize(("text", "kind", "value"), POSITIVES, ids=[p[2][:24] for p in POSITIVES])
def test_detects(text: str, kind: Kind, value: str) -> None:
    found = scan_text(text)
    assert [(text[f.start : f.end], f.kind) for f in found] == [(value, kind)]


def test_private_key_block_even_without_its_end() -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1x\nabc\n-----END RSA PRIVATE KEY-----"
    )
    found = scan_text(f"key:\n{block}\nthanks")
    assert [(f.kind, f.start, f.end) for f in found] == [(Kind.SECRET, 5, 5 + len(block))]
    cut = "paste: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    (finding,) = scan_text(cut)
    assert finding.end == len(cut) and finding.rule == "private_key"


HARD_NEGATIVES = [
    "Where is my order #4829103847?",
    "order 555-123-4567 still shows processing",
    "my account number is 1972207228",
    "ticket 415 555 0199 was closed",
    "The meeting moved to 2024-05-12 at 14:30, then 12/05/2024 09:15.",
    "Opening hours 09:30-17:30, closed on 24.12.2024.",
    "from 1998-2004 I lived abroad",
    "After upgrading to 1.108.0 the build broke; we run Python 3.11.7.",
    "The total was $1,299.99 plus €12.50 shipping, or USD 12,499,000.",
    "Request 123e4567-e89b-12d3-a456-426614174000 failed",
    "commit 3f2a9c1b4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f90 broke the tests",
    "The server at 192.168.100.200 is not responding.",
    "ISBN 978-3-16-148410-0 and barcode 4006381333931",
    "Is 4111 1111 1111 1112 a valid card number?",  # fails Luhn
    "code 1234567812345678",  # fails Luhn
    "The IBAN DE89 3704 0044 0532 0130 01 was rejected.",  # fails mod 97
    "account GB82WEST1234569876543",  # too short for GB
    "Example SSN format: 000-12-3456, or 666-12-3456",
    "NI number ZZ 083778 T was not accepted",  # Faker's placeholder NINO
    "We have 1 000 000 users; the population is 8 100 000 000.",
    "Coordinates 51.5074, -0.1278",
    "pip install scikit-learn and import sklearn",
    "set api_key=YOUR_API_KEY_HERE in the config",
    'api_key = os.environ["OPENAI_API_KEY"]',
    "password: ********",
    "branch sk-learn-docs-fix-for-the-readme is merged",
    "Save it as icon@2x.png please, then ping @dev-team.",
    "the checksum should be 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "zip code 90210-1234, pages 100-250",
    "Part 535-33-7186-A is out of stock.",  # an SSN shape inside a longer code
]


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_hard_negatives_stay_clean(text: str) -> None:
    found = scan_text(text)
    assert [(text[f.start : f.end], f.kind.value) for f in found] == []


def test_overlaps_go_to_the_stronger_kind() -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00, card 4111-1111-1111-1111"
    assert [f.kind for f in scan_text(text)] == [Kind.IBAN, Kind.CARD]


def test_scan_several_texts_and_a_subset_of_kinds() -> None:
    texts = ["a@b.example.com", "", "call +1 415 555 0100", "card 4111111111111111"]
    found = scan(texts)
    assert [(f.text, f.kind) for f in found] == [(0, Kind.EMAIL), (2, Kind.PHONE), (3, Kind.CARD)]
    assert [f.text for f in scan(texts, {Kind.CARD})] == [3]


def test_redact_text_replaces_each_finding_with_its_label() -> None:
    text = "mail a.b@example.com or call +44 20 7946 0958, card 4111111111111111."
    assert redact_text(text, scan_text(text)) == "mail [EMAIL] or call [PHONE], card [CARD]."
    assert redact_text("nothing", []) == "nothing"
