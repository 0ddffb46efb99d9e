"""A flowship error raised while a job script runs its declarations: ``flowship: <message>``.

A job script declares its state schemas, sources, sinks and job at import time, before
``job.main()`` runs: a schema file with a syntax error, a bad uid or a version gap raises there,
where ``job.main()`` cannot catch it. :func:`install` (called when ``flowship`` is imported, and
only if nobody replaced Python's default hook) sets a ``sys.excepthook`` that gives such an error
the form ``job.main()`` gives every other bad input: ``flowship: <message>`` on stderr, the line
of the script that raised it, and the documented exit code (2 for a ``ConfigError`` or a
``SchemaError``), without a traceback. ``flowship check`` and ``flowship manifest`` show the
message as it is.

Only an uncaught :class:`~flowship.errors.FlowshipError` raised while the main script itself
runs (a frame of its top level is in the traceback) is handled; anything else goes to the hook
that was there before. ``FLOWSHIP_TRACEBACK=1`` keeps Python's traceback.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

from flowship.errors import FlowshipError

#: Set to 1 to see Python's traceback of an error raised by a job script's declarations.
TRACEBACK_ENV = "FLOWSHIP_TRACEBACK"


def _script_line(tb: TracebackType | None) -> tuple[str, int] | None:
    """File and line of the main script's top level that the traceback passes through last."""
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            found = (frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    where = _script_line(tb)
    if (
        not isinstance(exc, FlowshipError)
        or where is None
        or os.environ.get(TRACEBACK_ENV, "").strip().lower() in ("1", "true", "yes")
    ):
        _previous(exc_type, exc, tb)
        return
    from flowship.deploy.exits import exit_code_for

    print(f"flowship: {exc}", file=sys.stderr)
    print(
        f"flowship: raised at {where[0]}, line {where[1]} ({TRACEBACK_ENV}=1 shows the traceback)",
        file=sys.stderr,
        flush=True,
    )
    # the interpreter exits with the code of a SystemExit raised by the hook
    raise SystemExit(exit_code_for(exc))


_previous = sys.excepthook


def install() -> None:
    """Set the hook, unless someone already replaced Python's default one."""
    global _previous
    if sys.excepthook is sys.__excepthook__:
        _previous = sys.excepthook
        sys.excepthook = _hook
