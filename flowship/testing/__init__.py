"""Test harness for flowship jobs: a real Kafka broker, a real Flink session cluster, job runners.

Import the pieces you need (each starts real processes, stopped by pid)::

    from flowship.testing.kafka_broker import KafkaBroker
    from flowship.testing.session_cluster import SessionCluster
    from flowship.testing.jobs import run_job, JobProcess
    from flowship.testing.kafka_io import create_topics, produce_avro, read_topic

The pytest plugin (``flowship.testing.plugin``) provides them as fixtures.
"""
