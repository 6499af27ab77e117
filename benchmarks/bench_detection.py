"""Free-text detection: throughput, precision and recall against Presidio and scrubadub.

    .venv/bin/python benchmarks/bench_detection.py [--size-kb 1500] [--peer-kb 150]
        [--table-kb 100] [--tables-only]

Generates a labelled, chat-like corpus (event Q&A, support chat, log lines) from a fixed
seed: card numbers for real issuer prefixes and lengths in their printed layouts,
e-mail addresses (IDN and punycode too), phone numbers valid for their country in home
and international formats, IBANs, and many decoys that are not personal data (order and
ticket numbers, ISO and epoch timestamps, UUIDs, versions, ISBNs, prices, IP addresses,
hex ids, dates, 15-digit internal ids). Each peer runs on a slice of the same corpus.
A peer that is not installed is reported and skipped.

A prediction counts as correct when it overlaps a labelled span of the same kind; a
labelled span counts as found when some prediction of its kind overlaps it.

It also times tables of numbers written on one line (spaced digit groups, mixed
separators): one long run of digit groups, the input whose cost per character is
highest, so a slow path there shows as a low MB/s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import random
import re
import string
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from privguard import _detection
from privguard._detection import _DIGIT_SCAN, TextScanner, luhn_valid

KINDS = ("card", "email", "phone", "iban")
# CPU time of this process: the build machines are shared, and wall time swings with
# whatever else runs. Each detector is timed the same way.
CLOCK = time.process_time
SPARSE_PII = 0.02
SPARSE_DECOYS = 0.10
Span = tuple[str, int, int]  # kind, start, end


# --- corpus ----------------------------------------------------------------------------

_FIRST = "anna ben carla david emma felix greta hugo ines jonas karin liam mia noah olga paul"
_LAST = "smith müller garcia rossi dubois cohen tanaka wang silva patel nowak berg lee"
FIRST = _FIRST.split()
LAST = _LAST.split()
DOMAINS = [
    "example.com",
    "mail.example.org",
    "eventhub.io",
    "uni-heidelberg.de",
    "company.co.uk",
    "correo.es",
    "bücher.de",
    "xn--80ak6aa92e.com",
    "例子.广告",
    "post.xn--p1ai",
    "gmail.com",
    "outlook.fr",
]
_WORDS = (
    "the keynote starts at hall room session speaker badge lunch coffee break ticket "
    "venue stage workshop panel networking thanks great question slides recording "
    "schedule tomorrow today please can you share link again sorry late join where "
    "is my seat check in registration desk wifi password parking shuttle hotel"
)
WORDS = _WORDS.split()

CARD_BRANDS: list[tuple[str, list[int]]] = [
    ("4", [16, 16, 16, 19, 13]),
    ("51", [16]),
    ("55", [16]),
    ("2221", [16]),
    ("2720", [16]),
    ("34", [15]),
    ("37", [15]),
    ("6011", [16, 19]),
    ("65", [16]),
    ("3528", [16]),
    ("3589", [16]),
    ("36", [14]),
    ("300", [14]),
    ("62", [16, 19]),
    ("6759", [16]),
    ("5019", [16]),
    ("50", [19]),
]
PHONE_REGIONS = ["US", "GB", "DE", "FR", "IL", "JP", "CN", "BR", "IN"]
FOREIGN_REGIONS = ["ES", "IT", "NL", "AU", "CH", "SE", "MX"]
IBAN_SPECS = [("DE", 18), ("FR", 23), ("NL", 14), ("ES", 20), ("IT", 23), ("GB", 18)]


def luhn_complete(prefix_and_body: str) -> str:
    for check in "0123456789":
        if luhn_valid(prefix_and_body + check):
            return prefix_and_body + check
    raise AssertionError("unreachable")


def make_card(rng: random.Random) -> str:
    prefix, lengths = rng.choice(CARD_BRANDS)
    length = rng.choice(lengths)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    digits = luhn_complete(body)
    style = rng.random()
    if style < 0.4:
        return digits
    sep = " " if style < 0.8 else "-"
    if length == 15 and prefix in ("34", "37"):
        return sep.join((digits[:4], digits[4:10], digits[10:]))
    if length == 14 and rng.random() < 0.5:
        return sep.join((digits[:4], digits[4:10], digits[10:]))
    return sep.join(digits[i : i + 4] for i in range(0, length, 4))


def make_email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}{rng.randint(1, 99)}",
            f"{first[0]}{last}",
            f"{first}+events",
            f"{first}_{last}",
            "用户",
        ]
    )
    return f"{local}@{rng.choice(DOMAINS)}"


def make_phone(rng: random.Random) -> str:
    for _ in range(200):
        region = rng.choice(PHONE_REGIONS + FOREIGN_REGIONS[:2])
        kind = rng.choice([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE])
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        nsn = str(example.national_number)
        keep = max(2, len(nsn) - 6)
        nsn = nsn[:keep] + "".join(rng.choice(string.digits) for _ in range(len(nsn) - keep))
        number = phonenumbers.parse("+" + str(example.country_code) + nsn, None)
        if not phonenumbers.is_valid_number(number):
            continue
        foreign = region not in PHONE_REGIONS
        style = rng.random()
        if foreign or style < 0.35:
            return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
        if style < 0.45:
            return phonenumbers.format_number(number, PhoneNumberFormat.E164)
        national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        if style < 0.9 or region != "US":
            return national
        digits = "".join(c for c in national if c.isdigit())
        return f"{digits[:3]}.{digits[3:6]}.{digits[6:]}"
    raise AssertionError("no valid phone number generated")


def make_iban(rng: random.Random) -> str:
    country, bban_len = rng.choice(IBAN_SPECS)
    if country in ("GB", "NL"):
        bank = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        bban = bank + "".join(rng.choice(string.digits) for _ in range(bban_len - 4))
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(bban_len))
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def rand_digits(rng: random.Random, n: int, first: str = "123456789") -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(n - 1))


DECOYS: list[Callable[[random.Random], str]] = [
    lambda r: f"order #{rand_digits(r, r.randint(6, 10))}",
    lambda r: f"ticket {rand_digits(r, 8)}",
    lambda r: f"Order number {rand_digits(r, 9)} shipped.",
    lambda r: f"booking ref {r.choice(string.ascii_uppercase)}{rand_digits(r, 7)}",
    lambda r: (
        f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
        f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z"
    ),
    lambda r: f'{{"time_processed":"{r.randint(1_600_000_000_000, 1_800_000_000_000)}"}}',
    lambda r: f"ts={r.randint(1_600_000_000, 1_800_000_000)}",
    lambda r: f"request {r.getrandbits(128):032x}",
    lambda r: "id " + "-".join(f"{r.getrandbits(b * 4):0{b}x}" for b in (8, 4, 4, 4, 12)),  # UUID
    lambda r: f"v{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
    lambda r: "ISBN 978-3-16-148410-0",
    lambda r: f"price €{r.randint(5, 2000)}.{r.randint(0, 99):02d}",
    lambda r: f"{r.randint(1, 20)} 500 000 visitors",
    lambda r: (
        f"from {r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    ),
    lambda r: f"on {r.randint(1, 28):02d}.{r.randint(1, 12):02d}.{r.randint(1950, 2030)}",
    lambda r: f"{r.randint(1, 12)}/{r.randint(1, 28)}/{r.randint(2020, 2030)}",
    lambda r: (
        f"{r.randint(10, 23)}:{r.randint(0, 59):02d}-{r.randint(10, 23)}:{r.randint(0, 59):02d}"
    ),
    lambda r: f"sentry event {rand_digits(r, 15)}",
    lambda r: f"OMB No. {rand_digits(r, 4)}-{rand_digits(r, 4, '0123456789')}",
    lambda r: f"UPC 0{rand_digits(r, 9, '0123456789')}",
    lambda r: f"at {r.randint(0, 179)}.{rand_digits(r, 7, '0123456789')}",
    lambda r: f"build {r.randint(10, 20)}.0.{r.randint(10000, 30000)}.{r.randint(100, 9999)}",
    lambda r: f"room {r.randint(100, 999)}, seat {r.randint(1, 60)}",
    lambda r: f"sha {r.getrandbits(160):040x}",
    lambda r: f"@{r.choice(FIRST)} thanks!",
    lambda r: f"see logo@2x.png and {r.choice(FIRST)}@{r.randint(1, 9)}.{r.randint(0, 9)}",
]

MAKERS: dict[str, Callable[[random.Random], str]] = {
    "card": make_card,
    "email": make_email,
    "phone": make_phone,
    "iban": make_iban,
}
LEADS = {
    "card": ["my card is {}", "card: {}, exp 12/27", "charge {} please", "{}"],
    "email": ["mail me at {}", "contact <{}>", "({})", "reach {}.", "{}"],
    "phone": ["call me at {}", "tel: {}", "phone {} (mobile)", "whatsapp {}", "{}"],
    "iban": ["IBAN {}", "transfer to {} please", "{}"],
}


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_corpus(
    size: int, seed: int, *, pii_rate: float = 0.18, decoy_rate: float = 0.35
) -> tuple[str, list[Span]]:
    """Lines of chat; ``pii_rate`` of them hold personal data, ``decoy_rate`` of them a
    number or token that is not personal data. The defaults make a dense corpus, to
    measure precision and recall on thousands of cases."""
    rng = random.Random(seed)
    out: list[str] = []
    spans: list[Span] = []
    pos = 0
    while pos < size:
        parts: list[str] = [sentence(rng, rng.randint(3, 14))]
        roll = rng.random()
        if roll < pii_rate:
            kind = rng.choices(KINDS, weights=(3, 4, 4, 1))[0]
            value = MAKERS[kind](rng)
            template = rng.choice(LEADS[kind])
            before, after = template.split("{}")
            prefix = parts[0] + " " + before
            start = pos + len(prefix)
            spans.append((kind, start, start + len(value)))
            parts = [prefix + value + after]
        if rng.random() < decoy_rate:
            parts.append(rng.choice(DECOYS)(rng))
        if rng.random() < 0.5:
            parts.append(sentence(rng, rng.randint(2, 10)))
        line = " ".join(parts) + "\n"
        out.append(line)
        pos += len(line)
    return "".join(out), spans


# --- scoring -----------------------------------------------------------------------------


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    found: int = 0
    gold: int = 0
    fp_examples: list[str] = field(default_factory=list)
    missed_examples: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.gold if self.gold else 1.0


def score(text: str, gold: list[Span], pred: list[Span]) -> dict[str, Score]:
    scores = {k: Score() for k in KINDS}
    by_kind: dict[str, list[tuple[int, int]]] = {k: [] for k in KINDS}
    for kind, s, e in gold:
        by_kind[kind].append((s, e))
        scores[kind].gold += 1
    pred_by_kind: dict[str, list[tuple[int, int]]] = {k: [] for k in KINDS}
    for kind, s, e in pred:
        if kind in pred_by_kind:
            pred_by_kind[kind].append((s, e))
    for kind in KINDS:
        golds = by_kind[kind]
        preds = pred_by_kind[kind]
        for s, e in preds:
            if any(s < ge and gs < e for gs, ge in golds):
                scores[kind].tp += 1
            else:
                scores[kind].fp += 1
                if len(scores[kind].fp_examples) < 6:
                    scores[kind].fp_examples.append(text[max(0, s - 15) : e + 5])
        for gs, ge in golds:
            if any(s < ge and gs < e for s, e in preds):
                scores[kind].found += 1
            elif len(scores[kind].missed_examples) < 6:
                scores[kind].missed_examples.append(text[max(0, gs - 15) : ge + 5])
    return scores


def slice_corpus(text: str, gold: list[Span], size: int) -> tuple[str, list[Span]]:
    cut = text.rfind("\n", 0, size) + 1 or len(text)
    return text[:cut], [g for g in gold if g[2] <= cut]


# --- detectors ---------------------------------------------------------------------------


def run_privguard(text: str) -> tuple[list[Span], float]:
    scanner = TextScanner()
    scanner.scan(text[:20000])  # warm-up (the first call imports phone metadata)
    best = float("inf")
    findings = []
    for _ in range(3):
        fresh = TextScanner()
        start = CLOCK()
        findings = fresh.scan(text)
        best = min(best, CLOCK() - start)
    return [(f.kind, f.start, f.end) for f in findings], best


# Tables of numbers on one line: digit group sizes and what joins them.
TABLES: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "4-digit groups": ((4,), (" ",)),
    "2-digit groups": ((2,), (" ",)),
    "digits and spaces": ((1,), (" ",)),
    "mixed separators": ((1, 2, 3, 4), (" ", " ", "-", ".", " (", ") ")),
}


def make_table(size: int, seed: int, sizes: tuple[int, ...], seps: tuple[str, ...]) -> str:
    """``size`` characters of digit groups joined by single separators, one long run."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        group = "".join(rng.choice(string.digits) for _ in range(rng.choice(sizes)))
        sep = rng.choice(seps)
        parts.append(group + sep)
        length += len(group) + len(sep)
    return "".join(parts)[:size]


