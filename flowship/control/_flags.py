"""Declaring feature flags: ``fs.Flag`` (pure Python, no PyFlink, no Kafka).

Vocabulary as in OpenFeature: a flag has a **key**, named **variants** (each a value), a
**default variant**, and a **targeting key** (what percentage rules bucket on). A boolean flag
has the variants ``on`` (True) and ``off`` (False).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowship.errors import FlagError

_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_VARIANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: Flag keys under this prefix are flowship's own (output routing).
RESERVED = "flowship."
#: The built-in routing decision: where a record's outputs go.
ROUTE_KEY = "flowship.route"
PRODUCTION = "production"
SIDE = "side"


@dataclass(frozen=True)
class Flag:
    """A feature flag declared in a job's code: ``fs.Flag("new-pricing", default=False)``.

    ``variants`` names the values the flag can take (strings, numbers or booleans); without it
    the flag is boolean with variants ``on`` (True) and ``off`` (False) and ``default`` is a
    bool. With it, ``default`` names a variant. ``targeting_key`` names the field of the input
    record's value that percentage rules bucket on; by default the Kafka record key.

    In an operator, ``record.flag("new-pricing")`` returns the value of the variant in force for
    that input record, decided by the record's input offset and the rules on the job's control
    topic (``flowship flag set``), identically on every subtask, restore and replay.
    """

    key: str
    default: Any = False
    variants: Mapping[str, Any] | None = None
    targeting_key: str | None = None
    description: str = ""
    _values: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY.match(self.key):
            msg = (
                f"Flag key {self.key!r} must be lowercase letters, digits, '.', '_' or '-' "
                "(at most 63 characters)"
            )
            raise FlagError(msg)
        if self.key.startswith(RESERVED) and self.key != ROUTE_KEY:
            msg = f"Flag key {self.key!r}: keys starting with {RESERVED!r} are flowship's own"
            raise FlagError(msg)
        if self.variants is None:
            if not isinstance(self.default, bool):
                msg = (
                    f"Flag {self.key!r}: default={self.default!r}; a flag without variants is "
                    "boolean (default=True or False); for other values name them, e.g. "
                    "variants={'old': 1.0, 'new': 1.2}, default='old'"
                )
                raise FlagError(msg)
            values: dict[str, Any] = {"on": True, "off": False}
        else:
            values = dict(self.variants)
            if not values:
                msg = f"Flag {self.key!r}: variants is empty; name at least one variant"
                raise FlagError(msg)
            for name, value in values.items():
                if not isinstance(name, str) or not _VARIANT.match(name):
                    msg = (
                        f"Flag {self.key!r}: variant name {name!r} must be letters, digits, "
                        "'.', '_' or '-'"
                    )
                    raise FlagError(msg)
                if not isinstance(value, (str, int, float, bool)):
                    msg = (
                        f"Flag {self.key!r}: variant {name!r} has a {type(value).__name__} "
                        "value; variants are strings, numbers or booleans"
                    )
                    raise FlagError(msg)
            if self.default not in values:
                msg = (
                    f"Flag {self.key!r}: default {self.default!r} is not one of its variants "
                    f"{sorted(values)}"
                )
                raise FlagError(msg)
        object.__setattr__(self, "_values", values)

    @property
    def default_variant(self) -> str:
        """The name of the variant served when no rule matches."""
        if self.variants is None:
            return "on" if self.default else "off"
        return str(self.default)

    @property
    def values(self) -> dict[str, Any]:
        """Variant name -> value."""
        return dict(self._values)

    @property
    def type(self) -> str:
        """``boolean``, ``string``, ``number`` or ``mixed``: the type of its values."""
        kinds = set()
        for value in self._values.values():
            if isinstance(value, bool):
                kinds.add("boolean")
            elif isinstance(value, (int, float)):
                kinds.add("number")
            else:
                kinds.add("string")
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def value_of(self, variant: str) -> Any:
        """The value of ``variant``; :class:`FlagError` if it is not one of this flag's."""
        try:
            return self._values[variant]
        except KeyError:
            msg = (
                f"Flag {self.key!r} has no variant {variant!r}; its variants are "
                f"{sorted(self._values)}"
            )
            raise FlagError(msg) from None

    def describe(self) -> dict[str, Any]:
        """JSON-serializable description (manifests, the control topic's hello records)."""
        return {
            "key": self.key,
            "type": self.type,
            "variants": dict(self._values),
            "default": self.default_variant,
            "targeting_key": self.targeting_key,
        }

    @classmethod
    def from_description(cls, data: Mapping[str, Any]) -> Flag:
        """Rebuild a flag from :meth:`describe`'s output."""
        variants = dict(data["variants"])
        if variants == {"on": True, "off": False}:
            return cls(
                data["key"], default=data["default"] == "on", targeting_key=data["targeting_key"]
            )
        return cls(
            data["key"],
            default=data["default"],
            variants=variants,
            targeting_key=data["targeting_key"],
        )


#: Every flowship job with a control plane has this flag: ``side`` sends a record's outputs to
#: the sinks' side topics instead of production.
ROUTE = Flag(ROUTE_KEY, default=PRODUCTION, variants={PRODUCTION: PRODUCTION, SIDE: SIDE})
#: The routing flag of a version started beside a running one (``--shadow``, ``--canary``): its
#: outputs go aside unless a rule sends them to production (``flowship promote``).
SHADOW_ROUTE = Flag(ROUTE_KEY, default=SIDE, variants={PRODUCTION: PRODUCTION, SIDE: SIDE})


def route_flag(shadow: bool) -> Flag:
    """The routing flag of a version: :data:`SHADOW_ROUTE` for one started beside another."""
    return SHADOW_ROUTE if shadow else ROUTE
