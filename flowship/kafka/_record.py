"""What a Python operator receives from a flowship source: the value and where it came from."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from flowship.errors import FlagError

#: datetime(pickle_state, tzinfo), the constructor pickle itself uses (untyped in typeshed)
_from_state: Any = datetime

#: decisions in wire form -> the decisions (read-only dicts shared by every record that has them)
_DECODED: dict[str, dict[str, Any]] = {}


def encode_decisions(decisions: dict[str, Any]) -> str:
    """The wire form of flag decisions: canonical JSON (sorted keys, no spaces).

    Records carry their decisions in this form: one short string pickles across ``key_by`` in
    about a third of the time a dict of the same decisions takes (one copy instead of a key and
    a value per flag), and a job's records share a handful of distinct strings. The same text
    is what an operator's keyed state keeps for its timers (``flowship.last-input``).
    """
    return json.dumps(decisions, separators=(",", ":"), sort_keys=True)


def decisions_of(wire: Any) -> dict[str, Any] | None:
    """The decisions a record carries (``None`` for none); read-only, shared between records.

    Accepts the wire form (:func:`encode_decisions`) or a plain dict (records built by hand).
    """
    if wire is None or type(wire) is dict:
        return wire
    found = _DECODED.get(wire)
    if found is None:
        if len(_DECODED) >= 4096:  # a job has few distinct decisions: this bounds a leak
            _DECODED.clear()
        found = _DECODED[wire] = json.loads(wire)
    return found


class Record(NamedTuple):
    """One decoded Kafka record with its provenance.

    A NamedTuple, so it crosses between Python operators as cheaply as a tuple. ``value`` is the
    Avro-decoded payload (a dict); ``topic``/``partition``/``offset`` identify the input record
    exactly, which is what output diffs and canaries match on.
    """

    value: dict[str, Any]
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: int
    #: the flag values in force for this input record, in wire form (:func:`encode_decisions`;
    #: ``None`` when the job declares no flags): decided once, by the source's decoder, from
    #: the record's address and the cuts. Read them with :meth:`flag` or :attr:`decisions`
    decided: Any = None

    @property
    def decisions(self) -> dict[str, Any] | None:
        """Flag key -> the value in force for this input record (read-only; None: no flags)."""
        return decisions_of(self[6])

    @property
    def provenance(self) -> str:
        """``topic/partition/offset``: the input record's identity."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def flag(self, key: str) -> Any:
        """The value of flag ``key``'s variant in force for this input record.

        Decided by the record's input address (topic, partition, offset) and the rules on the
        job's control topic: the same on every subtask, after every restore, on every replay.
        """
        decided = self[6]
        try:
            return _DECODED[decided][key]
        except (KeyError, TypeError):
            decisions = decisions_of(decided)
            if decisions is not None and key in decisions:
                return decisions[key]
            declared = sorted(k for k in (decisions or {}) if not k.startswith("flowship."))
            msg = (
                f"flag {key!r} is not declared on this job (declared: {declared}); declare it "
                "with fs.Job(..., flags=[fs.Flag(...)])"
                if decisions is not None
                else f"flag {key!r}: this record carries no flag decisions (the job declares no "
                "flags, or the record did not come from a flowship source)"
            )
            raise FlagError(msg) from None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Records cross key_by (and every other network edge) pickled. Two costs are avoided:
        # the default NamedTuple path goes through copyreg on every record, and an aware UTC
        # datetime -- what Avro's timestamp-millis/-micros decode to -- pickles its
        # ``timezone.utc`` through copyreg too: about 6 us of a 9 us round trip. Top-level UTC
        # datetimes therefore travel as their 10-byte pickle state and are rebuilt exactly
        # (same value, same ``timezone.utc``) by ``_rebuild``; anything else pickles as usual.
        value = self[0]
        if type(value) is not dict:
            return (Record, tuple(self))
        stamps = [n for n, f in value.items() if type(f) is datetime and f.tzinfo is UTC]
        if not stamps:
            return (Record, tuple(self))
        value = dict(value)  # the record's own value stays as it is
        for name in stamps:
            value[name] = value[name].__reduce__()[1][0]
        return (_rebuild, (value, tuple(stamps), *self[1:]))

    def with_value(self, value: dict[str, Any]) -> Record:
        """A new record carrying ``value`` and this record's provenance (for sinks' headers)."""
        # tuple.__new__ directly: NamedTuple._replace costs about four times as much per record
        return tuple.__new__(Record, (value, *self[1:]))


def _rebuild(value: dict[str, Any], stamps: tuple[str, ...], *provenance: Any) -> Record:
    """Unpickle a :class:`Record` whose ``stamps`` fields travelled as datetime pickle states."""
    for name in stamps:
        value[name] = _from_state(value[name], UTC)
    return tuple.__new__(Record, (value, *provenance))
