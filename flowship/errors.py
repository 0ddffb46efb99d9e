"""The flowship exception tree.

Every error flowship raises derives from :class:`FlowshipError`; where a built-in fits, the
subclass also inherits it, so ``except ValueError`` keeps working for callers that expect one::

    FlowshipError
    ├── ConfigError(ValueError)          bad settings, flags or environment variables
    │   └── FlagError                    an unknown feature flag, a malformed rule or variant
    ├── SchemaError(ValueError)          an Avro schema that does not parse or is not allowed
    ├── PayloadError(ValueError)         a record payload that does not decode / encode
    ├── StateError(ValueError)           stored state bytes that cannot be read with the state
    │                                    schema (names operator uid, state, key, fingerprint)
    ├── MissingJarError(FileNotFoundError)   a JVM artifact (connector, broker) is not installed
    ├── ClusterError(ConnectionError)    a Flink cluster is unreachable or answered with an error
    ├── JobFailedError(RuntimeError)     a Flink job ended in FAILED, or could not be submitted
    ├── ControlError(RuntimeError)       a rule change on a job's control topic was not agreed
    │                                    (an instance passed the cut or did not acknowledge)
    └── ServiceError(RuntimeError)       a local service (Kafka broker, session cluster) did not
                                         start or stop

Messages say what happened, where, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "ConfigError",
    "ControlError",
    "FlagError",
    "FlowshipError",
    "JobFailedError",
    "MissingJarError",
    "PayloadError",
    "SchemaError",
    "ServiceError",
    "StateError",
]


class FlowshipError(Exception):
    """Root of every error flowship raises."""


class ConfigError(FlowshipError, ValueError):
    """A setting, command-line flag or ``FLOWSHIP_*`` environment variable is invalid."""


class FlagError(ConfigError):
    """A feature flag is unknown, or a flag declaration, rule or variant is malformed."""


class SchemaError(FlowshipError, ValueError):
    """An Avro schema does not parse, or is not allowed where it is used."""


class PayloadError(FlowshipError, ValueError):
    """A record payload does not decode with (or encode to) its declared schema."""


class StateError(FlowshipError, ValueError):
    """Stored state bytes cannot be read (or a value cannot be written) with the state schema."""


class MissingJarError(FlowshipError, FileNotFoundError):
    """A JVM artifact flowship needs (Kafka connector, provenance jar, broker) is missing."""


class ClusterError(FlowshipError, ConnectionError):
    """A Flink cluster could not be reached, or its REST API answered with an error."""


class JobFailedError(FlowshipError, RuntimeError):
    """A Flink job could not be submitted, or ended in a failed state."""


class ServiceError(FlowshipError, RuntimeError):
    """A local service (Kafka broker, Flink session cluster) failed to start or stop."""


class ControlError(FlowshipError, RuntimeError):
    """A rule change on a job's control topic was not agreed, so it is in force nowhere."""