def clear_plan_caches() -> None:
    """Forget every shape the scanner has planned (the caches an earlier run filled)."""
    for name in ("_GROUP_PLANS", "_RUN_PLANS", "_STRETCH_RUNS", "_PHONE_FORMS"):
        cache = getattr(_detection, name, None)
        if cache is not None:
            cache.clear()


def run_table(size: int, seed: int, sizes: tuple[int, ...], seps: tuple[str, ...]) -> float:
    """Best of three scans of a table, each by a scanner warmed up on another table of
    the same layout, with the plan caches cleared before: what a server that has seen
    such tables pays for a new one."""
    text = make_table(size, seed, sizes, seps)
    best = float("inf")
    for round_ in range(3):
        clear_plan_caches()
        scanner = TextScanner()
        scanner.scan(make_table(20_000, seed + 1 + round_, sizes, seps))
        start = CLOCK()
        scanner.scan(text)
        best = min(best, CLOCK() - start)
    return best


def report_tables(size: int, seed: int) -> None:
    for name, (sizes, seps) in TABLES.items():
        secs = run_table(size, seed, sizes, seps)
        print(f"{'table, ' + name:<28} {size / 1e6:6.2f} MB {size / 1e6 / secs:9.2f} MB/s")


def regex_pass(text: str) -> float:
    """A yardstick: one pass of a trivial regex over the text, counting matches."""
    pattern = re.compile(r"\d+")
    start = CLOCK()
    sum(1 for _ in pattern.finditer(text))
    return CLOCK() - start


