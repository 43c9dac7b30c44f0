"""A picture of a run: attempts over time, rate-limit pauses, and the concurrency curve.

:func:`timeline_data` turns a :class:`~subplan.RunReport` into plain numbers (rows, bars,
pause spans, the concurrency step function) without drawing anything, so it can be tested
on its own; :func:`write_timeline` draws those numbers into a PNG with matplotlib (the
optional ``plot`` extra), imported only when a picture is asked for.

The picture has two panels on one time axis (seconds since the run started):

- attempts: one row per subplan that ran, in order of first start, one bar per attempt
  coloured by how it ended (the Okabe-Ito palette, which colour-blind readers can tell
  apart); a thin black line before a bar marks the time between dispatch and start;
- running attempts: the concurrency curve, with ``max_parallel`` as a dashed line.

Rate-limit pauses are shaded across both panels. Idle time between sessions (a run, then
a ``resume`` hours later) is cut down to a narrow hatched band labelled with its length
(``idle 3h12m``), so that the sessions stay readable; the time axis still shows the
seconds since the run started. When there are more rows than
``max_rows``, consecutive rows share one band and lose their labels, so that a run of
ten thousand attempts stays quick to draw and readable; failures are drawn over
successes so that they stay visible.
"""

from __future__ import annotations

import math
import os
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .._dispatch._results import AttemptStatus, RunReport
from .._errors import ConfigError, InputError
from .._limit._tracker import concurrency_curve

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend

__all__ = [
    "TimelineBar",
    "TimelineData",
    "TimelineGap",
    "TimelinePause",
    "TimelineRow",
    "timeline_data",
    "write_timeline",
]

# Okabe & Ito (2008), "Color Universal Design": distinguishable with any common form of
# colour blindness. Failures get the warm colours, drawn last (on top) in this order.
_STATUS_COLOURS: dict[AttemptStatus, str] = {
    "succeeded": "#009E73",  # bluish green
    "cancelled": "#999999",  # grey
    "rate_limited": "#56B4E9",  # sky blue
    "timed_out": "#E69F00",  # orange
    "failed": "#D55E00",  # vermillion
    "crashed": "#CC79A7",  # reddish purple
}
_PAUSE_COLOUR = "#F0E442"  # yellow
_CURVE_COLOUR = "#0072B2"  # blue
_IDLE_COLOUR = "#777777"

_NEEDS_MATPLOTLIB = "the timeline needs matplotlib: pip install 'subplan[plot]'"

