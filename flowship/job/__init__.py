"""Jobs: graph building, settings and the ``job.main()`` entry point."""

from typing import Any

from flowship.job._job import Job

__all__ = ["Job", "Settings"]


def __getattr__(name: str) -> Any:
    # Settings (pydantic-settings) loads on first use: a TaskManager's Python imports this
    # package with the job's code and never needs it
    if name == "Settings":
        from flowship.job._settings import Settings

        return Settings
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
