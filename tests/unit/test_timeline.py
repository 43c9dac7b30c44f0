"""The timeline picture: its numbers against the report, and the PNG it writes."""

from __future__ import annotations

import dataclasses
import stat
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from execute_helpers import flat_plan
from subplan import (
    AttemptContext,
    ConfigError,
    InputError,
    Plan,
    RunReport,
    Subplan,
    decompose,
    resume,
    run,
)
from subplan._dispatch._results import Pause
from subplan._ratelimit._detector import RateLimited
from subplan._report._timeline import TimelineData, _draw, _layout, timeline_data, write_timeline
from subplan.testing import FakeClock, ScriptedWork, Step, simulate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Two colours of the timeline's palette (Okabe-Ito), as 0..1 RGB.
GREEN_SUCCEEDED = (0x00 / 255, 0x9E / 255, 0x73 / 255)
VERMILLION_FAILED = (0xD5 / 255, 0x5E / 255, 0x00 / 255)


def mixed_plan() -> Plan:
    return decompose([f"src/pkg{d}/mod{i}.py" for d in "abcdefgh" for i in range(6)], max_files=3)


def mixed_report() -> RunReport:
    """A run with every kind of ending: failures, a crash, a timeout, a rate limit."""
    plan = mixed_plan()
    leaves = plan.leaves
    limited = RateLimited("429 slow down", retry_after=40)
    work = ScriptedWork(
        {
            leaves[1].id: [Step(20.0, fail=True), Step(30.0)],
            leaves[3].id: [Step(10.0, fail=limited), Step(25.0)],
            leaves[5].id: [Step(12.0, crash=True), Step(15.0)],
            leaves[8].id: [Step(200.0)],  # past the timeout on every attempt
            leaves[12].id: [Step(0.0), Step(5.0)],  # instantaneous
        },
        default=Step(18.0),
    )
    return simulate(plan, work, max_parallel=4, retries=2, timeout=60.0)


@pytest.fixture(scope="module")
def report() -> RunReport:
    return mixed_report()


# -- independent recomputations ----------------------------------------------------------


def expected_rows(report: RunReport) -> list[str]:
    """Units that ran, by first start; ties in plan order (the outcomes' order)."""
    first = {
        unit_id: min(a.started for a in outcome.attempts)
        for unit_id, outcome in report.outcomes.items()
        if outcome.attempts
    }
    return sorted(first, key=first.__getitem__)  # stable: ties keep plan order


def level_at(curve: tuple[tuple[float, int], ...], moment: float) -> int:
    """The curve's level just after ``moment`` (after any spike at it)."""
    level = 0
    for time, value in curve:
        if time > moment:
            break
        level = value
    return level


def curve_mismatches(data: TimelineData) -> list[str]:
    """Where the curve differs from a brute-force count of the bars running at a moment."""
    out = []
    for moment in sorted({b.start for b in data.bars} | {b.end for b in data.bars}):
        running = sum(1 for b in data.bars if b.start <= moment < b.end)
        if running != level_at(data.curve, moment):
            out.append(f"at {moment}: curve {level_at(data.curve, moment)}, running {running}")
        instants = sum(1 for b in data.bars if b.start == b.end == moment)
        if instants and (moment, running + instants) not in data.curve:
            out.append(f"at {moment}: no spike to {running + instants}")
    return out


def distinct_colours(image: np.ndarray) -> int:
    """How many different RGBA values the image holds."""
    codes = np.round(image * 255).astype(np.uint32)
    packed = codes[..., 0] << 24 | codes[..., 1] << 16 | codes[..., 2] << 8 | codes[..., 3]
    return int(np.unique(packed).size)


def colour_fraction(image: np.ndarray, rgb: tuple[float, float, float]) -> float:
    """The share of pixels within one step of 8 bits of ``rgb``."""
    distance = np.abs(image[..., :3] - np.asarray(rgb)).max(axis=-1)
    return float((distance <= 1.5 / 255).mean())


# -- timeline_data -----------------------------------------------------------------------


def test_the_mixed_run_has_every_kind_of_ending(report: RunReport) -> None:
    statuses = Counter(a.status for a in report.attempts)
    assert {"succeeded", "failed", "crashed", "timed_out", "rate_limited"} <= set(statuses)
    assert 1 == len(report.pauses)


