"""Targeting rules: their text form, JSON form, and evaluation (pure Python).

A flag's configuration is an ordered list of rules and an optional default variant: the first
rule that matches an input record decides its variant, else the default (the configuration's,
else the flag's declared one). Rule text, one argument each on ``flowship flag set``::

    all:VARIANT                     every record
    partitions=1,4:VARIANT          records from these input partitions
    percent=30:VARIANT              30 % of targeting keys (SHA-1 bucketing, see bucket())
    field.tenant=a,b:VARIANT        records whose value's field ``tenant`` is "a" or "b"
    env=prod,staging:VARIANT        instances run with this environment setting
    version=2:VARIANT               instances of this job version
    version=2&partitions=0,3:VARIANT    all of these (``&``; at most one percent or field)
    default:VARIANT                 the variant when no rule matches (last)
    none                            alone: no rules, the declared default everywhere

Rules that depend only on where a record is (partition, environment, version) are decided once
per partition and cut, not per record; ``percent`` and ``field`` are evaluated per record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowship.control._flags import Flag
from flowship.errors import FlagError

MATCHES = ("all", "partitions", "percent", "field", "env", "version")
_STATIC = frozenset({"all", "partitions", "env", "version"})
_SCALE = 0xFFFFFFFFFFFFFFF


def bucket(flag_key: str, targeting_key: bytes) -> float:
    """Where ``targeting_key`` falls for ``flag_key``, in [0, 100].

    LaunchDarkly's bucketing: the first 15 hex digits of SHA-1 over ``"<flag key>.<targeting
    key>"``, divided by ``0xFFFFFFFFFFFFFFF``. The same on every process, host and Python
    version (unlike ``hash()``); a key in ``percent=30`` stays in ``percent=40``.
    """
    digest = hashlib.sha1(flag_key.encode() + b"." + targeting_key, usedforsecurity=False)
    return int(digest.hexdigest()[:15], 16) / _SCALE * 100.0


@dataclass(frozen=True)
class Rule:
    """One targeting rule: ``match`` (a kind from :data:`MATCHES`), its arguments, a variant."""

    match: str
    variant: str
    values: tuple[Any, ...] = ()
    field: str | None = None
    #: more conditions that must hold too (``a=1&b=2``), each a Rule without a variant
    also: tuple[Rule, ...] = ()

    def describe(self) -> dict[str, Any]:
        """JSON form (the control topic's records)."""
        out: dict[str, Any] = {"match": self.match, "variant": self.variant}
        if self.values:
            out["values"] = list(self.values)
        if self.field is not None:
            out["field"] = self.field
        if self.also:
            out["and"] = [
                {k: v for k, v in c.describe().items() if k != "variant"} for c in self.also
            ]
        return out

    @classmethod
    def from_description(cls, data: Mapping[str, Any]) -> Rule:
        """Inverse of :meth:`describe`."""
        return cls(
            match=data["match"],
            variant=data["variant"],
            values=tuple(data.get("values", ())),
            field=data.get("field"),
            also=tuple(cls.from_description({**c, "variant": ""}) for c in data.get("and", ())),
        )

    def conditions(self) -> tuple[Rule, ...]:
        """Every condition of the rule (itself first), each as a rule of one match."""
        return (Rule(self.match, self.variant, self.values, self.field), *self.also)

    def _condition_text(self) -> str:
        if self.match == "all":
            return "all"
        head = f"field.{self.field}" if self.match == "field" else self.match
        return f"{head}={','.join(str(v) for v in self.values)}"

    def text(self) -> str:
        """The rule as ``flowship flag set`` takes it."""
        return "&".join(c._condition_text() for c in self.conditions()) + f":{self.variant}"


@dataclass(frozen=True)
class FlagConfig:
    """A flag's rules in force from a cut on: rules in order, then ``default`` (or the flag's)."""

    rules: tuple[Rule, ...] = ()
    default: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON form."""
        return {"rules": [r.describe() for r in self.rules], "default": self.default}

    @classmethod
    def from_description(cls, data: Mapping[str, Any]) -> FlagConfig:
        """Inverse of :meth:`describe`."""
        return cls(
            rules=tuple(Rule.from_description(r) for r in data.get("rules", ())),
            default=data.get("default"),
        )

    def text(self) -> str:
        """The configuration as ``flowship flag set`` arguments."""
        parts = [r.text() for r in self.rules]
        if self.default is not None:
            parts.append(f"default:{self.default}")
        return " ".join(parts) if parts else "none"

    def check(self, flag: Flag) -> None:
        """Raise :class:`FlagError` if a variant named here is not one of ``flag``'s."""
        for variant in [r.variant for r in self.rules] + [self.default]:
            if variant is not None:
                flag.value_of(variant)


def _bad(text: str, why: str) -> FlagError:
    return FlagError(
        f"rule {text!r}: {why}. Rules are MATCH:VARIANT with MATCH one of all, partitions=1,4, "
        "percent=30, field.NAME=a,b, env=NAME,..., version=V,..., or several joined by '&' "
        "(at most one percent or field); then optionally default:VARIANT; or 'none' alone"
    )


def parse_rules(texts: Sequence[str]) -> FlagConfig:
    """Parse ``flowship flag set``'s rule arguments into a :class:`FlagConfig`."""
    if list(texts) == ["none"]:
        return FlagConfig()
    if not texts:
        msg = "no rules given; give at least one rule, or 'none' to clear the flag's rules"
        raise FlagError(msg)
    rules: list[Rule] = []
    default: str | None = None
    for text in texts:
        if default is not None:
            raise _bad(text, "nothing may follow default:VARIANT")
        head, sep, variant = text.rpartition(":")
        if not sep or not head or not variant:
            raise _bad(text, "it names no variant after ':'")
        if head == "default":
            default = variant
            continue
        parts = [_condition(text, part.strip(), variant) for part in head.split("&")]
        if sum(1 for c in parts if c.match not in _STATIC) > 1:
            raise _bad(text, "at most one percent or field condition per rule")
        if len(parts) > 1 and any(c.match == "all" for c in parts):
            raise _bad(text, "'all' goes alone")
        first = parts[0]
        also = tuple(Rule(c.match, "", c.values, c.field) for c in parts[1:])
        rules.append(Rule(first.match, variant, first.values, first.field, also=also))
    return FlagConfig(tuple(rules), default)


def _condition(text: str, head: str, variant: str) -> Rule:
    """One condition of a rule (``partitions=1,4``, ``all``, ...) with the rule's variant."""
    if head == "all":
        return Rule("all", variant)
    kind, eq, args = head.partition("=")
    if not eq or not args:
        raise _bad(text, f"{kind!r} takes values after '='")
    raw = [a.strip() for a in args.split(",")]
    if any(not a for a in raw):
        raise _bad(text, "an empty value in the list")
    if kind == "partitions":
        try:
            values: tuple[Any, ...] = tuple(sorted({int(a) for a in raw}))
        except ValueError:
            raise _bad(text, "partitions are whole numbers") from None
        if any(v < 0 for v in values):
            raise _bad(text, "partitions are 0 or more")
        return Rule("partitions", variant, values)
    if kind == "percent":
        if len(raw) != 1:
            raise _bad(text, "percent takes one number")
        try:
            percent = float(raw[0])
        except ValueError:
            raise _bad(text, f"percent {raw[0]!r} is not a number") from None
        if not 0.0 <= percent <= 100.0:
            raise _bad(text, f"percent {percent:g} is outside 0-100")
        return Rule("percent", variant, (percent,))
    if kind.startswith("field.") and len(kind) > len("field."):
        return Rule("field", variant, tuple(raw), field=kind[len("field.") :])
    if kind in ("env", "version"):
        return Rule(kind, variant, tuple(raw))
    raise _bad(text, f"unknown match {kind!r}")


#: An evaluator: (Kafka key, decoded value) -> the flag's value for that record. Each one
#: :func:`compile_flag` makes says what it reads in its ``reads`` attribute: ``(uses the Kafka
#: key, names of the value fields whose text it reads)``; the result depends on nothing else.
Evaluator = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Where:
    """What static rules decide on: an input record's topic and partition, and the instance."""

    topic: str
    partition: int
    environment: str
    version: str


def _static_match(rule: Rule, where: Where) -> bool:
    if rule.match == "all":
        return True
    if rule.match == "partitions":
        return where.partition in rule.values
    if rule.match == "env":
        return where.environment in rule.values
    return where.version in rule.values  # version


def compile_flag(flag: Flag, config: FlagConfig | None, where: Where) -> tuple[bool, Any]:
    """Compile ``config`` for the records at ``where``.

    ``(True, value)`` when it decides one value for every such record; ``(False, evaluator)``
    when the value depends on each record (percent and field rules).
    """
    if config is None:
        return True, flag.value_of(flag.default_variant)
    if config.default is not None and config.default not in flag.values:
        config = FlagConfig(config.rules, None)
    # a rule naming a variant this version does not declare is skipped (the gate reports it
    # before an upgrade; ``flag set`` refuses it for running versions)
    config = FlagConfig(tuple(r for r in config.rules if r.variant in flag.values), config.default)
    dynamic: list[Rule] = []
    fallback = flag.value_of(config.default or flag.default_variant)
    for rule in config.rules:
        # a rule's static conditions are decided here, once: a rule whose static conditions do
        # not hold at ``where`` never applies there; one that has a dynamic condition (percent,
        # field) is that condition alone from here on
        conditions = rule.conditions()
        if not all(_static_match(c, where) for c in conditions if c.match in _STATIC):
            continue
        left = [c for c in conditions if c.match not in _STATIC]
        if not left:
            fallback = flag.value_of(rule.variant)
            break
        (condition,) = left
        dynamic.append(Rule(condition.match, rule.variant, condition.values, condition.field))
    else:
        fallback = flag.value_of(config.default or flag.default_variant)
    if not dynamic:
        return True, fallback
    return False, _evaluator(flag, tuple(dynamic), fallback)


def _evaluator(flag: Flag, rules: tuple[Rule, ...], fallback: Any) -> Evaluator:
    key = flag.key
    targeting = flag.targeting_key
    steps: list[tuple[str, Any, Any]] = []
    for rule in rules:
        value = flag.value_of(rule.variant)
        if rule.match == "percent":
            steps.append(("percent", rule.values[0], value))
        else:
            steps.append(("field", (rule.field, frozenset(str(v) for v in rule.values)), value))

    buckets: dict[bytes, float] = {}  # targeting keys repeat: SHA-1 once per key
    # what of a record the result depends on: its Kafka key, and these fields' text (str())
    uses_key = targeting is None and any(kind == "percent" for kind, _, _ in steps)
    fields = {arg[0] for kind, arg, _ in steps if kind == "field"}
    if targeting is not None and any(kind == "percent" for kind, _, _ in steps):
        fields.add(targeting)
    reads = (uses_key, tuple(sorted(fields)))

    def where_of(target: bytes) -> float:
        where = buckets.get(target)
        if where is None:
            if len(buckets) >= 100_000:
                buckets.clear()
            where = buckets[target] = bucket(key, target)
        return where

    # One rule is the common case (a ramp, or one set of tenants): a closure for it alone. It
    # runs for every input record, so it does no more than the general loop's matching step.
    if len(steps) == 1 and steps[0][0] == "percent" and targeting is None:
        _, percent, on = steps[0]

        def by_key(record_key: Any, record_value: Any) -> Any:
            if record_key is None:
                return fallback
            where = buckets.get(record_key)
            if where is None:
                where = where_of(record_key)
            return on if where < percent else fallback

        by_key.reads = reads  # type: ignore[attr-defined]
        return by_key
    if len(steps) == 1 and steps[0][0] == "field":
        _, (name, allowed), on = steps[0]

        def by_field(record_key: Any, record_value: Any) -> Any:
            field = record_value.get(name) if isinstance(record_value, dict) else None
            return on if field is not None and str(field) in allowed else fallback

        by_field.reads = reads  # type: ignore[attr-defined]
        return by_field

    def evaluate(record_key: Any, record_value: Any) -> Any:
        for kind, arg, value in steps:
            if kind == "percent":
                if targeting is None:
                    target = record_key
                else:
                    field = record_value.get(targeting) if isinstance(record_value, dict) else None
                    target = None if field is None else str(field).encode()
                if target is None:
                    continue
                if where_of(target) < arg:
                    return value
            else:
                name, allowed = arg
                field = record_value.get(name) if isinstance(record_value, dict) else None
                if field is not None and str(field) in allowed:
                    return value
        return fallback

    evaluate.reads = reads  # type: ignore[attr-defined]
    return evaluate