_DPI = 100
TIMELINE_FORMATS = ("png", "svg", "pdf")  # by the file's extension
_DEFAULT_WIDTH = 12.0  # inches
_ROW_PITCH = 0.2  # inches per labelled row, until the cap
_MAX_LABELLED_HEIGHT = 45.0  # inches: 400 rows at 8 points, labels at 6 points
_MIN_LABEL_POINTS = 5.5  # below this, only every n-th row is labelled
_MAX_BANDED_HEIGHT = 12.0  # inches of attempts panel when rows share bands
_MIN_ATTEMPTS_HEIGHT = 1.2
_CURVE_HEIGHT = 2.0
_TITLE_HEIGHT = 0.7
_LEGEND_SPACING = 0.06  # inches between legend groups
_TOP_AXIS_HEIGHT = 0.3  # the time axis repeated above a tall attempts panel
_GAP = 0.4  # room for the curve panel's title
_AXIS_HEIGHT = 0.55  # x tick labels and the x axis label
_RIGHT_MARGIN = 0.3
_MAX_LABEL_CHARS = 48
_MAX_REASON_CHARS = 60
GAP_SHARE = 0.04
"""An idle time between sessions is drawn this share of the run time wide (or as it is,
when that is narrower)."""


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One subplan that ran at least once: one row of the attempts panel.

    Attributes:
        subplan_id: the unit of work.
        label: its label (an integration step's label ends in `` (integration)``).
        first_start: seconds from the origin to its first attempt's start.
    """

    subplan_id: str
    label: str
    first_start: float


@dataclass(frozen=True, slots=True)
class TimelineBar:
    """One attempt: one bar.

    Attributes:
        row: index into :attr:`TimelineData.rows`.
        subplan_id: the unit of work.
        number: the attempt number.
        status: how it ended.
        start: seconds from the origin to when the work began.
        end: seconds from the origin to when it ended.
        dispatched: seconds from the origin to when the dispatcher launched it, or None
            when not recorded.
    """

    row: int
    subplan_id: str
    number: int
    status: AttemptStatus
    start: float
    end: float
    dispatched: float | None


@dataclass(frozen=True, slots=True)
class TimelinePause:
    """A rate-limit pause, as a span of the time axis.

    Attributes:
        start: seconds from the origin to when the gate closed.
        end: seconds from the origin to when it was set to open.
        reason: what was detected, one line.
        source: which detector matched.
    """

    start: float
    end: float
    reason: str
    source: str


@dataclass(frozen=True, slots=True)
class TimelineGap:
    """Idle time between two sessions of a run, cut down to a narrow band.

    Attributes:
        start: where the band starts on the time axis.
        end: where it ends.
        idle: the real length of the idle time, seconds.
    """

    start: float
    end: float
    idle: float

    @property
    def cut(self) -> float:
        """Seconds of the axis the band saves: everything after it is this much earlier."""
        return self.idle - (self.end - self.start)


@dataclass(frozen=True, slots=True)
class TimelineData:
    """Everything the timeline draws, in seconds since the run started.

    Attributes:
        run_id: the run.
        status: how the run ended.
        origin: the epoch time that is 0 on the time axis: the run's start (or an
            earlier attempt or pause, should a report hold one).
        end: seconds from the origin to the end of the picture: the run's end, or the
            last attempt's if later.
        max_parallel: the run's global bound.
        rows: subplans that ran, in order of first start (ties in plan order).
        bars: every attempt, in the report's order (by start time).
        pauses: every rate-limit pause, in order.
        curve: ``(time, running attempts)`` steps from
            :func:`~subplan._limit._tracker.concurrency_curve` over the attempts'
            ``(started, ended)`` intervals; each level holds until the next point.
        not_started: units of work that have no attempt (skipped or not run).
        gaps: idle times between sessions, each cut down to a band of
            :data:`GAP_SHARE` of the run time: times after a gap are its
            :attr:`~TimelineGap.cut` earlier than the real seconds since the start
            (:meth:`real_seconds` undoes it).
    """

    run_id: str
    status: str
    origin: float
    end: float
    max_parallel: int
    rows: tuple[TimelineRow, ...]
    bars: tuple[TimelineBar, ...]
    pauses: tuple[TimelinePause, ...]
    curve: tuple[tuple[float, int], ...]
    not_started: int
    gaps: tuple[TimelineGap, ...] = ()

    def real_seconds(self, x: float) -> float:
        """The real seconds since the start at ``x`` on the (gap-cut) time axis."""
        shift = 0.0
        for gap in self.gaps:
            if x >= gap.end:
                shift += gap.cut
            elif x > gap.start:
                return gap.start + shift + (x - gap.start) * gap.idle / (gap.end - gap.start)
        return x + shift

    @property
    def peak(self) -> int:
        """The highest level of :attr:`curve` (0 for a run without attempts)."""
        return max((level for _, level in self.curve), default=0)


def timeline_data(report: RunReport) -> TimelineData:
    """Turn a run report into the rows, bars, pauses and curve of its timeline.

    Args:
        report: a finished run.

    Returns:
        The timeline's numbers; nothing is drawn and matplotlib is not imported.

    Raises:
        ValueError: an attempt ends before it starts.

    Notes:
        O(a log a) for ``a`` attempts. The curve is computed on the attempts' own clock
        and shifted afterwards, so its peak is exactly the report's
        ``peak_concurrency``.

    Example:
        >>> from subplan import decompose
        >>> from subplan.testing import ScriptedWork, Step, simulate
        >>> plan = decompose(["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"], max_files=3)
        >>> work = ScriptedWork({"a": [Step(2.0, fail=True), Step(1.0)]}, default=Step(1.0))
        >>> data = timeline_data(simulate(plan, work, max_parallel=1, retries=1))
        >>> [(b.subplan_id == data.rows[b.row].subplan_id, b.status) for b in data.bars]
        [(True, 'failed'), (True, 'succeeded'), (True, 'succeeded')]
        >>> data.curve, data.peak
        (((0.0, 1), (4.0, 0)), 1)
    """
    attempts = report.attempts
    origin = min(
        [report.started]
        + [a.started for a in attempts]
        + [a.dispatched for a in attempts if a.dispatched is not None]
        + [p.started for p in report.pauses]
    )
    band = GAP_SHARE * max(report.active_seconds, 1e-9)
    cuts: list[tuple[float, float, float]] = []  # (real start, real end, drawn width)
    for gap_start, gap_end in report.idle_gaps():
        cuts.append((gap_start - origin, gap_end - origin, min(band, gap_end - gap_start)))

    def at(epoch: float) -> float:
        """Seconds since the origin on the drawn axis: idle gaps cut to their bands."""
        x = epoch - origin
        shift = 0.0
        for start, end, drawn in cuts:
            if x >= end:
                shift += (end - start) - drawn
            elif x > start:
                return start - shift + (x - start) * drawn / (end - start)
        return x - shift

    plan_order = {unit_id: index for index, unit_id in enumerate(report.outcomes)}
    first_start: dict[str, float] = {}
    for attempt in attempts:
        known = first_start.get(attempt.subplan_id)
        if known is None or attempt.started < known:
            first_start[attempt.subplan_id] = attempt.started
    ordered = sorted(first_start, key=lambda i: (first_start[i], plan_order.get(i, math.inf)))
    rows = tuple(
        TimelineRow(unit_id, _row_label(report, unit_id), at(first_start[unit_id]))
        for unit_id in ordered
    )
    row_of = {row.subplan_id: index for index, row in enumerate(rows)}
    bars = tuple(
        TimelineBar(
            row=row_of[a.subplan_id],
            subplan_id=a.subplan_id,
            number=a.number,
            status=a.status,
            start=at(a.started),
            end=at(a.ended),
            dispatched=None if a.dispatched is None else at(a.dispatched),
        )
        for a in attempts
    )
    curve = tuple(
        (at(time), level)
        for time, level in concurrency_curve((a.started, a.ended) for a in attempts)
    )
    pauses = tuple(
        TimelinePause(at(p.started), at(p.ends), p.reason, p.source) for p in report.pauses
    )
    end = max([at(report.ended)] + [bar.end for bar in bars])
    gaps = tuple(
        TimelineGap(at(origin + start), at(origin + start) + drawn, end_ - start)
        for start, end_, drawn in cuts
    )
    return TimelineData(
        run_id=report.run_id,
        status=report.status,
        origin=origin,
        end=end,
        max_parallel=report.max_parallel,
        rows=rows,
        bars=bars,
        pauses=pauses,
        curve=curve,
        not_started=sum(1 for o in report.outcomes.values() if not o.attempts),
        gaps=gaps,
    )


def _row_label(report: RunReport, unit_id: str) -> str:
    outcome = report.outcomes.get(unit_id)
    if outcome is None:  # an attempt of a unit the outcomes do not list: show its id
        return unit_id
    if outcome.kind == "integration":
        return f"{outcome.label} (integration)"
    return outcome.label


def write_timeline(
    report: RunReport,
    path: str | os.PathLike[str],
    *,
    width: float | None = None,
    max_rows: int = 400,
) -> Path:
    """Draw the run as a timeline picture and write it atomically to ``path``.

    The format follows the file's extension: ``.png``, ``.svg`` or ``.pdf``.

    The top panel has one bar per attempt (a row per subplan, coloured by status), the
    bottom panel the number of attempts running, with ``max_parallel`` marked; rate-limit
    pauses are shaded across both. The picture goes to a temporary file in the same
    directory, is fsync'd and renamed over ``path``: readers see the old file or the new
    one, never half of one, and a failure leaves nothing behind.

    Args:
        report: a finished run.
        path: where to write it (``.png``, ``.svg`` or ``.pdf``); its directory must exist.
        width: the picture's width in inches (100 pixels each); 12 by default. The
            height follows the number of rows, up to a cap.
        max_rows: above this many rows, consecutive subplans share a band and rows are
            not labelled.

    Returns:
        The path written.

    Raises:
        ConfigError: matplotlib is not installed, or ``width`` or ``max_rows`` is out of
            range.
        InputError: the directory of ``path`` does not exist, ``path`` is a directory, or
            its extension names no format a timeline can be drawn in.
        OSError: the file cannot be written.

    Example:
        >>> import tempfile
        >>> from subplan import decompose
        >>> from subplan.testing import ScriptedWork, Step, simulate
        >>> report = simulate(decompose(["a/1", "b/1"]), ScriptedWork(default=Step(1.0)))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     written = write_timeline(report, f"{tmp}/run.png")
        ...     written.name, written.read_bytes()[:4]
        ('run.png', b'\\x89PNG')
    """
    if width is not None and not (math.isfinite(width) and width > 0):
        raise ConfigError(f"width must be a positive number of inches, got {width!r}")
    if max_rows < 1:
        raise ConfigError(f"max_rows must be >= 1, got {max_rows}")
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(f"no such directory: {target.parent}", path=str(target.parent))
    if target.is_dir():
        raise InputError(f"not a file: {target}", path=str(target))
    kind = target.suffix.lower().lstrip(".")
    if kind not in TIMELINE_FORMATS:
        shown = f"'.{kind}'" if kind else "no extension"
        raise InputError(
            f"cannot draw a timeline as {target.name} ({shown}): name a "
            + ", ".join(f".{k}" for k in TIMELINE_FORMATS)
            + " file",
            path=str(target),
        )
    figure = _draw(timeline_data(report), width=width or _DEFAULT_WIDTH, max_rows=max_rows)
    fd, tmp = _create_temporary(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            _save(figure, handle, kind)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:  # so that the rename survives a crash
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def _create_temporary(target: Path) -> tuple[int, Path]:
    """Create a new file next to ``target``, with the mode a plain ``open`` would give.

    Not :func:`tempfile.mkstemp`: its files are private (0600), and a picture is meant
    to be shared; ``os.open`` with 0666 lets the umask decide, as for any new file.
    """
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def _save(figure: Figure, handle: BinaryIO, kind: str) -> None:
    import matplotlib

    # SVG keeps its text as text (searchable, diffable), not as paths
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(handle, format=kind, dpi=_DPI)


@dataclass(frozen=True, slots=True)
class _Layout:
    """How rows map to the attempts panel, and the panel heights in inches."""

    rows_per_band: int
    labelled: bool
    attempts_height: float
    label_size: float
    left: float
    label_every: int  # label every n-th row (0: rows are not labelled)


def _layout(data: TimelineData, *, max_rows: int) -> _Layout:
    rows = len(data.rows)
    if rows <= max_rows:
        height = min(_MAX_LABELLED_HEIGHT, max(_MIN_ATTEMPTS_HEIGHT, 0.3 + _ROW_PITCH * rows))
        pitch_points = 72 * height / max(rows, 1)
        size = min(9.0, 0.75 * pitch_points)
        every = 1
        if size < _MIN_LABEL_POINTS:  # a large max_rows: label fewer rows, not smaller
            every = math.ceil(_MIN_LABEL_POINTS / size)
            size = _MIN_LABEL_POINTS
        longest = max((len(_short(r.label, _MAX_LABEL_CHARS)) for r in data.rows), default=0)
        left = min(4.5, 0.55 + longest * size * 0.6 / 72)
        return _Layout(1, True, height, size, left, every)
    per_band = math.ceil(rows / max_rows)
    bands = math.ceil(rows / per_band)
    height = min(_MAX_BANDED_HEIGHT, max(_MIN_ATTEMPTS_HEIGHT, 0.3 + _ROW_PITCH * bands))
    return _Layout(per_band, False, height, 8.0, 1.0, 0)


def _draw(data: TimelineData, *, width: float, max_rows: int) -> Figure:
    try:
        # `import matplotlib` first: a submodule left in sys.modules must not hide a
        # missing (or deliberately blocked) package.
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError(_NEEDS_MATPLOTLIB) from exc

    layout = _layout(data, max_rows=max_rows)
    # The object API only: no pyplot, no global backend, nothing left registered. The
    # height is settled once the legends are measured (below).
    figure = Figure(figsize=(width, 10.0), dpi=_DPI)
    FigureCanvasAgg(figure)
    attempts_ax = figure.add_axes((0.1, 0.5, 0.8, 0.4))
    curve_ax = figure.add_axes((0.1, 0.1, 0.8, 0.3), sharex=attempts_ax)
    x_end = data.end if data.end > 0 else 1.0
    attempts_ax.set_xlim(0, x_end * 1.01)

    statuses, extras = _draw_attempts(attempts_ax, data, layout, x_end)
    _draw_curve(curve_ax, data)
    extras += _draw_pauses((attempts_ax, curve_ax), data.pauses)
    extras += _draw_idle((attempts_ax, curve_ax), data)
    # Two groups of legend rows: the statuses, then the marks that are not statuses;
    # each as many rows as it needs to fit the width, measured, so that nothing below
    # (the top time axis of a tall panel) is drawn over.
    legends = [_fit_legend(figure, handles, width) for handles in (statuses, extras) if handles]
    labels_on_top = layout.attempts_height > 8
    top = _TITLE_HEIGHT + sum(h for _, h in legends) + _LEGEND_SPACING * len(legends)
    top = max(top, _TITLE_HEIGHT + 0.25) + (_TOP_AXIS_HEIGHT if labels_on_top else 0.0)
    height = top + layout.attempts_height + _GAP + _CURVE_HEIGHT + _AXIS_HEIGHT
    figure.set_size_inches(width, height)
    left = layout.left / width
    right = 1 - _RIGHT_MARGIN / width
    if right - left < 0.2:  # a narrow picture gives the labels less room
        left = min(left, 0.4)
        right = max(right, left + 0.2)

    def box(from_top: float, inches: float) -> tuple[float, float, float, float]:
        return (left, 1 - (from_top + inches) / height, right - left, inches / height)

    attempts_ax.set_position(box(top, layout.attempts_height))
    curve_ax.set_position(box(top + layout.attempts_height + _GAP, _CURVE_HEIGHT))
    figure.text(
        0.5,
        1 - 0.12 / height,
        _title(data),
        ha="center",
        va="top",
        fontsize=11,
        linespacing=1.5,
    )
    below = _TITLE_HEIGHT
    for legend, inches in legends:
        legend.set_bbox_to_anchor((0.5, 1 - below / height), transform=figure.transFigure)
        below += inches + _LEGEND_SPACING
    return figure


def _fit_legend(figure: Figure, handles: list[Artist], width: float) -> tuple[Legend, float]:
    """A legend of ``handles`` centred at the top, in as few rows as fit ``width``
    inches; returns it with its height in inches."""
    room = (width - 0.2) * _DPI  # pixels, a margin each side
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    columns = len(handles)
    while True:
        legend = figure.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 1.0),
            ncol=columns,
            frameon=False,
            fontsize=9,
            handlelength=1.5,
            columnspacing=1.5,
            borderaxespad=0,
            borderpad=0.2,
        )
        extent = legend.get_window_extent(renderer)
        if extent.width <= room:
            return legend, extent.height / _DPI
        legend.remove()
        if columns > 1:
            columns -= 1
            continue
        # One entry wider than the picture: wrap its text.
        chars = max(12, int(room / (9 * 0.62 * _DPI / 72)))
        for handle in handles:
            label = str(handle.get_label())
            handle.set_label(textwrap.fill(label, chars))
        legend = figure.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 1.0),
            ncol=1,
            frameon=False,
            fontsize=9,
            handlelength=1.5,
            borderaxespad=0,
            borderpad=0.2,
        )
        return legend, legend.get_window_extent(renderer).height / _DPI


def _title(data: TimelineData) -> str:
    statuses: dict[str, int] = {}
    for bar in data.bars:
        statuses[bar.status] = statuses.get(bar.status, 0) + 1
    attempts = len(data.bars)
    counts = ", ".join(
        f"{statuses[s]} {s.replace('_', ' ')}"
        for s in _STATUS_COLOURS
        if s != "succeeded" and s in statuses
    )
    noun = "attempt" if attempts == 1 else "attempts"
    rows = len(data.rows)
    detail = f"{attempts} {noun} on {rows} {'subplan' if rows == 1 else 'subplans'}"
    if counts:
        detail += f" ({counts})"
    if data.not_started:
        detail += f", {data.not_started} not started"
    took = _duration_text(data.end)
    if data.gaps:
        from ._progress import span_text

        idle = sum(g.idle for g in data.gaps)
        running = data.end - sum(g.end - g.start for g in data.gaps)
        took = (
            f"{_duration_text(running)} in {len(data.gaps) + 1} sessions, "
            f"idle {span_text(idle)} between them"
        )
    return (
        f"run {data.run_id}: {data.status}, {took}\n"
        f"{detail}; peak concurrency {data.peak} of max_parallel {data.max_parallel}"
    )


def _duration_text(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _short(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, keeping the end (the most specific part)."""
    return text if len(text) <= limit else "\u2026" + text[-(limit - 1) :]