def test_every_attempt_has_exactly_one_bar_with_its_times_and_status(report: RunReport) -> None:
    data = timeline_data(report)
    assert report.started == data.origin
    expected = Counter(
        (a.subplan_id, a.number, a.status, a.started - report.started, a.ended - report.started)
        for a in report.attempts
    )
    actual = Counter((b.subplan_id, b.number, b.status, b.start, b.end) for b in data.bars)
    assert expected == actual
    assert len(report.attempts) == len(data.bars)


def test_each_bar_sits_in_the_row_of_its_subplan(report: RunReport) -> None:
    data = timeline_data(report)
    assert [] == [b for b in data.bars if data.rows[b.row].subplan_id != b.subplan_id]


def test_rows_are_the_subplans_that_ran_in_order_of_first_start(report: RunReport) -> None:
    data = timeline_data(report)
    assert expected_rows(report) == [r.subplan_id for r in data.rows]
    assert [report.outcomes[r.subplan_id].label for r in data.rows] == [r.label for r in data.rows]
    assert sorted(r.first_start for r in data.rows) == [r.first_start for r in data.rows]


def test_ties_at_the_start_are_broken_by_plan_order_not_by_id() -> None:
    # Six leaves start together at 0: the attempts come sorted by id (a hash), the rows
    # must come in plan order.
    plan = flat_plan(6)
    report = simulate(plan, ScriptedWork(default=Step(1.0)), max_parallel=6)
    data = timeline_data(report)
    assert [leaf.id for leaf in plan.leaves] == [r.subplan_id for r in data.rows]
    assert [leaf.id for leaf in plan.leaves] != sorted(leaf.id for leaf in plan.leaves)


def test_the_curve_peaks_at_the_reported_peak_concurrency(report: RunReport) -> None:
    data = timeline_data(report)
    assert report.peak_concurrency == data.peak
    assert report.peak_concurrency == max(level for _, level in data.curve)
    assert report.max_parallel == data.max_parallel


def test_the_curve_counts_the_attempts_running_at_every_step(report: RunReport) -> None:
    data = timeline_data(report)
    assert [] == curve_mismatches(data)
    assert 0 == data.curve[-1][1]


def test_the_curve_check_fails_against_a_curve_that_misses_an_attempt(
    report: RunReport,
) -> None:
    good = timeline_data(report)
    missing = sorted(report.attempts, key=lambda a: a.started)[5]
    short = dataclasses.replace(
        report,
        outcomes={
            unit_id: dataclasses.replace(
                outcome, attempts=tuple(a for a in outcome.attempts if a is not missing)
            )
            for unit_id, outcome in report.outcomes.items()
        },
    )
    broken = dataclasses.replace(good, curve=timeline_data(short).curve)
    assert [] != curve_mismatches(broken)


def test_the_row_check_fails_against_rows_in_attempt_order() -> None:
    plan = flat_plan(6)
    report = simulate(plan, ScriptedWork(default=Step(1.0)), max_parallel=6)
    by_attempt = list(dict.fromkeys(a.subplan_id for a in report.attempts))
    assert expected_rows(report) != by_attempt


def test_pauses_become_spans_with_their_reason(report: RunReport) -> None:
    data = timeline_data(report)
    expected = [
        (p.started - report.started, p.ends - report.started, p.reason, p.source)
        for p in report.pauses
    ]
    assert expected == [(p.start, p.end, p.reason, p.source) for p in data.pauses]
    assert "429 slow down" in data.pauses[0].reason
    # Nothing starts while the gate is closed.
    pause = data.pauses[0]
    assert [] == [b for b in data.bars if pause.start < b.start < pause.end]


def test_dispatch_times_come_from_a_real_run(tmp_path: Path) -> None:
    plan = flat_plan(4)
    report = run(plan, lambda subplan, ctx: None, max_parallel=2, runs_dir=tmp_path)
    data = timeline_data(report)
    attempts = {(a.subplan_id, a.number): a for a in report.attempts}
    for bar in data.bars:
        dispatched = attempts[bar.subplan_id, bar.number].dispatched
        assert dispatched is not None
        assert dispatched - data.origin == bar.dispatched
        assert 0 <= bar.dispatched <= bar.start


