"""Build the labelled PII evaluation set from synthetic values (needs Faker: dev only).

    python -m extensions.guard.synth --split dev --out extensions/guard/data/pii_dev.jsonl
    python -m extensions.guard.synth --split test --out extensions/guard/data/pii_test.jsonl

Each line is one chat message: ``{"id", "text", "spans": [{"start", "end", "kind"}],
"tags"}``. Values come from Faker (names, e-mails, phones of several locales, card
numbers, IBANs, US SSNs, dates, prices, UUIDs, ...) or from generators here (UK
NINOs, API keys, private keys, hard negatives). The two splits use different seeds
and disjoint halves of the sentence templates, so the test split also measures
phrasings the detectors were not tuned on.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from extensions.guard.checks import iban_ok, luhn_ok, uk_nino_ok, us_ssn_ok
from extensions.guard.detectors import Kind

SEEDS = {"dev": 1801, "test": 1802}
COUNT = 1600
PHONE_LOCALES = ("en_US", "en_GB", "fr_FR", "de_DE", "en_AU", "nl_NL", "es_ES", "it_IT", "en_IN")
IBAN_LOCALES = ("en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "en_IE", "pt_BR")
CARD_TYPES = ("visa16", "visa13", "visa19", "mastercard", "amex", "discover", "diners", "jcb16")
ALNUM = string.ascii_letters + string.digits
SLOT = re.compile(r"\{(\w+)\}")

# ---------------------------------------------------------------- templates
# {kind} slots are labelled spans; every other slot is unlabelled text.

POSITIVE: dict[Kind, list[str]] = {
    Kind.EMAIL: [
        "Please send the invoice to {email} by Friday.",
        "My email is {email}, can you update my account?",
        "{name} <{email}> wrote: see the attached report.",
        "cc {email} and {email} on the thread please",
        "Contact: {email}",
        "I changed my login to {email} yesterday but the reset mail never arrived.",
        "Reply-To: {email}",
        "forward this to {email} thanks",
        "Her work address is {email} and she prefers email over calls.",
        "Can you draft a reply to {email} about the delayed shipment?",
    ],
    Kind.PHONE: [
        "Call me at {phone} after 5pm.",
        "{name}\n{company}\n{phone}",
        "My mobile number is {phone}.",
        "You can reach the front desk on {phone}.",
        "Tel: {phone}",
        "{name} - {phone} - {city}",
        "please text {phone} when the driver arrives",
        "Our office line {phone} is open weekdays.",
        "If it breaks again ring {phone} and ask for {first}.",
        "Phone: {phone} / Fax: {phone}",
    ],
    Kind.CARD: [
        "My card number is {card}, expiry {expiry}.",
        "charge it to {card} please",
        "Card: {card} CVV {cvv}",
        "The payment with {card} was declined twice.",
        "I want to remove the card {card} from my profile.",
        "use {card} exp {expiry} for the booking",
        "Why was {card} charged {price} on {date}?",
        "visa {card}",
        "Replace my old card ending in the number {card} with the new one.",
        "billing details: {name}, {card}, {expiry}",
    ],
    Kind.IBAN: [
        "Please wire the refund to IBAN {iban}.",
        "My bank account is {iban} ({company}).",
        "IBAN: {iban}\nBIC: {bic}",
        "transfer {price} to {iban} by {date}",
        "Can you change the payout account to {iban}?",
        "The direct debit from {iban} failed.",
        "Beneficiary {name}, account {iban}",
        "send it to {iban} thx",
        "I entered {iban} but the form says it is invalid, why?",
        "Refund account holder: {name}; IBAN {iban}",
    ],
    Kind.US_SSN: [
        "My SSN is {us_ssn}.",
        "social security number: {us_ssn}",
        "{name}, DOB {date}, SSN {us_ssn}",
        "The form asks for {us_ssn} again even though I entered it.",
        "ssn {us_ssn} dob {date}",
        "Employee {name} ({us_ssn}) starts on {date}.",
        "I think I mistyped my social, it should be {us_ssn}",
        "Tax ID on file: {us_ssn}",
    ],
    Kind.UK_NINO: [
        "My National Insurance number is {uk_nino}.",
        "NI number: {uk_nino}",
        "{name}, NINO {uk_nino}, started {date}",
        "HMRC says {uk_nino} is not linked to my account.",
        "ni no {uk_nino}",
        "Payroll record for {name}: {uk_nino}",
        "my national insurance is {uk_nino} if you need it",
        "Please update the NINO to {uk_nino}.",
    ],
    Kind.SECRET: [
        'Why does this fail? client = OpenAI(api_key="{openai_key}")',
        "export OPENAI_API_KEY={openai_key}",
        "AWS_ACCESS_KEY_ID={aws_key}\nAWS_SECRET_ACCESS_KEY={assigned}",
        "my token {github_token} stopped working",
        "git clone https://{github_token}@github.com/{user}/app.git fails",
        "SLACK_BOT_TOKEN={slack_token}",
        'stripe.api_key = "{stripe_key}"',
        "api_key: {assigned}",
        "curl -H 'Authorization: Bearer {assigned}' https://api.example.com/v1",
        "here is the key file:\n{private_key}",
        'password = "{assigned}"',
        "maps key {google_key} is rate limited",
        "The JWT {jwt} expired, how do I refresh it?",
        "config.yaml:\n  client_secret: {assigned}\n  region: eu-west-1",
        "use {openai_key} for now, I will rotate it later",
        "{aws_key} is the access key id from the console",
    ],
}

NEGATIVE: dict[str, list[str]] = {
    "order_number": [
        "Where is my order #{order}?",
        "Order number {order_digits} was shipped on {date}.",
        "order {order_dashed} still shows processing",
        "Invoice {invoice} for order {order_digits} is attached.",
        "My order id is {order_digits}, placed {date}.",
        "ref {order_dashed}",
    ],
    "tracking": [
        "Tracking number {tracking} shows no movement.",
        "The parcel {tracking} is stuck in customs.",
        "tracking {tracking_digits}",
        "USPS tracking: {tracking_digits}",
    ],
    "date_time": [
        "The meeting moved to {date} at {time}.",
        "Booked for {date_slash}, {time} to {time2}.",
        "Opening hours {time}-{time2}, closed on {date_dot}.",
        "Delivery window: {date} {time}",
        "It happened on {date_slash} around {time}.",
        "from {year}-{year2} I lived abroad",
    ],
    "version": [
        "After upgrading to {version} the build broke.",
        "pip install litellm=={version}",
        "We run Python {version} and Node v{version}.",
        "Release {version} fixes the login bug.",
    ],
    "price": [
        "The total was {price} plus {price} shipping.",
        "Is {price_big} the final price?",
        "The budget is {price_big} for {year}.",
        "It costs {price} a month or {price} a year.",
    ],
    "uuid_hash": [
        "Request {uuid} failed with a 500.",
        "commit {sha} broke the tests",
        "the checksum should be {sha256}",
        "session id {uuid}",
        "error trace id {hex16}",
    ],
    "network": [
        "The server at {ip} is not responding.",
        "ping {ip} returns timeouts since {time}",
        "whitelist {ip} and {ip} please",
    ],
    "codes": [
        "ISBN {isbn}",
        "The barcode {ean} does not scan.",
        "serial number {serial}",
        "Part {part} is out of stock.",
        "my account number is {account}",
        "ticket {ticket} was closed without an answer",
        "Policy {policy} renews on {date}.",
    ],
    "quantity": [
        "We have {quantity} users and {quantity} requests a day.",
        "The population is about {population}.",
        "Coordinates {coords}",
        "Between pages {page}-{page2} there is a typo.",
        "zip code {zip}",
    ],
    "non_luhn_card": [
        "Is {bad_card} a valid card number?",
        "the test card {bad_card} keeps failing",
        "number {bad_card} on the gift voucher",
        "code {bad_card}",
    ],
    "invalid_iban": [
        "The IBAN {bad_iban} was rejected by the bank.",
        "Is {bad_iban} a real account?",
        "account {bad_iban}",
        "IBAN: {bad_iban}",
    ],
    "invalid_national_id": [
        "Example SSN format: {bad_ssn}",
        "the form rejected {bad_ssn}",
        "NI number {bad_nino} was not accepted",
        "HMRC reference {bad_nino}",
    ],
    "secret_lookalike": [
        "pip install scikit-learn and import sklearn",
        "set api_key={placeholder} in the config",
        'api_key = os.environ["OPENAI_API_KEY"]',
        "password: {placeholder}",
        "Use a key that starts with sk- followed by letters.",
        "token=<your token here>",
        "Authorization: Bearer $TOKEN",
        "branch sk-learn-{word}-{word}-fix is merged",
    ],
    "email_lookalike": [
        "Save it as icon@2x.png please.",
        "npm install @types/node @{user}/utils",
        "ping @{user} on the channel",
        "run pip install package@{version}",
    ],
}

CLEAN = [
    "Can you summarise this article for me? {paragraph}",
    "Write a short poem about {word} and {word}.",
    "{sentence} {sentence}",
    "What is the difference between a list and a tuple in Python?",
    "Translate to French: {sentence}",
    "How do I reset my password?",
    "I was charged twice this month, please help.",
    "Explain {catch_phrase} in simple terms.",
    "{paragraph}",
    "My name is {name} and I live in {city}. {sentence}",
    "Is {company} open on Sundays?",
    "Give me three ideas for a {word} themed party.",
]


def halves(templates: Sequence[str], split: str) -> list[str]:
    """Even-numbered templates for dev, odd-numbered for test."""
    return list(templates[0 if split == "dev" else 1 :: 2])


class Values:
    """Seeded generators for every slot."""

    def __init__(self, seed: int) -> None:
        from faker import Faker

        self.rng = random.Random(seed)
        self.locale: dict[str, Any] = {}
        for i, loc in enumerate(sorted({"en_US", *PHONE_LOCALES, *IBAN_LOCALES})):
            fake = Faker(loc)
            fake.seed_instance(seed * 100 + i)
            self.locale[loc] = fake
        self.fake = self.locale["en_US"]

    def pick(self, options: Sequence[str]) -> str:
        return self.rng.choice(options)

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def digits(self, n: int) -> str:
        return str(self.rng.randint(1, 9)) + self.chars(string.digits, n - 1)

    # ------------------------------------------------ labelled values

    def email(self) -> str:
        f = self.fake
        value: str = self.pick([f.email(), f.free_email(), f.company_email(), f.ascii_email()])
        if self.rng.random() < 0.2:
            local, domain = value.split("@")
            value = f"{f.first_name().lower()}.{local}+{f.word()}@{domain}"
        return value

    def phone(self) -> str:
        while True:
            value: str = self.locale[self.pick(PHONE_LOCALES)].phone_number()
            if not value.startswith("000"):
                return value

    def card(self) -> str:
        number: str = self.fake.credit_card_number(card_type=self.pick(CARD_TYPES))
        assert luhn_ok(number)
        style = self.rng.random()
        if style < 0.4:
            return number
        sep = " " if style < 0.8 else "-"
        if len(number) == 15:
            return sep.join([number[:4], number[4:10], number[10:]])
        return sep.join(number[i : i + 4] for i in range(0, len(number), 4))

    def iban(self) -> str:
        value: str = self.locale[self.pick(IBAN_LOCALES)].iban()
        assert iban_ok(value), value
        if self.rng.random() < 0.5:
            return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        return value

    def us_ssn(self) -> str:
        value: str = self.fake.ssn()
        area, group, serial = value.split("-")
        assert us_ssn_ok(area, group, serial)
        return value if self.rng.random() < 0.85 else value.replace("-", " ")

    def uk_nino(self) -> str:
        while True:
            prefix = self.chars(string.ascii_uppercase, 2)
            if uk_nino_ok(prefix):
                break
        d = self.chars(string.digits, 6)
        suffix = self.pick("ABCD")
        if self.rng.random() < 0.5:
            return f"{prefix}{d}{suffix}"
        return f"{prefix} {d[:2]} {d[2:4]} {d[4:]} {suffix}"

    def openai_key(self) -> str:
        prefix = self.pick(["sk-", "sk-proj-", "sk-ant-api03-"])
        return prefix + self.chars(ALNUM + "_-", self.rng.choice([48, 64, 80]))

    def stripe_key(self) -> str:
        return self.pick(["sk_live_", "sk_test_", "rk_live_"]) + self.chars(ALNUM, 24)

    def aws_key(self) -> str:
        return "AKIA" + self.chars(string.ascii_uppercase + "234567", 16)

    def github_token(self) -> str:
        if self.rng.random() < 0.8:
            return self.pick(["ghp_", "gho_", "ghs_"]) + self.chars(ALNUM, 36)
        return "github_pat_" + self.chars(ALNUM, 22) + "_" + self.chars(ALNUM, 59)

    def slack_token(self) -> str:
        return f"xoxb-{self.digits(11)}-{self.digits(13)}-{self.chars(ALNUM, 24)}"

    def google_key(self) -> str:
        return "AIza" + self.chars(ALNUM + "_-", 35)

    def jwt(self) -> str:
        def b64(obj: dict[str, Any]) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        payload = {"sub": self.digits(8), "name": self.fake.name(), "iat": self.digits(10)}
        return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}.{self.chars(ALNUM, 43)}"

    def private_key(self) -> str:
        label = self.pick(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        lines = [self.chars(ALNUM + "+/", 64) for _ in range(self.rng.randint(3, 6))]
        return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"

    def assigned(self) -> str:
        style = self.rng.random()
        if style < 0.4:
            return self.chars(string.hexdigits.lower()[:16], 32)
        if style < 0.7:
            return self.chars(ALNUM + "+/", 40)
        return self.chars(ALNUM, 24)

    # ------------------------------------------------ unlabelled values

    def bad_card(self) -> str:
        while True:
            number = self.pick("4456") + self.chars(string.digits, 15)
            if not luhn_ok(number):
                break
        sep = self.pick(["", " ", "-"])
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))

    def bad_iban(self) -> str:
        value: str = self.locale[self.pick(IBAN_LOCALES)].iban()
        check = int(value[2:4])
        wrong = f"{(check + self.rng.randint(1, 96)) % 97:02d}"
        value = value[:2] + wrong + value[4:]
        return value if iban_ok(value) is False else self.bad_iban()

    def bad_ssn(self) -> str:
        area = self.pick(["000", "666", f"9{self.chars(string.digits, 2)}"])
        return f"{area}-{self.chars(string.digits, 2)}-{self.chars(string.digits, 4)}"

    def bad_nino(self) -> str:
        if self.rng.random() < 0.5:
            return str(self.locale["en_GB"].ssn())  # Faker's: prefix ZZ, suffix not A-D
        prefix = self.pick("DFIQUV") + self.pick(string.ascii_uppercase)
        return f"{prefix}{self.chars(string.digits, 6)}{self.pick('ABCD')}"

    def unlabelled(self, slot: str) -> str:
        f, r = self.fake, self.rng
        table: dict[str, Callable[[], object]] = {
            "name": f.name,
            "first": f.first_name,
            "company": f.company,
            "city": f.city,
            "user": f.user_name,
            "word": f.word,
            "sentence": f.sentence,
            "paragraph": f.paragraph,
            "catch_phrase": f.catch_phrase,
            "date": f.date,
            "date_slash": lambda: f.date(pattern=self.pick(["%d/%m/%Y", "%m/%d/%Y"])),
            "date_dot": lambda: f.date(pattern="%d.%m.%Y"),
            "time": lambda: f.time(pattern=self.pick(["%H:%M", "%I:%M %p"])),
            "time2": lambda: f.time(pattern="%H:%M"),
            "year": lambda: r.randint(1980, 2010),
            "year2": lambda: r.randint(2011, 2030),
            "expiry": lambda: f.credit_card_expire(),
            "cvv": lambda: f.credit_card_security_code(),
            "price": f.pricetag,
            "price_big": lambda: (
                self.pick(["$", "€", "USD ", ""])
                + f"{r.randint(1, 999):,}"
                + f",{r.randint(0, 999):03d}"
                + self.pick(["", ".00"])
            ),
            "bic": f.swift,
            "order": lambda: self.digits(r.randint(6, 10)),
            "order_digits": lambda: self.digits(r.randint(8, 12)),
            "order_dashed": lambda: f"{self.digits(3)}-{self.digits(3)}-{self.digits(4)}",
            "invoice": lambda: f"INV-{r.randint(2019, 2026)}-{self.chars(string.digits, 6)}",
            "tracking": lambda: "1Z" + self.chars(string.ascii_uppercase + string.digits, 16),
            "tracking_digits": lambda: " ".join(self.digits(4) for _ in range(5)) + " 00",
            "version": lambda: f"{r.randint(0, 3)}.{r.randint(0, 120)}.{r.randint(0, 20)}",
            "uuid": f.uuid4,
            "sha": lambda: f.sha1()[: r.choice([7, 12, 40])],
            "sha256": f.sha256,
            "hex16": lambda: f.hexify("^" * 16),
            "ip": f.ipv4,
            "isbn": lambda: self.pick([f.isbn13(), f.isbn10()]),
            "ean": f.ean13,
            "serial": lambda: f"SN {self.digits(4)}-{self.digits(4)}-{self.digits(2)}",
            "part": lambda: f"{self.digits(3)}-{self.digits(2)}-{self.digits(4)}-A",
            "account": lambda: self.digits(r.randint(8, 12)),
            "ticket": lambda: f"{self.digits(3)} {self.digits(3)} {self.digits(4)}",
            "policy": lambda: f"{self.digits(4)}-{self.digits(6)}",
            "quantity": lambda: (
                f"{r.randint(1, 999)} {r.randint(0, 999):03d} {r.randint(0, 999):03d}"
            ),
            "population": lambda: f"{r.randint(1, 9)} {r.randint(0, 999):03d} 000 000",
            "coords": lambda: f"{f.latitude()}, {f.longitude()}",
            "page": lambda: r.randint(100, 400),
            "page2": lambda: r.randint(401, 900),
            "zip": lambda: f"{self.digits(5)}-{self.chars(string.digits, 4)}",
            "placeholder": lambda: self.pick(
                ["YOUR_API_KEY_HERE", "<api-key>", "xxxxxxxxxxxxxxxx", "changeme", "********"]
            ),
            "bad_card": self.bad_card,
            "bad_iban": self.bad_iban,
            "bad_ssn": self.bad_ssn,
            "bad_nino": self.bad_nino,
        }
        return str(table[slot]())


SECRET_SLOTS = [
    "openai_key",
    "stripe_key",
    "aws_key",
    "github_token",
    "slack_token",
    "google_key",
    "jwt",
]
SECRET_SLOTS += ["private_key", "assigned"]
LABELLED: dict[str, Kind] = {
    "email": Kind.EMAIL,
    "phone": Kind.PHONE,
    "card": Kind.CARD,
    "iban": Kind.IBAN,
    "us_ssn": Kind.US_SSN,
    "uk_nino": Kind.UK_NINO,
    **dict.fromkeys(SECRET_SLOTS, Kind.SECRET),
}


def fill(template: str, values: Values, offset: int = 0) -> tuple[str, list[dict[str, Any]]]:
    """The template with every slot filled; labelled slots become spans (from ``offset``)."""
    out: list[str] = []
    spans: list[dict[str, Any]] = []
    pos = 0
    for m in SLOT.finditer(template):
        out.append(template[pos : m.start()])
        slot = m.group(1)
        kind = LABELLED.get(slot)
        value = getattr(values, slot)() if kind is not None else values.unlabelled(slot)
        start = offset + sum(map(len, out))
        out.append(value)
        if kind is not None:
            spans.append({"start": start, "end": start + len(value), "kind": kind.value})
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def build(split: str, count: int = COUNT) -> list[dict[str, Any]]:
    values = Values(SEEDS[split])
    rng = values.rng
    positive = {k: halves(t, split) for k, t in POSITIVE.items()}
    negative = {k: halves(t, split) for k, t in NEGATIVE.items()}
    clean = halves(CLEAN, split)
    records: list[dict[str, Any]] = []
    for i in range(count):
        roll = rng.random()
        parts: list[tuple[str, str]] = []  # (template, tag)
        if roll < 0.55:
            kind = rng.choice(list(Kind))
            parts.append((rng.choice(positive[kind]), f"kind:{kind.value}"))
            if rng.random() < 0.25:
                neg = rng.choice(sorted(negative))
                parts.append((rng.choice(negative[neg]), f"negative:{neg}"))
        elif roll < 0.85:
            neg = rng.choice(sorted(negative))
            parts.append((rng.choice(negative[neg]), f"negative:{neg}"))
        else:
            parts.append((rng.choice(clean), "clean"))
        if rng.random() < 0.3:
            parts.insert(rng.randint(0, len(parts)), (rng.choice(clean), "clean"))
        text, spans, tags = "", [], []
        for template, tag in parts:
            if text:
                text += rng.choice([" ", "\n", "\n\n"])
            piece, piece_spans = fill(template, values, len(text))
            text += piece
            spans += piece_spans
            tags.append(tag)
        record = {"id": f"{split}-{i:05d}", "text": text, "spans": spans}
        records.append({**record, "tags": sorted(set(tags))})
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=sorted(SEEDS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=COUNT)
    args = parser.parse_args(argv)
    records = build(args.split, args.count)
    with args.out.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} messages to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
