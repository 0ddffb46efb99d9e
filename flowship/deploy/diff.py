"""Two versions' outputs compared record by record, paired by the input record they derive from.

Every output flowship writes names its input record's address in the ``flowship.source``
header (``topic/partition/offset``). Two versions that read the same input therefore write
outputs that pair up exactly, whatever order, partitioning or timing each had: the production
outputs of the running version and a candidate's (a ``--dry-run`` rehearsal's topic, later a
dark launch's side topic) are grouped by that address and compared value by value, decoded with
each version's own sink schema, field by field.

What is compared and what is not:

* An input address both sides wrote outputs for is **equal** (the same outputs: Kafka key and
  decoded value, as many of them) or **different**; for a difference the fields that differ are
  counted (``(key)`` for the Kafka key, ``(outputs)`` when the number of outputs differs).
* An input address only the candidate wrote for is **only_candidate**: the running version wrote
  nothing for it, or had not committed it yet when the topics were read.
* An input address only production wrote for, within the range of input offsets the candidate
  read on that partition (from the lowest to the highest address the candidate wrote for), is
  **only_production**: the candidate dropped that input. Outside that range the candidate never
  read the input, so it is not compared; an input at the very start of the candidate's range
  for which the candidate wrote nothing cannot be told from one it never read.
* Outputs without an address (a timer's or a window's, which derive from no single input) are
  counted as **unaddressed** on each side and not compared.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from flowship._kafka import consumer as kafka_consumer
from flowship.kafka._headers import SOURCE, VERSION
from flowship.schema import AvroCodec

#: the differences a report lists in full (the rest are counted)
EXAMPLES = 3


class Output(NamedTuple):
    """One output record as the diff sees it: its input address, Kafka key and value.

    ``version``: the job version that wrote it (its ``flowship.version`` header, as bytes).
    """

    address: str | None
    key: bytes | None
    value: bytes | None
    version: bytes | None = None


@dataclass
class OutputDiff:
    """How a candidate's outputs compare with production's (see the module docstring)."""

    production: str
    candidate: str
    compared: int = 0
    equal: int = 0
    different: int = 0
    only_production: int = 0
    only_candidate: int = 0
    unaddressed_production: int = 0
    unaddressed_candidate: int = 0
    #: field -> input addresses whose outputs differ in it
    fields: dict[str, int] = field(default_factory=dict)
    #: the first few differences: input address, fields, both sides' outputs
    examples: list[dict[str, Any]] = field(default_factory=list)
    #: why the comparison is partial or was not made (empty: complete)
    note: str = ""
    #: every differing input address and its fields, in input order (for charts; not in JSON)
    differences: list[tuple[str, tuple[str, ...]]] = field(
        default_factory=list, repr=False, compare=False
    )

    def to_json(self) -> dict[str, Any]:
        """JSON form (the dry-run report)."""
        out = asdict(self)
        del out["differences"]
        return out

    def summary(self) -> str:
        """One line for a human."""
        line = (
            f"{self.candidate} against {self.production}: {self.compared} inputs compared, "
            f"{self.equal} equal, {self.different} different"
        )
        if self.fields:
            line += " (" + ", ".join(f"{f} x{n}" for f, n in sorted(self.fields.items())) + ")"
        line += (
            f"; only in production {self.only_production}, only in the candidate "
            f"{self.only_candidate}"
        )
        unaddressed = self.unaddressed_production + self.unaddressed_candidate
        if unaddressed:
            line += f"; {unaddressed} outputs without an input address not compared"
        return line + (f"; {self.note}" if self.note else "")


def compare(
    production: Iterable[Output],
    candidate: Iterable[Output],
    decode_production: Callable[[bytes], Any],
    decode_candidate: Callable[[bytes], Any],
    *,
    production_name: str = "production",
    candidate_name: str = "candidate",
    tolerance: Tolerance | None = None,
) -> OutputDiff:
    """Pair both sides' outputs by input address and compare them (pure: no Kafka).

    ``tolerance``: fields to ignore and how far numbers may be apart (default: exact).
    """
    tol = tolerance or EXACT
    diff = OutputDiff(production_name, candidate_name)
    prod, prod_more, diff.unaddressed_production = _group(production)
    cand, cand_more, diff.unaddressed_candidate = _group(candidate)
    # byte-equal outputs (one each side, same key and value) are equal without decoding: the
    # usual case, so it is all most inputs cost; the rest is decoded, in input order
    suspects: list[str] = []
    several = prod_more.keys() | cand_more.keys()
    if several:
        for address, b in cand.items():
            a = prod.get(address)
            if a is None:
                diff.only_candidate += 1
            elif a[2] != b[2] or a[1] != b[1] or address in several:
                suspects.append(address)
    else:
        # one output per input on both sides: the outputs (address, key, value) the candidate
        # has and production has not, by a set difference in C; only they are looked at
        for odd in {out[0] for out in set(cand.values()).difference(prod.values())}:
            if odd in prod:
                suspects.append(odd)
            else:
                diff.only_candidate += 1
    diff.compared = len(cand) - diff.only_candidate
    fields: Counter[str] = Counter()
    for address in sorted(suspects, key=_order):
        ours_all = prod_more.get(address) or [prod[address]]
        theirs_all = cand_more.get(address) or [cand[address]]
        ours = sorted((_view(o, decode_production) for o in ours_all), key=_canonical)
        theirs = sorted((_view(o, decode_candidate) for o in theirs_all), key=_canonical)
        differing = _differing(ours, theirs, tol)
        if not differing:
            continue
        diff.different += 1
        fields.update(differing)
        diff.differences.append((address, tuple(sorted(differing))))
        if len(diff.examples) < EXAMPLES:
            diff.examples.append(
                {
                    "input": address,
                    "fields": sorted(differing),
                    "production": ours,
                    "candidate": theirs,
                }
            )
    diff.equal = diff.compared - diff.different
    unpaired = prod.keys() - cand.keys()
    if unpaired:
        read = input_ranges(cand)  # the candidate's input offsets, per input partition
        for address in unpaired:
            where, offset = split_address(address)
            if offset is not None and where in read and read[where][0] <= offset <= read[where][1]:
                diff.only_production += 1
    diff.fields = dict(fields)
    return diff


def _group(outputs: Iterable[Output]) -> tuple[dict[str, Output], dict[str, list[Output]], int]:
    """Outputs by input address: the first of each, all of those with more, and the unaddressed.

    Most inputs have one output: then the grouping is one ``dict(zip(...))``, in C.
    """
    outs = outputs if isinstance(outputs, list) else list(outputs)
    addresses = [out[0] for out in outs]
    unaddressed = addresses.count(None)
    first: dict[Any, Output] = dict(zip(addresses, outs, strict=True))
    first.pop(None, None)
    if len(first) + unaddressed == len(outs):
        return first, {}, unaddressed
    # some input has more than one output: keep the first, list them all
    first = {}
    more: dict[str, list[Output]] = {}
    for out in outs:
        address = out[0]
        if address is None:
            continue
        known = len(first)
        seen = first.setdefault(address, out)
        if len(first) == known:  # not new: a second output for this input
            more.setdefault(address, [seen]).append(out)
    return first, more, unaddressed


def input_ranges(addresses: Iterable[str]) -> dict[str, tuple[int, int]]:
    """``topic/partition`` -> the lowest and highest input offset among ``addresses``."""
    ranges: dict[str, tuple[int, int]] = {}
    for address in addresses:
        where, offset = split_address(address)
        if offset is None:
            continue
        low, high = ranges.get(where, (offset, offset))
        ranges[where] = (min(low, offset), max(high, offset))
    return ranges


def split_address(address: str) -> tuple[str, int | None]:
    """``topic/partition/offset`` -> (``topic/partition``, offset); offset None if malformed."""
    where, _, offset = address.rpartition("/")
    try:
        return where, int(offset)
    except ValueError:
        return address, None


def _order(address: str) -> tuple[str, int]:
    where, offset = split_address(address)
    return where, -1 if offset is None else offset


def _view(out: Output, decode: Callable[[bytes], Any]) -> dict[str, Any]:
    """An output as compared and shown: its key (text if it is) and its decoded value."""
    key: Any = out.key
    if isinstance(key, bytes):
        try:
            key = key.decode()
        except UnicodeDecodeError:
            key = key.hex()
    value: Any
    if out.value is None:
        value = None
    else:
        try:
            value = decode(out.value)
        except Exception:  # not of its schema: compared as bytes
            value = {"(bytes)": out.value.hex()}
    return {"key": key, "value": value}


def _canonical(view: Mapping[str, Any]) -> str:
    return json.dumps(view, sort_keys=True, default=str)


def _differing(
    ours: list[dict[str, Any]],
    theirs: list[dict[str, Any]],
    tol: Tolerance,
) -> set[str]:
    """The fields in which two input addresses' outputs differ (empty: they are equal)."""
    same = tol.same
    if len(ours) != len(theirs):
        return set() if "(outputs)" in tol.ignore else {"(outputs)"}
    found: set[str] = set()
    for a, b in zip(ours, theirs, strict=True):
        if not same("(key)", a["key"], b["key"]):
            found.add("(key)")
        left, right = a["value"], b["value"]
        if isinstance(left, dict) and isinstance(right, dict):
            found.update(
                f for f in left.keys() | right.keys() if not same(f, left.get(f), right.get(f))
            )
        elif not same("(value)", left, right):
            found.add("(value)")
    return found