def scan_floor(text: str) -> float:
    """privguard's own passes over the whole text with every check left out: its digit
    scan (iterating the matches) and its search for "@". No detector can beat this."""
    start = CLOCK()
    for _ in _DIGIT_SCAN.finditer(text):
        pass
    find = text.find
    at = find("@")
    while at >= 0:
        at = find("@", at + 1)
    return CLOCK() - start


def run_privguard_lines(text: str) -> float:
    scanner = TextScanner()
    lines = text.splitlines(keepends=True)
    best = float("inf")
    for _ in range(3):
        start = CLOCK()
        for line in lines:
            scanner.scan(line)
        best = min(best, CLOCK() - start)
    return best


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stderr(io.StringIO()),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


PRESIDIO_KINDS = {
    "CREDIT_CARD": "card",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "IBAN_CODE": "iban",
}


def run_presidio(text: str) -> tuple[list[Span], float] | str:
    try:
        with quiet():
            import spacy
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as exc:
        return f"not importable ({exc.name}); pip install -e '.[bench]'"
    with tempfile.TemporaryDirectory() as tmp, quiet():
        model = str(Path(tmp) / "blank_en")
        spacy.blank("en").to_disk(model)
        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": model}],
            }
        )
        engine = AnalyzerEngine(nlp_engine=provider.create_engine())
        entities = list(PRESIDIO_KINDS)
        engine.analyze("warm up 4111111111111111 a@b.com", language="en", entities=entities)
        lines = text.splitlines(keepends=True)
        pred: list[Span] = []
        offset = 0
        start = CLOCK()
        for line in lines:
            for r in engine.analyze(line, language="en", entities=entities):
                pred.append((PRESIDIO_KINDS[r.entity_type], offset + r.start, offset + r.end))
            offset += len(line)
        elapsed = CLOCK() - start
    return pred, elapsed


