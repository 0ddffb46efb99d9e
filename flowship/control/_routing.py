"""Who serves production, partition by partition, when versions run side by side (pure Python).

Each version of a job decides per input record, with the built-in flag ``flowship.route``,
whether the record's outputs go to production or to its side topics. A version started beside
a running one (``--shadow``, ``--canary``) routes aside by default (:data:`SHADOW_ROUTE`); the
running one to production (:data:`ROUTE`). A canary, a promotion or an abort is one routing
change, in force at one agreed cut for both versions at once, built by :func:`serving_config`:

* v2 serves partitions 0 and 3: ``version=2&partitions=0,3:production
  version=1&partitions=0,3:side``;
* v2 serves all: ``version=2:production version=1:side``; v2 serves none: no rules.

:func:`check_routing` is the guard every routing change passes while more than one version runs
(``flowship flag set`` included): for every input partition at most one version may route it to
production, decided once per partition (rules that split a partition record by record, percent
and field, are refused), so no input's output reaches production twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from flowship.control._flags import PRODUCTION, SIDE, route_flag
from flowship.control._rules import FlagConfig, Rule, Where, compile_flag
from flowship.errors import FlagError


@dataclass(frozen=True)
class RunningVersion:
    """A version whose instances run: its name, whether it started beside another, its env."""

    version: str
    shadow: bool = False
    environment: str = ""


def served(
    config: FlagConfig | None,
    versions: Sequence[RunningVersion],
    partitions: Mapping[str, Iterable[int]],
) -> dict[tuple[str, int], list[str]]:
    """(topic, partition) -> the versions that route it to production under ``config``.

    Raises :class:`FlagError` when a version's decision on a partition depends on each record
    (percent and field rules): then who serves it cannot be told per partition.
    """
    out: dict[tuple[str, int], list[str]] = {}
    for topic, parts in sorted(partitions.items()):
        for partition in sorted(parts):
            serving: list[str] = []
            for running in versions:
                where = Where(topic, partition, running.environment, running.version)
                fixed, value = compile_flag(route_flag(running.shadow), config, where)
                if not fixed:
                    msg = (
                        f"routing rules {_text(config)!r} decide record by record (percent or "
                        f"field) on {topic}/{partition} for version {running.version}; while "
                        "versions run side by side, flowship.route rules must decide per "
                        "partition (all, partitions, version, env)"
                    )
                    raise FlagError(msg)
                if value == PRODUCTION:
                    serving.append(running.version)
            out[(topic, partition)] = serving
    return out


def check_routing(
    config: FlagConfig | None,
    versions: Sequence[RunningVersion],
    partitions: Mapping[str, Iterable[int]],
    previous: FlagConfig | None = None,
) -> None:
    """Raise :class:`FlagError` unless every partition goes to production from one version at most.

    With one version nothing can go twice, and any rules are allowed. With ``previous`` (the
    rules in force), a change that moves partitions both ways between two versions at once is
    refused too: each version would hold its records at the cut until the other committed up
    to it, and each holds its own checkpoints while it waits.
    """
    if len({v.version for v in versions}) < 2:
        return
    after = served(config, versions, partitions)
    if previous is not None:
        before = served(previous, versions, partitions)
        moves = {
            (tuple(before[where]), tuple(now))
            for where, now in after.items()
            if before[where] != now
        }
        both = sorted((a, b) for a, b in moves if (b, a) in moves and a and b)
        if both:
            a, b = both[0]
            msg = (
                f"routing rules {_text(config)!r} move partitions from version {a[0]} to "
                f"{b[0]} and others back at once; move them one way per change (`flowship "
                "promote` adds partitions to the new version, `flowship abort` gives all back)"
            )
            raise FlagError(msg)
    for (topic, partition), serving in after.items():
        if len(serving) > 1:
            msg = (
                f"routing rules {_text(config)!r} would send the outputs of {topic}/{partition} "
                f"to production from versions {' and '.join(serving)} at once (each input's "
                "output would reach production twice); change which version serves a "
                "partition with `flowship promote` / `flowship abort`, or name the versions in "
                "the rules (version=V&partitions=...)"
            )
            raise FlagError(msg)


def serving_config(new: str, old: str, serve: Sequence[int] | None) -> FlagConfig:
    """The routing rules under which ``new`` serves ``serve`` (None: every partition).

    ``new`` is the version started beside ``old`` (it routes aside unless told); ``old``
    serves every partition ``new`` does not.
    """
    if serve is None:
        return FlagConfig(
            (
                Rule("version", PRODUCTION, (new,)),
                Rule("version", SIDE, (old,)),
            )
        )
    if not serve:
        return FlagConfig()
    parts = tuple(sorted(set(serve)))
    return FlagConfig(
        (
            Rule("version", PRODUCTION, (new,), also=(Rule("partitions", "", parts),)),
            Rule("version", SIDE, (old,), also=(Rule("partitions", "", parts),)),
        )
    )


def _text(config: FlagConfig | None) -> str:
    return "none" if config is None else config.text()
