"""flowship: self-deploying stateful stream jobs on Apache Flink (PyFlink) with Kafka.

The names a job author needs::

    import flowship as fs

    clicks = fs.KafkaSource(uid="clicks", topic="clicks", schema="click.avsc")
    stats = fs.KafkaSink(uid="stats", topic="session-stats", schema="stats.avsc", key="user_id")
    job = fs.Job("click-sessions", version="1", sources=[clicks], sinks=[stats])
"""

from flowship import _script_errors
from flowship.control import Flag
from flowship.errors import FlowshipError
from flowship.job import Job
from flowship.kafka import KafkaSink, KafkaSource, Record
from flowship.schema import StateSchema
from flowship.state import ListState, MapState, ValueState, apply, stateful

__all__ = [
    "Flag",
    "FlowshipError",
    "Job",
    "KafkaSink",
    "KafkaSource",
    "ListState",
    "MapState",
    "Record",
    "StateSchema",
    "ValueState",
    "apply",
    "stateful",
]
__version__ = "0.1.0"

# an error raised by a job script's declarations reads like one from job.main(): no traceback
_script_errors.install()