def _draw_attempts(
    ax: Axes, data: TimelineData, layout: _Layout, x_end: float
) -> tuple[list[Artist], list[Artist]]:
    """Draw the bars; return the legend handles of the statuses and of the other marks."""
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    # y is in rows, first row at the top: row r spans [r - 0.5, r + 0.5].
    ax.set_ylim(max(len(data.rows), 1) - 0.5, -0.5)
    # A tall panel repeats the time axis on top, where the legend is.
    ax.tick_params(axis="x", labelbottom=False, labeltop=layout.attempts_height > 8, labelsize=8)
    ax.set_axisbelow(True)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    if not data.bars:
        ax.set_yticks([])
        ax.text(
            0.5, 0.5, "no attempts", transform=ax.transAxes, ha="center", va="center", fontsize=14
        )
        return [], []
    # A bar never thinner than about a pixel: instantaneous attempts stay visible.
    min_width = x_end / 1000
    # A band of rows_per_band rows is one bar's height; a labelled row keeps a gap.
    inset = 0.1 if layout.labelled else 0.0
    band = layout.rows_per_band
    by_status: dict[str, list[list[tuple[float, float]]]] = {s: [] for s in _STATUS_COLOURS}
    waits: list[list[tuple[float, float]]] = []
    for bar in data.bars:
        low = bar.row // band * band - 0.5 + inset
        high = low + band - 2 * inset
        right = max(bar.end, bar.start + min_width)
        by_status[bar.status].append(
            [(bar.start, low), (bar.start, high), (right, high), (right, low)]
        )
        if bar.dispatched is not None and bar.dispatched < bar.start:
            middle = (low + high) / 2
            waits.append([(bar.dispatched, middle), (bar.start, middle)])
    handles: list[Artist] = []
    extras: list[Artist] = []
    for order, (status, colour) in enumerate(_STATUS_COLOURS.items()):
        shapes = by_status[status]
        if not shapes:
            continue
        ax.add_collection(
            PolyCollection(
                shapes, facecolors=colour, edgecolors="none", linewidths=0, zorder=2 + order
            ),
            autolim=False,
        )
        handles.append(Patch(facecolor=colour, label=f"{status.replace('_', ' ')} ({len(shapes)})"))
    if waits:
        ax.add_collection(
            LineCollection(waits, colors="black", linewidths=0.8, alpha=0.7, zorder=9),
            autolim=False,
        )
        handles.append(
            Line2D(
                [], [], color="black", linewidth=0.8, alpha=0.7, label="dispatched, not yet started"
            )
        )
    if layout.labelled:
        shown = range(0, len(data.rows), layout.label_every)
        labels = [_short(data.rows[i].label, _MAX_LABEL_CHARS) for i in shown]
        ax.set_yticks(shown, labels=labels, fontsize=layout.label_size)
        ax.tick_params(axis="y", length=0)
        # On a short panel, on two lines: it must not reach up into the legend.
        short = layout.attempts_height < 2
        ax.set_ylabel(f"subplan{chr(10) if short else ' '}(by first start)", fontsize=9)
    else:
        rows = len(data.rows)
        numbers = [1] + [
            int(v)
            for v in MaxNLocator(nbins=10, integer=True).tick_values(1, rows)
            if 1 < v <= rows
        ]
        ax.set_yticks([n - 1 for n in numbers], labels=[str(n) for n in numbers], fontsize=8)
        ax.set_ylabel(
            f"subplan, by first start\n({band} per band)",
            fontsize=9,
        )
    return handles, extras