@dataclass(frozen=True)
class Tolerance:
    """What counts as a difference between two versions' outputs (``flowship diff``'s flags).

    Exact by default: a job's outputs for the same input and state are deterministic, so any
    difference is a change. ``ignore``: fields (also ``(key)``, ``(outputs)``) whose
    differences do not count. Numbers (int or float, not bool) count as the same when they are
    at most ``absolute`` apart, or ``relative`` of the larger magnitude (floating-point sums
    taken in another order differ in their last bits: ``relative=1e-9`` forgives that).
    """

    ignore: frozenset[str] = frozenset()
    absolute: float = 0.0
    relative: float = 0.0

    def same(self, name: str, a: Any, b: Any) -> bool:
        """Whether field ``name``'s values ``a`` (production) and ``b`` count as the same."""
        if a == b or name in self.ignore:
            return True
        if not (self.absolute or self.relative):
            return False
        numbers = (int, float)
        if not isinstance(a, numbers) or not isinstance(b, numbers):
            return False
        if isinstance(a, bool) or isinstance(b, bool):
            return False
        return abs(a - b) <= max(self.absolute, self.relative * max(abs(a), abs(b)))

    def describe(self) -> dict[str, Any]:
        """JSON form (reports)."""
        return {"ignore": sorted(self.ignore), "absolute": self.absolute, "relative": self.relative}