def test_a_run_without_attempts_has_no_rows_and_no_curve() -> None:
    plan = flat_plan(3)
    report = simulate(plan, ScriptedWork(default=Step(1.0)), cancel_at=0.0)
    data = timeline_data(report)
    assert ((), (), ()) == (data.rows, data.bars, data.curve)
    assert 0 == data.peak
    assert len(report.outcomes) == data.not_started


def test_rows_beyond_max_rows_share_bands_without_labels(report: RunReport) -> None:
    data = timeline_data(report)
    rows = len(data.rows)
    assert _layout(data, max_rows=rows).labelled
    banded = _layout(data, max_rows=rows // 4)
    assert not banded.labelled
    assert rows // 4 >= -(-rows // banded.rows_per_band)  # at most max_rows bands


def test_rows_too_many_for_legible_labels_are_labelled_every_few_rows() -> None:
    plan = flat_plan(1200)
    data = timeline_data(simulate(plan, ScriptedWork(default=Step(1.0)), max_parallel=50))
    assert 3 == _layout(data, max_rows=400).rows_per_band
    layout = _layout(data, max_rows=2000)
    assert (True, 1) == (layout.labelled, layout.rows_per_band)
    assert layout.label_every > 1
    assert layout.label_size >= 5.5


# -- write_timeline ----------------------------------------------------------------------


def test_writes_a_png_that_shows_the_bars(report: RunReport, tmp_path: Path) -> None:
    path = write_timeline(report, tmp_path / "run.png", width=10)
    assert tmp_path / "run.png" == path
    assert PNG_SIGNATURE == path.read_bytes()[:8]
    image = imread(path)
    height, width, _ = image.shape
    assert 1000 == width
    assert height > 0
    assert distinct_colours(image) > 10
    assert colour_fraction(image, GREEN_SUCCEEDED) > 0.01
    assert colour_fraction(image, VERMILLION_FAILED) > 0.001


def test_accepts_a_string_path(report: RunReport, tmp_path: Path) -> None:
    assert tmp_path / "run.png" == write_timeline(report, str(tmp_path / "run.png"))


def test_overwrites_an_existing_file_and_leaves_no_temporary_file(
    report: RunReport, tmp_path: Path
) -> None:
    target = tmp_path / "run.png"
    target.write_bytes(b"old")
    write_timeline(report, target)
    assert PNG_SIGNATURE == target.read_bytes()[:8]
    assert ["run.png"] == [p.name for p in tmp_path.iterdir()]


def test_the_picture_gets_the_mode_of_any_new_file_not_a_private_one(
    report: RunReport, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    reference.write_bytes(b"")  # mode 0666 less the umask
    path = write_timeline(report, tmp_path / "run.png")
    assert stat.S_IMODE(reference.stat().st_mode) == stat.S_IMODE(path.stat().st_mode)


def test_a_failed_render_keeps_the_old_file_and_leaves_no_temporary_file(
    report: RunReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "run.png"
    target.write_bytes(b"old")

    def half_written(figure: object, handle: object, kind: str) -> None:
        handle.write(PNG_SIGNATURE)  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr("subplan._report._timeline._save", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_timeline(report, target)
    assert b"old" == target.read_bytes()
    assert ["run.png"] == [p.name for p in tmp_path.iterdir()]


def test_a_missing_directory_is_one_line_error_and_nothing_is_created(
    report: RunReport, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(InputError) as caught:
        write_timeline(report, missing / "run.png")
    assert f"no such directory: {missing}" == str(caught.value)
    assert str(missing) == caught.value.path
    assert [] == list(tmp_path.iterdir())


def test_a_directory_as_the_target_is_an_error(report: RunReport, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a file"):
        write_timeline(report, tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"width": 0.0}, "width must be a positive number of inches, got 0.0"),
        ({"width": float("nan")}, "width must be a positive number of inches, got nan"),
        ({"max_rows": 0}, "max_rows must be >= 1, got 0"),
    ],
)
def test_options_out_of_range_are_config_errors(
    report: RunReport, tmp_path: Path, options: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        write_timeline(report, tmp_path / "run.png", **options)  # type: ignore[arg-type]
    assert message == str(caught.value)
    assert [] == list(tmp_path.iterdir())


def test_without_matplotlib_it_says_how_to_install_it(
    report: RunReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import matplotlib` raise ImportError, even though its
    # submodules are already imported by this test module.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError) as caught:
        write_timeline(report, tmp_path / "run.png")
    assert "the timeline needs matplotlib: pip install 'subplan[plot]'" == str(caught.value)
    assert isinstance(caught.value.__cause__, ImportError)
    assert [] == list(tmp_path.iterdir())


def test_a_run_without_attempts_still_gives_a_picture(tmp_path: Path) -> None:
    report = simulate(flat_plan(3), ScriptedWork(default=Step(1.0)), cancel_at=0.0)
    path = write_timeline(report, tmp_path / "empty.png")
    image = imread(path)
    assert image.shape[0] > 0
    assert distinct_colours(image) > 2  # text and axes
    assert 0.0 == colour_fraction(image, GREEN_SUCCEEDED)


def test_importing_subplan_does_not_import_matplotlib_and_drawing_leaves_pyplot_alone(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        """
        import sys
        import subplan, subplan._report._timeline, subplan.cli
        print("matplotlib" in sys.modules)
        from subplan.testing import ScriptedWork, Step, simulate
        report = simulate(subplan.decompose(["a/1", "b/1"]), ScriptedWork(default=Step(1.0)))
        subplan._report._timeline.write_timeline(report, sys.argv[1])
        print("matplotlib" in sys.modules, "matplotlib.pyplot" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "run.png")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert ["False", "True False"] == result.stdout.split("\n")[:2]


@pytest.mark.slow
def test_ten_thousand_attempts_render_in_bands(tmp_path: Path) -> None:
    plan = flat_plan(5000)
    # Every leaf fails once and succeeds on its retry: 10,000 attempts.
    work = ScriptedWork(
        {leaf.id: [Step(1.0 + n % 5, fail=True), Step(2.0)] for n, leaf in enumerate(plan.leaves)}
    )
    report = simulate(plan, work, max_parallel=64, retries=1)
    assert 10_000 == len(report.attempts)
    data = timeline_data(report)
    assert not _layout(data, max_rows=400).labelled
    path = write_timeline(report, tmp_path / "big.png")
    image = imread(path)
    height, width, _ = image.shape
    assert (1200, True) == (width, 0 < height <= 2000)
    assert colour_fraction(image, VERMILLION_FAILED) > 0.001


@pytest.mark.parametrize(("name", "head"), [("run.svg", b"<?xml"), ("run.pdf", b"%PDF")])
def test_the_format_follows_the_extension(
    report: RunReport, tmp_path: Path, name: str, head: bytes
) -> None:
    written = write_timeline(report, tmp_path / name)
    assert head == written.read_bytes()[: len(head)]
    if name.endswith(".svg"):  # text stays text: the labels can be found in the file
        assert report.outcomes[next(iter(report.outcomes))].label in written.read_text()


@pytest.mark.parametrize("name", ["out.txt", "out", "out.PNG.gz"])
def test_an_extension_that_names_no_picture_format_is_refused(
    report: RunReport, tmp_path: Path, name: str
) -> None:
    with pytest.raises(InputError, match=r"cannot draw a timeline as .*\.png, \.svg, \.pdf"):
        write_timeline(report, tmp_path / name)
    assert [] == list(tmp_path.iterdir())


# -- legend placement and idle time between sessions ----------------------------------


def legend_collisions(figure: Any) -> list[str]:
    """What any legend of ``figure`` covers: axis tick labels, axis labels, titles, or the
    picture's edge."""
    renderer = figure.canvas.get_renderer()
    texts: list[tuple[str, Any]] = []
    for ax in figure.axes:
        for tick in ax.get_xticklabels(which="both") + ax.get_yticklabels():
            if tick.get_visible() and tick.get_text():
                texts.append((f"tick {tick.get_text()!r}", tick.get_window_extent(renderer)))
        for label in (ax.xaxis.label, ax.yaxis.label, ax.title):
            if label.get_text():
                texts.append((f"label {label.get_text()!r}", label.get_window_extent(renderer)))
    for text in figure.texts:
        texts.append(("title", text.get_window_extent(renderer)))
    found: list[str] = []
    for legend in figure.legends:
        box = legend.get_window_extent(renderer)
        if box.x0 < figure.bbox.x0 - 1 or box.x1 > figure.bbox.x1 + 1:
            found.append(f"legend leaves the picture: {box}")
        found += [what for what, extent in texts if box.overlaps(extent)]
    return found


def busy_report(leaves: int) -> RunReport:
    plan = decompose([f"d{i}/a.py" for i in range(leaves)], min_files=1, max_files=1)
    first, second, third = (leaf.id for leaf in plan.leaves[:3])
    limited = RateLimited("429 " + "a long reason from the provider " * 4, retry_after=30)
    work = ScriptedWork(
        {
            first: [Step(1.0, fail=limited), Step(1.0)],
            second: [Step(2.0, fail=True)],
            third: [Step(2.0, crash=True), Step(1.0)],
        },
        default=Step(3.0),
    )
    return simulate(plan, work, max_parallel=3, retries=1, timeout=60.0)


@pytest.mark.parametrize("width", [5.0, 12.0])
@pytest.mark.parametrize("leaves", [5, 60, 900])
def test_the_legend_covers_no_axis_label_and_fits_the_picture(leaves: int, width: float) -> None:
    # 60 rows make a panel tall enough to repeat the time axis on top, under the legend;
    # 900 share bands; a width of 5 inches cannot hold the legend on one line.
    figure = _draw(timeline_data(busy_report(leaves)), width=width, max_rows=400)
    figure.canvas.draw()
    assert [] == legend_collisions(figure)


IDLE = 3 * 3600 + 12 * 60


def run_then_resume(tmp_path: Path) -> RunReport:
    clock = FakeClock()
    plan = flat_plan(3)
    flaky = plan.leaves[0].id

    def work(subplan: Subplan, ctx: AttemptContext) -> bool:
        clock.advance(5.0)
        return subplan.id != flaky or ctx.attempt > 1

    store = str(tmp_path / "state.db")
    run(plan, work, store=store, runs_dir=tmp_path, run_id="r", clock=clock)
    clock.advance(IDLE)
    return resume("r", work, store=store, runs_dir=tmp_path, clock=clock)


def test_idle_time_between_sessions_is_cut_to_a_labelled_band(tmp_path: Path) -> None:
    report = run_then_resume(tmp_path)
    data = timeline_data(report)
    (gap,) = data.gaps
    assert IDLE == gap.idle
    assert pytest.approx(0.04 * report.active_seconds) == gap.end - gap.start
    last = max(data.bars, key=lambda b: b.start)  # the resume's attempt
    real = last.start + gap.cut
    assert pytest.approx(report.attempts[-1].started - data.origin) == real
    assert pytest.approx(real) == data.real_seconds(last.start)
    assert last.start < data.end < 2 * report.active_seconds  # the idle hours are cut out
    figure = _draw(data, width=12.0, max_rows=400)
    figure.canvas.draw()
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert "idle 3h12m" in texts
    legend = [t.get_text() for lg in figure.legends for t in lg.get_texts()]
    assert "idle between sessions" in legend
    assert [] == legend_collisions(figure)
    written = write_timeline(report, tmp_path / "resumed.png")
    assert PNG_SIGNATURE == written.read_bytes()[:8]


def test_a_run_of_one_session_has_no_gap(report: RunReport) -> None:
    data = timeline_data(report)
    assert () == data.gaps
    assert 12.5 == data.real_seconds(12.5)


def test_the_title_of_a_resumed_run_gives_run_time_and_idle_time(tmp_path: Path) -> None:
    data = timeline_data(run_then_resume(tmp_path))
    figure = _draw(data, width=12.0, max_rows=400)
    (title,) = (t.get_text() for t in figure.texts)
    assert "20.0 s in 2 sessions, idle 3h12m between them" in title


def test_a_pause_that_runs_into_an_idle_gap_ends_inside_its_band(tmp_path: Path) -> None:
    # The run stopped while paused: the pause's planned end lies in the idle time.
    report = run_then_resume(tmp_path)
    ((gap_start, _),) = report.idle_gaps()
    planned = gap_start + 1000.0
    paused = dataclasses.replace(report, pauses=(Pause(gap_start - 2.0, planned, "429", "text"),))
    data = timeline_data(paused)
    (gap,) = data.gaps
    (pause,) = data.pauses
    assert gap.start < pause.end < gap.end
    assert pytest.approx(planned - data.origin) == data.real_seconds(pause.end)
