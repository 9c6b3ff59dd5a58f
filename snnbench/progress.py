"""Progress of long work: events the library emits, and the displays the command line shows.

The library side knows nothing of terminals. Work that takes a while opens a :class:`Task`
with :func:`begin` when it *starts* (its label, total and unit, and what a resumed run already
has), advances it as it goes and ends it; a slow set-up step (unpacking, decoding, loading)
says what it does with :func:`status`. Listeners installed with :func:`listen` receive the
events; with none installed an event costs one function call.

The display side: :class:`LiveDisplay` (a terminal: one live bar per running task with its
rate and ETA, the last few finished tasks as one line each plus a count of the rest, and the
current status line; its height is bounded by the terminal's) and :class:`PlainLog` (a log
file or CI: one line per finished task and per slow set-up step, a line a minute for a long
task).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

KEEP_FINISHED = 8  # finished tasks the live display keeps on screen
PLAIN_EVERY_S = 60.0  # a plain log's line for a running task, at most this often
SLOW_STATUS_S = 2.0  # a plain log names a set-up step that lasts this long


@dataclass
class Task:
    """A unit of work with a known size: ``done`` of ``total`` ``unit`` (images, samples,
    checks...); ``resumed`` of them were done before it started (they count for the bar, not
    for the rate)."""

    label: str
    total: int
    unit: str
    done: int = 0
    resumed: int = 0
    detail: str = ""
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    ok: bool = True
    stepping: bool = False
    id: int = field(default_factory=itertools.count().__next__)

    def advance(self, amount: int = 1) -> None:
        self.done = min(self.total, self.done + amount)
        _emit("advanced", self)

    def reach(self, done: int) -> None:
        """``done`` units are done now (a retried batch may have counted some twice)."""
        self.done = min(self.total, done)
        _emit("advanced", self)

    def describe(self, detail: str) -> None:
        """What the task does now (shown after its label), e.g. ``epoch 3/30``."""
        self.detail = detail
        _emit("advanced", self)

    def step(self, detail: str) -> None:
        """The next step (``detail``; empty after the last) starts: the one before is done."""
        if self.stepping:
            self.done = min(self.total, self.done + 1)
        self.stepping = True
        self.describe(detail)

    def end(self, ok: bool = True) -> None:
        if self.ended is None:
            self.ended, self.ok = time.perf_counter(), ok
            _emit("finished", self)

    @property
    def seconds(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def rate(self) -> float | None:
        """Units per second since the start, None before the first unit."""
        worked = self.done - self.resumed
        return worked / self.seconds if worked > 0 and self.seconds > 0 else None

    @property
    def eta(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate else None

    def summary(self) -> str:
        """One line for the list of finished tasks."""
        mark = "✓" if self.ok else "✗ stopped:"
        # below a second the rate says little (a cascade member with nothing left to attack)
        rate = (
            f", {format_rate(self.rate)} {self.unit}/s" if self.rate and self.seconds >= 1 else ""
        )
        resumed = f" ({self.resumed} from an earlier run)" if self.resumed else ""
        return (
            f"{mark} {self.label}  {self.done}/{self.total} {self.unit}{resumed} in "
            f"{format_seconds(self.seconds)}{rate}"
        )


class Listener(Protocol):
    def started(self, task: Task) -> None: ...
    def advanced(self, task: Task) -> None: ...
    def finished(self, task: Task) -> None: ...
    def status(self, text: str) -> None: ...


_listeners: list[Listener] = []


def _emit(event: str, payload: Any) -> None:
    for listener in list(_listeners):
        getattr(listener, event)(payload)


def begin(label: str, total: int, unit: str, done: int = 0) -> Task:
    """Announce work that starts now; ``done`` of ``total`` are already there (a resume)."""
    task = Task(label, max(0, int(total)), unit, int(done), int(done))
    _emit("started", task)
    return task


@contextlib.contextmanager
def task(label: str, total: int, unit: str, done: int = 0) -> Iterator[Task]:
    """:func:`begin` ... ``end()``, ended as stopped when the block raises."""
    work = begin(label, total, unit, done)
    try:
        yield work
    except BaseException:
        work.end(ok=False)
        raise
    work.end()


class Series:
    """Consecutive tasks where each starts when the previous one ends (an attack run per key)."""

    def __init__(self) -> None:
        self.current: Task | None = None

    def next(self, label: str, total: int, unit: str, done: int = 0) -> Task:
        self.close()
        self.current = begin(label, total, unit, done)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.end()
            self.current = None


def status(text: str) -> None:
    """A slow set-up step starts now (``unpacking ...``, ``loading ...``)."""
    _emit("status", text)


@contextlib.contextmanager
def listen(listener: Listener) -> Iterator[Listener]:
    """Send every event of the block to ``listener``."""
    _listeners.append(listener)
    try:
        yield listener
    finally:
        _listeners.remove(listener)


def format_rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"


def format_clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class PlainLog:
    """Lines for a log: each finished task, a long task's count now and then, and each new
    status that lasts ``slow_s`` (a quick step, or one that ends in an error, prints nothing)."""

    def __init__(self, console: Any, slow_s: float = SLOW_STATUS_S) -> None:
        self.console = console
        self.slow_s = slow_s
        self.seen: set[str] = set()
        self.last_line: dict[int, float] = {}
        self.pending: threading.Timer | None = None
        self.lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self.lock:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Forget the status in progress (the step it names has ended)."""
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None

    def started(self, task: Task) -> None:
        self.close()
        self.last_line[task.id] = time.perf_counter()

    def advanced(self, task: Task) -> None:
        now = time.perf_counter()
        if now - self.last_line.get(task.id, now) >= PLAIN_EVERY_S:
            self.last_line[task.id] = now
            eta = f", about {format_seconds(task.eta)} left" if task.eta else ""
            self._print(f"… {task.label} {task.detail}: {task.done}/{task.total} {task.unit}{eta}")

    def finished(self, task: Task) -> None:
        self.close()
        self.last_line.pop(task.id, None)
        if task.ok:  # a stopped task: the error line says why
            self._print(task.summary())

    def status(self, text: str) -> None:
        self.close()
        if text not in self.seen:  # `loading digits test` once, not once per model
            self.seen.add(text)
            self.pending = threading.Timer(self.slow_s, self._print, [f"… {text}"])
            self.pending.daemon = True
            self.pending.start()