EXACT = Tolerance()


@dataclass(frozen=True)
class DiffPolicy:
    """When a candidate's outputs pass: enough inputs compared, few enough of them differing.

    The rate is over the inputs both versions read: those that differ (beyond the tolerance),
    plus those only one of them wrote for, divided by the inputs compared plus those only
    production wrote for.
    """

    min_pairs: int = 1000
    max_diff_rate: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """A policy's verdict on a comparison: ``pass``, ``fail`` or ``undecided`` (too few pairs)."""

    outcome: str
    reason: str
    pairs: int
    differing: int
    rate: float

    def to_json(self) -> dict[str, Any]:
        """JSON form (reports)."""
        return asdict(self)


def judge(diffs: Iterable[OutputDiff], policy: DiffPolicy) -> Verdict:
    """The verdict of ``policy`` over every sink's comparison."""
    pairs = differing = 0
    for d in diffs:
        pairs += d.compared + d.only_production
        differing += d.different + d.only_production + d.only_candidate
    rate = differing / pairs if pairs else 0.0
    if pairs < policy.min_pairs:
        reason = (
            f"only {pairs} inputs compared, fewer than the {policy.min_pairs} the policy needs; "
            "compare again once more input went through both versions"
        )
        return Verdict("undecided", reason, pairs, differing, rate)
    if rate > policy.max_diff_rate:
        reason = (
            f"{differing} of {pairs} inputs differ ({rate:.3%}), more than the "
            f"{policy.max_diff_rate:.3%} the policy allows"
        )
        return Verdict("fail", reason, pairs, differing, rate)
    reason = f"{differing} of {pairs} inputs differ ({rate:.3%}), within {policy.max_diff_rate:.3%}"
    return Verdict("pass", reason, pairs, differing, rate)


