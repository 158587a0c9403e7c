"""A labeled, seeded corpus for the redaction processor: the benchmark scores detectors on it and tests plant
its values. Every planted item carries its entity type and character offsets; hard negatives are unlabeled.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from agentledger.collector.processors.redaction_detectors import IBAN_LENGTHS, luhn_valid

STRUCTURED_ENTITIES = ("email", "phone", "card", "iban", "ssn", "ip", "secret")


@dataclass(frozen=True)
class Label:
    entity: str
    start: int
    end: int


@dataclass
class Document:
    kind: str
    text: str = ""
    labels: list[Label] = field(default_factory=list)

    def add(self, text: str) -> Document:
        self.text += text
        return self

    def pii(self, entity: str, value: str) -> Document:
        self.labels.append(Label(entity, len(self.text), len(self.text) + len(value)))
        self.text += value
        return self


_FIRST = ["maria", "john", "aiko", "lena", "omar", "priya", "tom", "sofia", "li", "noah", "emma", "raj"]
_LAST = ["lopez", "smith", "tanaka", "fischer", "haddad", "patel", "okafor", "rossi", "chen", "muller"]
_DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "acme.io", "contoso.de", "fabrikam.fr"]


class PiiFactory:
    """Valid values of every structured entity type, in the formats people write them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def digits(self, count: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(count))

    def email(self) -> str:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        local = self.rng.choice(
            [f"{first}.{last}", f"{first}{self.rng.randint(1, 99)}", f"{first[0]}{last}", f"{first}+support"]
        )
        address = f"{local}@{self.rng.choice(_DOMAINS)}"
        return address.title() if self.rng.random() < 0.1 else address

    def phone(self) -> str:
        d = self.digits
        return self.rng.choice(
            [
                lambda: f"+1 ({self.rng.randint(201, 989)}) {self.rng.randint(200, 999)}-{d(4)}",
                lambda: f"+1 {self.rng.randint(201, 989)}-{self.rng.randint(200, 999)}-{d(4)}",
                lambda: f"+1{self.rng.randint(201, 989)}{self.rng.randint(200, 999)}{d(4)}",
                lambda: f"({self.rng.randint(201, 989)}) {self.rng.randint(200, 999)}-{d(4)}",
                lambda: f"{self.rng.randint(201, 989)}-{self.rng.randint(200, 999)}-{d(4)}",
                lambda: f"{self.rng.randint(201, 989)}.{self.rng.randint(200, 999)}.{d(4)}",
                lambda: f"+44 20 {self.rng.randint(7000, 8999)} {d(4)}",
                lambda: f"+44 7700 {self.rng.randint(100000, 999999)}",
                lambda: f"020 {self.rng.randint(7000, 8999)} {d(4)}",
                lambda: f"07700 {self.rng.randint(100000, 999999)}",
                lambda: f"+49 30 {self.rng.randint(10000000, 99999999)}",
                lambda: f"+49 171 {self.rng.randint(1000000, 9999999)}",
                lambda: f"030 {self.rng.randint(10000000, 99999999)}",
                lambda: f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
                lambda: f"06 {self.rng.randint(10, 99)} {d(2)} {d(2)} {d(2)}",
                lambda: f"+1-{self.rng.randint(201, 989)}-{self.rng.randint(200, 999)}-{d(4)}",
                lambda: f"{self.rng.randint(201, 989)} {self.rng.randint(200, 999)} {d(4)}",
                lambda: f"+61 2 {self.rng.randint(8000, 9999)} {d(4)}",
                lambda: f"+81 3-{self.rng.randint(1000, 9999)}-{d(4)}",
                lambda: f"+91 {self.rng.randint(70000, 99999)} {d(5)}",
            ]
        )()

    def card_number(self) -> str:
        prefix, length = self.rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15), ("6011", 16)])
        body = prefix + self.digits(length - len(prefix) - 1)
        check = next(str(c) for c in range(10) if luhn_valid(body + str(c)))
        return body + check

    def card(self) -> str:
        number = self.card_number()
        if len(number) == 15:
            return self.rng.choice([number, f"{number[:4]} {number[4:10]} {number[10:]}"])
        separator = self.rng.choice(["", " ", "-"])
        return separator.join(number[i : i + 4] for i in range(0, 16, 4))

    def iban(self) -> str:
        country = self.rng.choice(["DE", "GB", "FR", "NL", "ES", "IT", "BE", "CH", "AT", "PL"])
        length = IBAN_LENGTHS[country]
        bban = self.digits(length - 4)
        if country in ("GB", "NL"):
            bban = "".join(self.rng.choice(string.ascii_uppercase) for _ in range(4)) + bban[4:]
        if country == "IT":
            bban = self.rng.choice(string.ascii_uppercase) + bban[1:]
        numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
        compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
        if self.rng.random() < 0.5:
            return compact
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))

    def ssn(self) -> str:
        area = self.rng.choice([n for n in range(1, 900) if n != 666])
        return f"{area:03d}-{self.rng.randint(1, 99):02d}-{self.rng.randint(1, 9999):04d}"

    def ip(self) -> str:
        if self.rng.random() < 0.65:
            return ".".join(str(self.rng.randint(1, 254)) for _ in range(4))
        groups = [f"{self.rng.randint(0, 0xFFFF):x}" for _ in range(8)]
        if self.rng.random() < 0.5:
            return ":".join(groups)
        if self.rng.random() < 0.2:
            return f"::ffff:{self.rng.randint(1, 223)}.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.1"
        return f"2001:db8:{groups[2]}::{groups[6]}:{groups[7]}"

    def token(self, alphabet: str, count: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(count))

    def secret(self) -> tuple[str, str, str]:
        """(text before, secret, text after): only the secret itself is labeled."""
        alnum = string.ascii_letters + string.digits
        b64url = alnum + "-_"
        kind = self.rng.randrange(13)
        if kind == 10:
            return "", "github_pat_" + self.token(alnum + "_", 82), ""
        if kind == 11:
            return "", "sk_live_" + self.token(alnum, 24), ""
        if kind == 12:
            return '"api_key": "', self.token(alnum, 32), '"'
        if kind == 0:
            return "", "AKIA" + self.token(string.ascii_uppercase + string.digits, 16), ""
        if kind == 1:
            return "", "ghp_" + self.token(alnum, 36), ""
        if kind == 2:
            return "", "glpat-" + self.token(alnum, 20), ""
        if kind == 3:
            return "", "xoxb-" + "-".join(self.digits(12) for _ in range(2)) + "-" + self.token(alnum, 24), ""
        if kind == 4:
            return "", "sk-ant-api03-" + self.token(b64url, 40), ""
        if kind == 5:
            return "", "sk-proj-" + self.token(alnum, 32), ""
        if kind == 6:
            header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
            payload = base64.urlsafe_b64encode(json.dumps({"sub": self.digits(8)}).encode()).decode().rstrip("=")
            return "", f"{header}.{payload}.{self.token(b64url, 43)}", ""
        if kind == 7:
            body = "\n".join(self.token(alnum + "+/", 64) for _ in range(3))
            return "", f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----", ""
        if kind == 8:
            key = self.rng.choice(["password", "db_password", "client_secret", "api_key"])
            return f"{key}=", self.token(alnum, self.rng.randint(10, 20)), ""
        return "Authorization: Bearer ", self.token(b64url, 32), ""

    def plant(self, document: Document, entity: str) -> None:
        if entity == "secret":
            before, value, after = self.secret()
            document.add(before).pii("secret", value).add(after)
            return
        maker: Callable[[], str] = getattr(self, entity)
        document.pii(entity, maker())