def _draw_curve(ax: Axes, data: TimelineData) -> None:
    from matplotlib.ticker import MaxNLocator

    xs = [0.0] + [t for t, _ in data.curve]
    ys = [0] + [level for _, level in data.curve]
    ax.set_axisbelow(True)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.fill_between(xs, ys, step="post", color=_CURVE_COLOUR, alpha=0.25, linewidth=0)
    ax.step(xs, ys, where="post", color=_CURVE_COLOUR, linewidth=1.2)
    ax.axhline(data.max_parallel, color="black", linestyle="--", linewidth=1)
    ax.text(
        0.995,
        data.max_parallel,
        f"max_parallel {data.max_parallel}",
        transform=ax.get_yaxis_transform(),
        ha="right",
        va="bottom",
        fontsize=8,
    )
    ax.set_ylim(0, max(data.max_parallel, data.peak) * 1.18 + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("running", fontsize=9)
    ax.set_xlabel("seconds since the run started", fontsize=9)
    ax.set_title(
        f"attempts running: peak {data.peak} of max_parallel {data.max_parallel}",
        fontsize=9,
        loc="left",
    )


def _draw_pauses(axes: Sequence[Axes], pauses: Sequence[TimelinePause]) -> list[Artist]:
    if not pauses:
        return []
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    spans = [[(p.start, 0.0), (p.start, 1.0), (p.end, 1.0), (p.end, 0.0)] for p in pauses]
    for ax in axes:
        # x in data, y in axes coordinates: the span fills the panel's height.
        ax.add_collection(
            PolyCollection(
                spans,
                facecolors=_PAUSE_COLOUR,
                edgecolors="none",
                alpha=0.45,
                zorder=1,
                transform=ax.get_xaxis_transform(),
            ),
            autolim=False,
        )
    reasons: list[str] = []
    for pause in pauses:
        if pause.reason not in reasons:
            reasons.append(pause.reason)
    shown = "; ".join(_short_reason(r) for r in reasons[:2])
    if len(reasons) > 2:
        shown += f"; {len(reasons) - 2} more"
    count = "" if len(pauses) == 1 else f" ({len(pauses)})"
    return [Patch(facecolor=_PAUSE_COLOUR, alpha=0.45, label=f"rate-limit pause{count}: {shown}")]


def _draw_idle(axes: Sequence[Axes], data: TimelineData) -> list[Artist]:
    """Hatched bands where the run sat idle between sessions, each labelled with its length."""
    if not data.gaps:
        return []
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.ticker import FuncFormatter

    from ._progress import span_text

    for ax in axes:
        for gap in data.gaps:
            ax.add_patch(
                Rectangle(
                    (gap.start, 0.0),
                    gap.end - gap.start,
                    1.0,
                    transform=ax.get_xaxis_transform(),
                    facecolor="white",
                    edgecolor=_IDLE_COLOUR,
                    hatch="////",
                    linewidth=0.0,
                    zorder=12,
                )
            )
    for gap in data.gaps:
        axes[-1].text(
            (gap.start + gap.end) / 2,
            0.97,
            f"idle {span_text(gap.idle)}",
            transform=axes[-1].get_xaxis_transform(),
            rotation=90,
            ha="center",
            va="top",
            fontsize=8,
            zorder=13,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )
    # Ticks say the real seconds since the start, the idle time included.
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda x, _: _tick_text(data.real_seconds(x))))
    axes[-1].set_xlabel("seconds since the run started (idle time between sessions cut short)")
    count = "" if len(data.gaps) == 1 else f" ({len(data.gaps)})"
    return [
        Patch(
            facecolor="white",
            edgecolor=_IDLE_COLOUR,
            hatch="////",
            label=f"idle between sessions{count}",
        )
    ]


def _tick_text(seconds: float) -> str:
    return f"{seconds:.0f}" if abs(seconds) >= 100 else f"{seconds:g}"


def _short_reason(reason: str) -> str:
    line = " ".join(reason.split())
    return line if len(line) <= _MAX_REASON_CHARS else line[: _MAX_REASON_CHARS - 1] + "\u2026"