SCRUBADUB_KINDS = {"credit_card": "card", "email": "email", "phone": "phone"}


def run_scrubadub(text: str) -> tuple[list[Span], float] | str:
    try:
        with quiet():
            import scrubadub
            import scrubadub.detectors
    except ImportError as exc:
        return f"not importable ({exc.name}); pip install -e '.[bench]'"
    with quiet():
        scrubber = scrubadub.Scrubber(
            detector_list=[
                scrubadub.detectors.CreditCardDetector,
                scrubadub.detectors.EmailDetector,
                scrubadub.detectors.PhoneDetector,
            ]
        )
        list(scrubber.iter_filth("warm up 4111111111111111 a@b.com"))
        lines = text.splitlines(keepends=True)
        pred: list[Span] = []
        offset = 0
        start = CLOCK()
        for line in lines:
            for filth in scrubber.iter_filth(line):
                kind = SCRUBADUB_KINDS.get(filth.type)
                if kind:
                    pred.append((kind, offset + filth.beg, offset + filth.end))
            offset += len(line)
        elapsed = CLOCK() - start
    return pred, elapsed


# --- report ------------------------------------------------------------------------------


def mb(text: str) -> float:
    return len(text.encode("utf-8")) / 1e6


def report(name: str, text: str, gold: list[Span], pred: list[Span], secs: float) -> float:
    rate = mb(text) / secs
    scores = score(text, gold, pred)
    cells = "  ".join(
        f"{k}: P {scores[k].precision:.3f} R {scores[k].recall:.3f} (n={scores[k].gold})"
        for k in KINDS
    )
    print(f"{name:<22} {mb(text):6.2f} MB {rate:9.2f} MB/s  {cells}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-kb", type=int, default=1500, help="privguard corpus size")
    parser.add_argument("--peer-kb", type=int, default=150, help="slice for Presidio/scrubadub")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--show-errors", action="store_true", help="print misses and FPs")
    parser.add_argument("--table-kb", type=int, default=100, help="size of each number table")
    parser.add_argument("--tables-only", action="store_true", help="time the tables only")
    args = parser.parse_args()
    if args.tables_only:
        report_tables(args.table_kb * 1000, args.seed)
        return

    text, gold = make_corpus(args.size_kb * 1000, args.seed)
    print(f"corpus: {mb(text):.2f} MB, {text.count(chr(10))} lines, {len(gold)} labelled spans")

    baseline = min(regex_pass(text) for _ in range(3))
    print(f"{'one regex pass':<22} {mb(text):6.2f} MB {mb(text) / baseline:9.2f} MB/s")
    floor = min(scan_floor(text) for _ in range(3))
    print(f"{'privguard scans only':<22} {mb(text):6.2f} MB {mb(text) / floor:9.2f} MB/s")
    pred, secs = run_privguard(text)
    pg_rate = report("privguard (one text)", text, gold, pred, secs)
    print(
        f"privguard / one regex pass: {baseline / secs:.2f}, / its scans only: {floor / secs:.2f}"
    )
    line_secs = run_privguard_lines(text)
    print(f"{'privguard (per line)':<22} {mb(text):6.2f} MB {mb(text) / line_secs:9.2f} MB/s")
    sparse, sparse_gold = make_corpus(
        args.size_kb * 1000, args.seed + 1, pii_rate=SPARSE_PII, decoy_rate=SPARSE_DECOYS
    )
    sparse_pred, sparse_secs = run_privguard(sparse)
    sparse_rate = report("privguard (sparse)", sparse, sparse_gold, sparse_pred, sparse_secs)
    print(f"  sparse: {SPARSE_PII:.0%} of lines with personal data, {SPARSE_DECOYS:.0%} a decoy")
    report_tables(args.table_kb * 1000, args.seed)
    if args.show_errors:
        for kind, s in score(text, gold, pred).items():
            for ex in s.missed_examples:
                print(f"  missed {kind}: {ex!r}")
            for ex in s.fp_examples:
                print(f"  false  {kind}: {ex!r}")

    peer_text, peer_gold = slice_corpus(text, gold, args.peer_kb * 1000)
    pred_slice = [p for p in pred if p[2] <= len(peer_text)]
    _, slice_secs = run_privguard(peer_text)
    report("privguard (slice)", peer_text, peer_gold, pred_slice, slice_secs)

    presidio = run_presidio(peer_text)
    if isinstance(presidio, str):
        print(f"{'presidio':<22} skipped: {presidio}")
    else:
        p_rate = report("presidio (patterns)", peer_text, peer_gold, *presidio)
        pg_line_rate = mb(peer_text) / run_privguard_lines(peer_text)
        print(
            f"throughput privguard / presidio: {pg_rate / p_rate:.0f}x one text, "
            f"{pg_line_rate / p_rate:.0f}x line by line (presidio runs line by line)"
        )
        sparse_slice, sparse_slice_gold = slice_corpus(sparse, sparse_gold, args.peer_kb * 1000)
        sparse_presidio = run_presidio(sparse_slice)
        if not isinstance(sparse_presidio, str):
            ps_rate = report("presidio (sparse)", sparse_slice, sparse_slice_gold, *sparse_presidio)
            print(f"throughput privguard / presidio on sparse text: {sparse_rate / ps_rate:.0f}x")
    scrub = run_scrubadub(peer_text)
    if isinstance(scrub, str):
        print(f"{'scrubadub':<22} skipped: {scrub}")
    else:
        s_rate = report("scrubadub", peer_text, peer_gold, *scrub)
        print(f"throughput privguard / scrubadub: {pg_rate / s_rate:.0f}x")


if __name__ == "__main__":
    main()