class LiveDisplay:
    """A bounded live screen: finished tasks (the last ``keep``, and how many before them),
    one bar per running task, and the current status line. Use it as a context manager."""

    def __init__(self, console: Any, keep: int = KEEP_FINISHED) -> None:
        from rich.live import Live
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
        from rich.table import Column

        self.console = console
        self.lock = threading.RLock()  # events come from this thread, screens from rich's
        self.keep = keep
        self.finished_lines: deque[str] = deque(maxlen=keep)
        self.finished_count = 0
        self.tasks: dict[int, tuple[Task, Any]] = {}
        self.status_text = ""
        self.status_since = time.perf_counter()
        fixed = lambda text: TextColumn(text, table_column=Column(no_wrap=True))  # noqa: E731
        # a row stays one line: the label has up to a third of the width (ellipsised), the
        # bar what the numbers leave
        label = TextColumn(
            "{task.description}",
            table_column=Column(
                no_wrap=True, overflow="ellipsis", max_width=max(12, console.width // 3)
            ),
        )
        self.bars = Progress(
            SpinnerColumn(),
            label,
            BarColumn(bar_width=None),
            fixed("{task.fields[count]}"),
            fixed("{task.fields[rate]}"),
            fixed("{task.fields[eta]}"),
            console=console,
            expand=True,
        )
        # prints to stdout appear above the screen, unless stdout goes to a file (keep them there)
        self.live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=4,
            transient=False,
            redirect_stdout=_is_terminal(sys.stdout),
            redirect_stderr=True,
        )

    def __enter__(self) -> "LiveDisplay":
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for task, _ in list(self.tasks.values()):  # an error or Ctrl-C stopped them
            task.ended, task.ok = time.perf_counter(), False
            self.finished(task)
        with self.lock:
            self.status_text = ""
        self.live.stop()

    # events (the screen is redrawn at once when a task starts or ends, else 4 times a second)
    def started(self, task: Task) -> None:
        with self.lock:
            self.status_text = ""
            self.tasks[task.id] = (task, self.bars.add_task(task.label, total=max(task.total, 1)))
            self._update(task)
        self.live.refresh()  # the bar shows from the start, before any unit is done

    def advanced(self, task: Task) -> None:
        with self.lock:
            if task.id in self.tasks:
                self._update(task)

    def finished(self, task: Task) -> None:
        with self.lock:
            entry = self.tasks.pop(task.id, None)
            if entry is not None:
                self.bars.remove_task(entry[1])
            self.finished_lines.append(task.summary())
            self.finished_count += 1
        self.live.refresh()

    def status(self, text: str) -> None:
        with self.lock:
            self.status_text, self.status_since = text, time.perf_counter()
        self.live.refresh()

    def _update(self, task: Task) -> None:
        rate = f"{format_rate(task.rate)}/s" if task.rate else ""
        eta = (
            f"eta {format_clock(task.eta)}"
            if task.eta is not None
            else f"{format_clock(task.seconds)} so far"
        )
        count = f"{task.detail}  {task.done}/{task.total}".strip()  # the detail is never cut
        self.bars.update(
            self.tasks[task.id][1],
            description=task.label,
            completed=task.done,
            count=f"{count} {task.unit}",
            rate=rate,
            eta=eta,
        )

    # screen
    def render(self) -> Any:
        """What the screen shows now, never taller than the terminal."""
        with self.lock:
            return self._render()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        def line(text, style):
            return Text(text, style=style, no_wrap=True, overflow="ellipsis")

        for task, _ in self.tasks.values():  # rate and ETA move with the clock
            self._update(task)
        # a narrow terminal folds a bar's row: measure the bars, one line for everything else
        bars = len(self.console.render_lines(self.bars, pad=False)) if self.tasks else 0
        room = max(1, self.console.size.height - bars - 3)
        shown = list(self.finished_lines)[-min(self.keep, room) :]
        lines: list[Any] = []
        earlier = self.finished_count - len(shown)
        if earlier:
            lines.append(line(f"… {earlier} earlier task(s) finished", "dim"))
        lines += [line(text, "green" if text.startswith("✓") else "yellow") for text in shown]
        if self.tasks:
            lines.append(self.bars)
        if self.status_text:
            since = format_seconds(time.perf_counter() - self.status_since)
            lines.append(line(f"… {self.status_text} ({since})", "cyan"))
        return Group(*lines)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def watch(console: Any, quiet: bool = False) -> Iterator[Any]:
    """Show the events of the block on ``console``: live on a terminal, plain lines elsewhere,
    nothing when ``quiet``."""
    if quiet:
        yield None
        return
    display: Any = LiveDisplay(console) if console.is_terminal else PlainLog(console)
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            display if isinstance(display, LiveDisplay) else contextlib.closing(display)
        )
        stack.enter_context(listen(display))
        yield display