# Kafka ---------------------------------------------------------------------------------------


def read_outputs(
    bootstrap: str,
    topic: str,
    start: Mapping[int, int] | None = None,
    timeout: float = 60.0,
) -> list[Output]:
    """The committed records of ``topic`` (read_committed) from ``start`` to its end now.

    ``start``: partition -> first offset to read (missing partitions: from the beginning).
    """
    return read_topics(bootstrap, {topic: start}, timeout)[topic]


def read_topics(
    bootstrap: str,
    starts: Mapping[str, Mapping[int, int] | None],
    timeout: float = 60.0,
) -> dict[str, list[Output]]:
    """:func:`read_outputs` of several topics at once, with one consumer (a missing one: [])."""
    from confluent_kafka import TopicPartition

    consumer = kafka_consumer(
        bootstrap,
        **{
            "group.id": f"flowship.diff.{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "log_level": 3,
        },
    )
    found: dict[str, list[Output]] = {topic: [] for topic in starts}
    try:
        ends: dict[tuple[str, int], int] = {}
        assigned = []
        for topic, start in starts.items():
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for p in meta.partitions:
                begin = int((start or {}).get(p, 0))
                tp = TopicPartition(topic, p)
                ends[(topic, p)] = consumer.get_watermark_offsets(tp, timeout=10)[1]
                assigned.append(TopicPartition(topic, p, begin))
                if ends[(topic, p)] <= begin:
                    del ends[(topic, p)]  # nothing to read there
        todo = set(ends)
        consumer.assign(assigned)
        new = tuple.__new__
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.5)
            if not batch:
                # transaction markers and aborted records end a partition without a message
                positions = consumer.position([TopicPartition(t, p) for t, p in todo])
                for tp in positions:
                    if tp.offset >= ends[(tp.topic, tp.partition)]:
                        todo.discard((tp.topic, tp.partition))
                continue
            for msg in batch:  # per message: the least Python there can be (see diff_rate)
                if msg.error():
                    continue
                where: Any = (msg.topic(), msg.partition())
                offset = msg.offset() or 0
                end = ends.get(where)
                if end is None:
                    continue
                if offset < end:
                    address = version = None
                    headers: Any = msg.headers() or ()  # [(name, bytes | None)]
                    # flowship writes the version first, the input address next
                    for name, raw in headers:
                        if name == SOURCE:
                            address = None if raw is None else raw.decode()
                            break
                        if name == VERSION:
                            version = raw
                    out = new(Output, (address, msg.key(), msg.value(), version))
                    found[where[0]].append(out)
                if offset + 1 >= end:
                    todo.discard(where)
    finally:
        consumer.close()
    return found


def decoder(schema: Any) -> Callable[[bytes], Any]:
    """Avro binary -> value with ``schema`` (a sink's, as a manifest records it)."""
    return AvroCodec(schema, where="output schema").decode