class HardNegatives:
    """Values that look like PII to a careless regex and must survive."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def any(self) -> str:
        rng = self.rng
        digits = "".join(rng.choice(string.digits) for _ in range(16))
        choices = [
            str(uuid.UUID(int=rng.getrandbits(128))),
            "sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64)),
            "".join(rng.choice("0123456789abcdef") for _ in range(40)),
            f"ORD-{rng.randint(2019, 2026)}-{rng.randint(0, 999999):06d}",
            f"order #{rng.randint(1000000, 99999999)}",
            f"v{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
            f"version {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}",
            f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
            f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z",
            str(rng.randint(1_600_000_000_000, 1_800_000_000_000)),
            f"invoice {digits[:4]}-{digits[4:8]}-{digits[8:10]}",
            f"tracking 1Z{rng.randint(10**15, 10**16 - 1)}",
            f"SUP-{rng.randint(100, 99999)}",
            f"localhost:{rng.randint(1024, 65535)}",
            "logo@2x.png",
            "import sklearn  # sk-learn",
            f"${rng.randint(1, 9999)},{rng.randint(100, 999)}.{rng.randint(0, 99):02d}",
            f"took {rng.randint(1, 999)}.{rng.randint(0, 999)} ms at 10:{rng.randint(10, 59)}:{rng.randint(10, 59)}",
            f"std::vector<int> at 0x{rng.getrandbits(48):012x}",
            f"mac 00:1a:2b:{rng.randint(10, 99)}:4d:5e",
            f"SKU {rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(100, 999)}",
        ]
        return rng.choice(choices)


_KINDS = ("ticket", "email", "crm_note", "tool_arguments", "stack_trace")


def _ticket(doc: Document, pii: PiiFactory, neg: HardNegatives, rng: random.Random) -> None:
    doc.add(f"Ticket {neg.any()}: customer reports a failed refund for {neg.any()}. Contact ")
    pii.plant(doc, "email")
    doc.add(" or call ")
    pii.plant(doc, "phone")
    doc.add(". They paid with card ")
    pii.plant(doc, "card")
    doc.add(f" on {neg.any()}. Please refund to IBAN ")
    pii.plant(doc, "iban")
    doc.add(f". Internal ref {neg.any()}, build {neg.any()}.")


def _email(doc: Document, pii: PiiFactory, neg: HardNegatives, rng: random.Random) -> None:
    doc.add("From: ")
    pii.plant(doc, "email")
    doc.add("\nSubject: account access\n\nHi team,\nmy SSN on file is ")
    pii.plant(doc, "ssn")
    doc.add(" and I log in from ")
    pii.plant(doc, "ip")
    doc.add(f". My order {neg.any()} still shows as pending since {neg.any()}. You can reach me at ")
    pii.plant(doc, "phone")
    doc.add(".\nThanks\n")


def _crm_note(doc: Document, pii: PiiFactory, neg: HardNegatives, rng: random.Random) -> None:
    doc.add(f"Account {neg.any()} - spoke with the customer; new billing email ")
    pii.plant(doc, "email")
    doc.add(", backup phone ")
    pii.plant(doc, "phone")
    doc.add(f". Renewal on {neg.any()}; plan {neg.any()}. Payout IBAN ")
    pii.plant(doc, "iban")
    doc.add(". Integration key left in notes: ")
    pii.plant(doc, "secret")
    doc.add(f" (rotate!). Checksum {neg.any()}.")


def _tool_arguments(doc: Document, pii: PiiFactory, neg: HardNegatives, rng: random.Random) -> None:
    doc.add('{"tool": "update_customer", "customer": {"email": "')
    pii.plant(doc, "email")
    doc.add('", "phone": "')
    pii.plant(doc, "phone")
    doc.add(f'", "id": "{neg.any()}"}}, "payment": {{"card": "')
    pii.plant(doc, "card")
    doc.add(f'", "order": "{neg.any()}"}}, "client_ip": "')
    pii.plant(doc, "ip")
    doc.add(f'", "request_id": "{neg.any()}", "note": "ssn ')
    pii.plant(doc, "ssn")
    doc.add('"}')


def _stack_trace(doc: Document, pii: PiiFactory, neg: HardNegatives, rng: random.Random) -> None:
    doc.add('Traceback (most recent call last):\n  File "/srv/app/billing.py", line 214, in charge\n')
    doc.add(f"    client.charge(order={neg.any()!r})\nConnectionError: upstream ")
    pii.plant(doc, "ip")
    doc.add(f" refused at {neg.any()}; retry id {neg.any()}\n  config: ")
    pii.plant(doc, "secret")
    doc.add(f"\n  user={neg.any()} contact ")
    pii.plant(doc, "email")
    doc.add("\n")


_BUILDERS = {
    "ticket": _ticket,
    "email": _email,
    "crm_note": _crm_note,
    "tool_arguments": _tool_arguments,
    "stack_trace": _stack_trace,
}


def generate_corpus(count: int, seed: int = 4) -> list[Document]:
    """`count` documents cycling through the kinds; the same seed always gives the same corpus."""
    rng = random.Random(seed)
    pii, negatives = PiiFactory(rng), HardNegatives(rng)
    documents = []
    for index in range(count):
        kind = _KINDS[index % len(_KINDS)]
        document = Document(kind)
        _BUILDERS[kind](document, pii, negatives, rng)
        documents.append(document)
    return documents
