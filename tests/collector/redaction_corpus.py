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
from typing import Any

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


# --- the broad corpus -----------------------------------------------------------------------------------------
# Values come from sources independent of our detectors: faker's locales (names, e-mail addresses, IBANs, card
# numbers of every network, SSNs, IP addresses) and libphonenumber's example numbers of every region and line
# type (perturbed, kept when still valid), in the formats each region writes; secrets in the shapes vendors
# document. Contexts: JSON, INI, env files, URL query strings and form bodies, log lines, prose, mail headers.
# Decoys are unlabeled look-alikes: uuids, hashes, versions, user agents, order numbers, timestamps, ports,
# token counts, prices, MAC addresses, OIDs.

BROAD_LOCALES = (
    "en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "pt_BR", "pt_PT", "ja_JP", "ko_KR",
    "en_IN", "en_AU", "sv_SE", "da_DK", "fi_FI", "no_NO", "cs_CZ", "tr_TR",
)  # fmt: skip
# Regions whose national formats the default config covers (redaction_detectors.DEFAULT_PHONE_REGIONS); every
# other region's numbers appear in international format only.
NATIONAL_PHONE_REGIONS = (
    "US", "GB", "DE", "FR", "IN", "AU", "JP", "BR", "ES", "IT", "NL", "MX", "CN", "KR", "RU", "PL", "SE", "CH",
    "BE", "AT", "IE", "PT", "ZA", "NG", "SG", "AR", "TR", "ID", "PH",
)  # fmt: skip
_CARD_TYPES = ("visa13", "visa16", "visa19", "mastercard", "amex", "discover", "diners", "jcb15", "jcb16", "maestro")


