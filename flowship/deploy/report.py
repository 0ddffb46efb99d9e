"""``flowship diff JOB --html FILE``: where in the input two versions' outputs differ, as a chart.

One chart per sink: for each field that differs, the share of the compared inputs whose outputs
differ in it, over the input offset (all input partitions together, in buckets of equal width).
A change that depends on the data shows as a level line; one that begins at some point of the
input (a flag flipped, a bad batch of input) as a step. Made with plotly (``pip install
'flowship[report]'``) into one HTML file with plotly's JavaScript inside: it opens in a browser
from disk, without a server or a network.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowship.deploy.diff import split_address
from flowship.errors import ConfigError

if TYPE_CHECKING:
    from flowship.deploy.shadow import ShadowDiff

#: how many buckets the input offsets are cut into
BUCKETS = 50


def rate_series(
    compared: Iterable[str], differences: Sequence[tuple[str, Sequence[str]]]
) -> dict[str, tuple[list[int], list[float]]]:
    """Per differing field: bucket starts (input offsets) and the % of inputs differing there.

    ``compared``: the input addresses compared; ``differences``: (address, fields) of those
    whose outputs differ.
    """
    offsets = [o for o in (split_address(a)[1] for a in compared) if o is not None]
    if not offsets:
        return {}
    low, high = min(offsets), max(offsets)
    width = max(1, math.ceil((high - low + 1) / BUCKETS))
    totals = Counter((o - low) // width for o in offsets)
    per_field: dict[str, Counter[int]] = {}
    for address, fields in differences:
        offset = split_address(address)[1]
        if offset is None:
            continue
        for name in fields:
            per_field.setdefault(name, Counter())[(offset - low) // width] += 1
    buckets = sorted(totals)
    return {
        name: (
            [low + b * width for b in buckets],
            [round(100.0 * counts[b] / totals[b], 3) for b in buckets],
        )
        for name, counts in sorted(per_field.items())
    }


def write_html(result: ShadowDiff, path: Path) -> Path:
    """Write ``result``'s chart to ``path`` (self-contained HTML); the path written."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as exc:
        msg = (
            "flowship diff --html needs plotly; install it with pip install 'flowship[report]' "
            "(or pip install plotly)"
        )
        raise ConfigError(msg) from exc
    sinks = result.sinks or []
    titles = [f"{d.candidate} against {d.production}: {d.summary()}" for d in sinks] or ["-"]
    figure: Any = make_subplots(rows=max(len(sinks), 1), cols=1, subplot_titles=titles)
    for row, diff in enumerate(sinks, start=1):
        series = rate_series(result.compared.get(diff.candidate, ()), diff.differences)
        if not series:
            figure.add_annotation(
                text="no differences" if diff.compared else "nothing compared",
                row=row,
                col=1,
                showarrow=False,
            )
        for name, (xs, ys) in series.items():
            figure.add_trace(
                go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{name} ({diff.candidate})"),
                row=row,
                col=1,
            )
        figure.update_xaxes(title_text="input offset (bucket start)", row=row, col=1)
        figure.update_yaxes(title_text="% of compared inputs differing", row=row, col=1)
    figure.update_layout(
        title=(
            f"{result.job}: shadow version {result.version} against production version "
            f"{result.running_version} (deployment {result.deployment})"
        ),
        height=max(420, 360 * max(len(sinks), 1)),
    )
    path = Path(path)
    try:
        figure.write_html(str(path), include_plotlyjs=True, full_html=True)
    except OSError as exc:
        msg = f"cannot write the report to {path}: {exc}"
        raise ConfigError(msg) from exc
    return path
