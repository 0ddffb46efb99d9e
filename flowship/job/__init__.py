"""Jobs: graph building, settings and the ``job.main()`` entry point."""

from flowship.job._job import Job
from flowship.job._settings import Settings

__all__ = ["Job", "Settings"]
