"""Deployment: Flink REST client (and, next, the upgrade planner, ledger, health and rollback)."""
