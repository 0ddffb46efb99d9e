"""Feature flags and output routing decided by input offset at agreed cuts.

Job authors declare flags (:class:`Flag`) on :class:`flowship.Job` and read them per record with
``record.flag(key)``. Operators change rules with ``flowship flag set`` or :class:`FlagClient`.
See ``docs/concepts/flags.md`` for the protocol.
"""

from flowship.control._client import FlagChange, FlagClient, retire_instances, rules_in_force
from flowship.control._flags import PRODUCTION, ROUTE, ROUTE_KEY, SIDE, Flag
from flowship.control._log import control_topic, ensure_topic
from flowship.control._rules import FlagConfig, Rule, bucket, parse_rules

__all__ = [
    "PRODUCTION",
    "ROUTE",
    "ROUTE_KEY",
    "SIDE",
    "Flag",
    "FlagChange",
    "FlagClient",
    "FlagConfig",
    "Rule",
    "bucket",
    "control_topic",
    "ensure_topic",
    "parse_rules",
    "retire_instances",
    "rules_in_force",
]