class BroadFactory:
    """Labelled values from faker and libphonenumber, seeded."""

    def __init__(self, rng: random.Random) -> None:
        import faker
        import phonenumbers

        self.rng = rng
        self.phonenumbers = phonenumbers
        self.fakers = {}
        for index, locale in enumerate(BROAD_LOCALES):
            fake = faker.Faker(locale)
            fake.seed_instance(rng.randrange(2**31) + index)
            self.fakers[locale] = fake
        types = phonenumbers.PhoneNumberType
        self.phone_examples = []
        for region in sorted(phonenumbers.SUPPORTED_REGIONS):
            for kind in (types.MOBILE, types.FIXED_LINE, types.TOLL_FREE):
                example = phonenumbers.example_number_for_type(region, kind)
                if example is not None:
                    self.phone_examples.append((region, example))

    def fake(self) -> Any:
        return self.fakers[self.rng.choice(BROAD_LOCALES)]

    def email(self) -> str:
        address: str = self.fake().email()
        return address.upper() if self.rng.random() < 0.05 else address

    def phone(self) -> str:
        pn = self.phonenumbers
        for _ in range(50):
            region, example = self.rng.choice(self.phone_examples)
            national = str(example.national_number)
            digits = national[:-3] + "".join(self.rng.choice(string.digits) for _ in range(3))
            number = pn.PhoneNumber(country_code=example.country_code, national_number=int(digits))
            if not pn.is_valid_number(number):
                continue
            formats = [pn.PhoneNumberFormat.INTERNATIONAL, pn.PhoneNumberFormat.E164]
            if region in NATIONAL_PHONE_REGIONS:
                formats += [pn.PhoneNumberFormat.NATIONAL] * 3
            text: str = pn.format_number(number, self.rng.choice(formats))
            if region == "US" and self.rng.random() < 0.3:
                text = f"1-{digits[:3]}-{digits[3:6]}-{digits[6:]}"
            if self.rng.random() < 0.08:
                text += self.rng.choice([" ext. ", " x", " ext "]) + str(self.rng.randint(2, 9999))
            return text
        return "+1 415-555-0199"

    def card(self) -> str:
        number: str = self.fakers["en_US"].credit_card_number(self.rng.choice(_CARD_TYPES))
        if len(number) == 16 and self.rng.random() < 0.5:
            return self.rng.choice([" ", "-"]).join(number[i : i + 4] for i in range(0, 16, 4))
        return number

    def iban(self) -> str:
        locale = self.rng.choice(("de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "en_GB", "pt_PT", "fi_FI"))
        compact: str = self.fakers[locale].iban()
        roll = self.rng.random()
        if roll < 0.4:
            return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
        return compact.lower() if roll < 0.55 else compact

    def ssn(self) -> tuple[str, str, str]:
        value: str = self.fakers["en_US"].ssn()
        if self.rng.random() < 0.4:
            return self.rng.choice(["ssn=", "SSN: ", '"ssn": "', "social security number "]), value.replace("-", ""), ""
        return self.rng.choice(["SSN ", "ssn: ", "social security ", ""]), value, ""

    def ip(self) -> tuple[str, str, str]:
        fake = self.fake()
        roll = self.rng.random()
        if roll < 0.5:
            return "", fake.ipv4_public(), self.rng.choice(["", f":{self.rng.randint(1, 65535)}"])
        if roll < 0.75:
            return "", fake.ipv6(), ""
        return "postgres://app:[SECRET]@", fake.ipv4_private(), f":{self.rng.randint(1024, 65535)}/orders"

    def secret(self) -> tuple[str, str, str]:
        rng = self.rng
        alnum = string.ascii_letters + string.digits

        def token(count: int, alphabet: str = alnum) -> str:
            return "".join(rng.choice(alphabet) for _ in range(count))

        choices: list[tuple[str, str, str]] = [
            ("aws_secret_access_key = ", token(40, alnum + "/+"), "\n"),
            ('"aws_secret_access_key": "', token(40, alnum + "/+"), '"'),
            ("HF_TOKEN: ", "hf_" + token(34, string.ascii_letters), ""),
            ("export HF_TOKEN=", "hf_" + token(34, string.ascii_letters), "\n"),
            ("SENDGRID_API_KEY=", f"SG.{token(22, alnum + '-_')}.{token(43, alnum + '-_')}", "\n"),
            ("//registry.npmjs.org/:_authToken=", "npm_" + token(36), "\n"),
            ("", "AKIA" + token(16, string.ascii_uppercase + string.digits), ""),
            ("", "ghp_" + token(36), ""),
            ("", "glpat-" + token(20, alnum + "-_"), ""),
            ("", "xoxb-" + "-".join(token(12, string.digits) for _ in range(2)) + "-" + token(24), ""),
            ("", "sk_live_" + token(24), ""),
            ("", "sk-proj-" + token(48, alnum + "-_"), ""),
            ("Authorization: Bearer ", token(40, alnum + "-_."), ""),
            ("password=", token(rng.randint(8, 16), alnum + "!#$%") + rng.choice(["", "@"]), ""),
            ("DB_PASSWORD: '", token(14, alnum + "@!"), "'"),
            ("postgres://app:", token(12, alnum) + rng.choice(["", "@"]), "@db.internal:5432/app"),
            ("api key ", token(32, "0123456789abcdef"), ""),
            ("client_secret = ", token(32, alnum), ""),
        ]
        return rng.choice(choices)


class BroadDecoys:
    """Unlabelled look-alikes the broad corpus mixes in."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.base = HardNegatives(rng)

    def any(self) -> str:
        rng = self.rng
        choices = [
            self.base.any,
            lambda: (
                f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/{rng.randint(90, 130)}.0.{rng.randint(1000, 6999)}"
                f".{rng.randint(10, 199)} Safari/537.36"
            ),
            lambda: f"max_tokens: {rng.choice([256, 1024, 4096, 8192])}",
            lambda: f"usage: prompt_tokens={rng.randint(10, 9999)}, completion_tokens={rng.randint(10, 999)}",
            lambda: "primary_key = id",
            lambda: f"took {rng.randint(1, 60000)} ms",
            lambda: f"port {rng.randint(1024, 65535)}",
            lambda: f"image@sha256:{rng.getrandbits(256):064x}",
            lambda: f"oid 1.3.6.1.4.1.{rng.randint(1000, 99999)}.1.2",
            lambda: (
                f"{rng.randint(2000, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}"
            ),
            lambda: f"order {rng.randint(10**9, 10**10 - 1)}",
            lambda: (
                f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.randint(0, 9)}"
            ),
            lambda: f"price €{rng.randint(1, 9999)}.{rng.randint(0, 99):02d}",
            lambda: f"pod web-{rng.getrandbits(40):010x}-{rng.getrandbits(20):05x}",
            lambda: f"Edg/{rng.randint(100, 130)}.0.{rng.randint(1000, 3000)}.{rng.randint(10, 99)}",
            lambda: f"key_id={rng.randint(1, 999)}",
            lambda: f"trace_id={rng.getrandbits(128):032x}",
        ]
        return rng.choice(choices)()


def _broad_plant(document: Document, factory: BroadFactory, entity: str) -> None:
    if entity in ("ssn", "ip", "secret"):
        before, value, after = getattr(factory, entity)()
        document.add(before).pii(entity, value).add(after)
        return
    value = getattr(factory, entity)()
    document.pii(entity, value)


def _encoded_email(document: Document, factory: BroadFactory) -> None:
    local, domain = factory.email().split("@", 1)
    document.add("GET /unsubscribe?list=7&email=").pii("email", f"{local.replace('+', '%2B')}%40{domain}")
    document.add(" HTTP/1.1")


BROAD_KINDS = ("json", "ini", "url", "log", "prose", "mail")


def generate_broad_corpus(count: int, seed: int = 17) -> list[Document]:
    """`count` documents, 1-3 labelled entities and 1-3 decoys each; the same seed gives the same corpus."""
    rng = random.Random(seed)
    factory, decoys = BroadFactory(rng), BroadDecoys(rng)
    documents = []
    for index in range(count):
        kind = BROAD_KINDS[index % len(BROAD_KINDS)]
        document = Document(kind)
        entities = [rng.choice(STRUCTURED_ENTITIES) for _ in range(rng.randint(1, 3))]
        if kind == "url" and rng.random() < 0.5:
            _encoded_email(document, factory)
            entities = entities[:1]
        for position, entity in enumerate(entities):
            key = rng.choice(["note", "contact", "value", "detail", "customer"])
            if kind == "json":
                document.add("{" if position == 0 else ', "n": 1, ').add(f'"{key}{position}": "see ')
                _broad_plant(document, factory, entity)
                document.add(f'", "ref": "{decoys.any()}"')
            elif kind == "ini":
                document.add(f"[{key}]\nref = {decoys.any()}\n{key} = ")
                _broad_plant(document, factory, entity)
                document.add("\n")
            elif kind == "url":
                document.add(f" next={decoys.any()} {key}: ")
                _broad_plant(document, factory, entity)
            elif kind == "log":
                document.add(f"2025-11-0{rng.randint(1, 9)}T10:22:31Z INFO [{decoys.any()}] {key}=")
                _broad_plant(document, factory, entity)
                document.add(" status=200\n")
            elif kind == "mail":
                document.add(f"{key.title()}: ")
                _broad_plant(document, factory, entity)
                document.add(f"\nX-Ref: {decoys.any()}\n")
            else:
                document.add(f"The customer ({decoys.any()}) asked us to use ")
                _broad_plant(document, factory, entity)
                document.add(f" from now on; see ticket {decoys.any()}. ")
        if kind == "json":
            document.add("}")
        documents.append(document)
    return documents


def generate_decoys(count: int, seed: int = 23) -> list[str]:
    """Texts made only of decoys, each as a sentence: anything found in them is a false positive."""
    rng = random.Random(seed)
    decoys = BroadDecoys(rng)
    return [f"ref {decoys.any()} then {decoys.any()}." for _ in range(count)]
