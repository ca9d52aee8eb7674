"""Live statistics of one source: samples placed on a grid, steps detected, and the
streaming estimators of ``timemon.analysis.streaming`` fed in batches.

Threads: ``add`` runs on the event loop for every accepted sample and only does
O(1) Python work (grid placement, step check) before queueing; ``compute`` runs
on the agent's statistics thread, drains the queue into the estimators (numpy)
and publishes an immutable ``LiveResult`` that the exporter reads.

The sampling grid.  Polls are spaced at least one interval apart and arrive a
little late, so absolute slots (t − t0) / tau0 would drift by one every few
thousand polls.  Each sample is placed relative to the previous one instead:
slot += max(1, round(Δt / tau0)).  A lost reply (or a timeout back-off) leaves
Δt ≈ k·tau0, so the sample lands k slots on and the k − 1 slots between are
gaps (NaN) — later samples are never shifted by a lost one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from timemon.analysis.streaming import DEFAULT_WINDOW, StabilityPoint, StreamingStability
from timemon.source import Sample

# Step detection: a jump of more than STEP_SIGMAS robust standard deviations (and
# at least MIN_STEP seconds) from the recent median, confirmed by STEP_CONFIRM
# consecutive samples that agree with each other, is a step.  Fewer is a spike.
# So are STEP_CONFIRM candidates whose round trips each differ from the recent median
# delay by at least their jump: a reply late by d moves the offset by up to d / 2, and
# a stepped clock leaves the delay as it was.  At 1,000 sources on loopback
# (bench/scale.py), replies came ~600 us late to the same sources for several polls
# in a row, offsets ~300 us off, and restarted 2-5 % of the restored windows as
# "steps"; on a network, queueing that lasts a few polls would do the same.  Shorter
# round trips count too: with two CPU burners beside the bench, replies to some sources
# came ~30 us late (offsets +14 us) for minutes, and their return to the usual 7 us
# (offsets +3 us) was taken for a step.
STEP_SIGMAS = 10.0
MIN_STEP = 1e-6
STEP_CONFIRM = 3
# The recent offsets (and delays) the median and the robust deviation come from.  With
# 16, the deviation of so few white-noise samples came out as low as a fifth of the
# true one (the tests' WHITE_NOISE_FALSE_STEP_US), and three ordinary samples made a
# "step": 22 in 2.1e8 samples of white phase noise (replay, five seeds), a window
# restarted every ~4 months a source at 1 s, every ~3 hours in a fleet of 1,000; with
# 32, none in the same 2.1e8.  A real step is still confirmed by its STEP_CONFIRM
# samples.  (_level sorts them: 4.3 us a sample, 2.7 with 16.)
HISTORY = 32
_RESET = object()
# Folding cadence: numpy work has a fixed cost per fold, so samples are folded in
# batches of FOLD_BATCH, or when the oldest unfolded one has waited FOLD_MAX_AGE
# (YOUNG_MAX_AGE while the window is young, so the first values come quickly).
# A fold of a full window costs about the same for 64 slots as for 128 (in-process,
# fold and the statistics' text: ~0.6 ms either way), so 128: at 1,000 sources
# polled every second, 7.8 folds a second instead of 15.6.  A 1 s source's
# statistics then move every 128 s (the window they describe spans 4.5 hours).
FOLD_BATCH = 128
# Past FOLD_BATCH s, so a 1 s source folds exactly FOLD_BATCH slots each time: its folds
# then start at one phase of the estimators' blocks, and the fold's index plan
# (timemon.analysis.streaming._Plan, shared by all sources) stays cached.
FOLD_MAX_AGE = 140.0
YOUNG_MAX_AGE = 5.0
YOUNG_WINDOW = 32  # samples: past this, the first values exist and batches can grow
# Samples whose step check ``replay`` does at once (a (chunk, HISTORY) float array).
REPLAY_CHUNK = 4096
# Items drained by one fold past which the queue is renewed (see LiveSeries._place).
QUEUE_LONG = 1024
# The measured spacing of the grid (``LiveSeries._marks``): (slot, time) of the first
# sample in each period of MARK_SLOTS intervals (window // 16 for a smaller window), so
# that the oldest one still in the window is about that far from its start.  Periods of
# wall time, not of slots: a restart that replays the stored window then marks the same
# samples, and its statistics are the same.  16 or 17 marks a source at the default
# window: 2.7 KB with their deque (sys.getsizeof), 2.7 MB at 1,000 sources.
MARK_SLOTS = 1024


@dataclass(frozen=True)
class LiveResult:
    points: tuple[StabilityPoint, ...]
    frequency_offset: float | None
    samples_in_window: int
    # (mask, statistic, violated): violated when the live statistic exceeds the mask at
    # any exported tau where both are defined.
    mask_violations: tuple[tuple[str, str, bool], ...] = ()
    # (mask, statistic, tau, limit in seconds) at the exported taus the mask defines.
    mask_limits: tuple[tuple[str, str, float, float], ...] = ()
    # Mean seconds between the slots of the window, measured (None until two samples
    # span a slot; the last value while a new marking period has one sample); the tau0
    # of ADEV, MDEV and the frequency offset (StreamingStability.set_spacing).
    sample_interval: float | None = None


def mask_verdicts(points: tuple[StabilityPoint, ...], masks: tuple[str, ...]
                  ) -> tuple[tuple[tuple[str, str, bool], ...],
                             tuple[tuple[str, str, float, float], ...]]:
    """Violations per (mask, statistic), and the limits at the exported taus."""
    if not masks or not points:
        return (), ()
    import numpy as np

    from timemon.analysis.masks import get_mask, violations

    taus = np.array([p.tau for p in points])
    verdicts, limits = [], []
    for name in masks:
        mask = get_mask(name)
        for statistic, has in (("mtie", mask.has_mtie), ("tdev", mask.has_tdev)):
            if not has:
                continue
            values = np.array([getattr(p, statistic) if getattr(p, statistic) is not None
                               else np.nan for p in points])
            verdicts.append((name, statistic,
                             bool(violations(mask, statistic, taus, values).any())))
            for tau, limit in zip(taus, mask.limit_seconds(statistic, taus), strict=True):
                if np.isfinite(limit):
                    limits.append((name, statistic, float(tau), float(limit)))
    return tuple(verdicts), tuple(limits)


def _median_sorted(ordered: list[float]) -> float:
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def _median_rows(ordered: np.ndarray) -> np.ndarray:
    """``_median_sorted`` of each row of a row-sorted 2-D array, with the same arithmetic."""
    mid = ordered.shape[1] // 2
    if ordered.shape[1] % 2:
        return ordered[:, mid]
    return (ordered[:, mid - 1] + ordered[:, mid]) / 2.0


def tau_label(tau: float) -> str:
    """Tau written the shortest way: "1", "16", "0.5" (DESIGN.md)."""
    if float(tau).is_integer():
        return str(int(tau))
    return repr(float(tau))


class LiveSeries:
    def __init__(self, tau0: float, window: int = DEFAULT_WINDOW,
                 max_tau: float | None = None, masks: tuple[str, ...] = ()) -> None:
        self.tau0 = tau0
        self.masks = masks
        max_m = int(max_tau // tau0) if max_tau else None
        self._stability = StreamingStability(tau0, window, max_m)
        self._queue: deque[object] = deque()  # floats (phase or NaN) and _RESET markers
        self._queue_drained_long = False  # set by the thread that folds; see _place
        self._last_t_ns: int | None = None
        self._history: deque[float] = deque(maxlen=HISTORY)
        self._delays: deque[float] = deque(maxlen=HISTORY)  # of placed samples that have one
        self._candidates: list[Sample] = []
        # The grid's measured spacing: (slot, t_ns) of the first sample placed in each
        # period of _mark_ns, those inside the window (and the series' first sample, until
        # a period starts); the slot of the last sample placed; and (slots, ns) from the
        # oldest mark to it, replaced whole (the statistics thread reads it).
        self._mark_ns = max(1, int(min(MARK_SLOTS, window // 16) * tau0 * 1e9))
        self._marks: deque[tuple[int, int]] = deque()
        self._first_marked = False  # marks[0] is the series' first sample, not a period's
        self._slot = 0
        self._span = (0, 0)
        self.steps = 0
        self.result = LiveResult((), None, 0)
        self._last_fold = -math.inf  # monotonic seconds

    # -- event-loop side ------------------------------------------------------------

    def add(self, sample: Sample) -> None:
        if self._is_step_candidate(sample.offset):
            self._candidates.append(sample)
            if len(self._candidates) < STEP_CONFIRM:
                return
            if self._candidates_agree() and not self._delays_explain_jumps():
                self._restart_at_step()
                return
            # Not one new level: they were spikes after all; keep them in the series.
            held, self._candidates = self._candidates, []
            for s in held:
                self._place(s)
            return
        held, self._candidates = self._candidates, []
        for s in held:
            self._place(s)
        self._place(sample)

    def replay(self, t_ns: np.ndarray, offsets: np.ndarray,
               delays: np.ndarray | None = None) -> None:
        """``add`` of many samples in time order (a restart's stored history), with the
        same result ~10x faster; ``delays``: NaN where a sample has none.  Where the
        recent history is full and no step check is pending, the check is done for a
        chunk at once: the median and MAD of the HISTORY offsets before each sample, as
        ``_level`` computes them, assuming no candidate in between.  Up to the first
        candidate that holds; the candidate and what follows until the check is clear
        again go through ``add`` one by one."""
        n = len(offsets)

        def one(i: int) -> Sample:
            return Sample(int(t_ns[i]), float(offsets[i]),
                          None if delays is None else float(delays[i]))

        i = 0
        while i < n:
            if self._candidates or len(self._history) < HISTORY:
                self.add(one(i))
                i += 1
                continue
            x = np.asarray(offsets[i:i + REPLAY_CHUNK], dtype=float)
            recent = np.concatenate((np.fromiter(self._history, float, HISTORY), x))
            if not np.isfinite(recent).all():  # sorted() and np.sort order NaN differently
                self.add(one(i))
                i += 1
                continue
            before = np.sort(sliding_window_view(recent, HISTORY)[:len(x)], axis=1)
            median = _median_rows(before)
            mad = _median_rows(np.sort(np.abs(before - median[:, None]), axis=1))
            threshold = np.maximum(MIN_STEP, STEP_SIGMAS * 1.4826 * mad)
            candidate = np.abs(x - median) > threshold
            k = int(np.argmax(candidate)) if candidate.any() else len(x)
            self._place_many(np.asarray(t_ns[i:i + k], dtype=np.int64), x[:k],
                             None if delays is None else np.asarray(delays[i:i + k], float))
            i += k
            if k < len(x):
                self.add(one(i))
                i += 1

    def _place_many(self, t_ns: np.ndarray, x: np.ndarray, delays: np.ndarray | None) -> None:
        """``_place`` of each sample, at once: the same slots, gaps and histories."""
        if not len(x):
            return
        if self._last_t_ns is None:
            self._place(Sample(int(t_ns[0]), float(x[0]),
                               None if delays is None else float(delays[0])))
            t_ns, x = t_ns[1:], x[1:]
            delays = None if delays is None else delays[1:]
            if not len(x):
                return
        assert self._last_t_ns is not None
        steps = np.diff(t_ns, prepend=np.int64(self._last_t_ns)) / (self.tau0 * 1e9)
        gaps = np.clip(np.round(steps), 1, self._stability.window + 1).astype(np.int64) - 1
        placed = np.cumsum(gaps + 1)  # each sample's slot, from the last one placed
        slots = np.full(int(placed[-1]), math.nan)
        slots[placed - 1] = x
        self._queue.extend(slots.tolist())
        # The marks _place would add, and those it would have dropped by the last one.
        placed += self._slot
        periods = t_ns // self._mark_ns
        new_period = periods != np.concatenate(([self._last_t_ns // self._mark_ns],
                                                 periods[:-1]))
        marks = self._marks
        if self._first_marked and new_period.any():
            marks.popleft()
            self._first_marked = False
        marks.extend(zip(placed[new_period].tolist(), t_ns[new_period].tolist(), strict=True))
        self._slot = int(placed[-1])
        while len(marks) > 1 and marks[0][0] <= self._slot - self._stability.window:
            marks.popleft()
        self._span = (self._slot - marks[0][0], int(t_ns[-1]) - marks[0][1])
        self._history.extend(x[-HISTORY:].tolist())
        if delays is not None:
            self._delays.extend(delays[np.isfinite(delays)][-HISTORY:].tolist())
        self._last_t_ns = int(t_ns[-1])

    def _level(self) -> tuple[float, float] | None:
        """(median, step threshold) of the recent offsets, or None while there are few."""
        if len(self._history) < 8:
            return None
        ordered = sorted(self._history)
        median = _median_sorted(ordered)
        deviations = [abs(v - median) for v in ordered]  # a list: sorted(generator) is slower
        deviations.sort()
        return median, max(MIN_STEP, STEP_SIGMAS * 1.4826 * _median_sorted(deviations))

    def _is_step_candidate(self, offset: float) -> bool:
        level = self._level()
        if level is None:
            return False
        return abs(offset - level[0]) > level[1]

    def _candidates_agree(self) -> bool:
        level = self._level()
        median, threshold = level if level is not None else (0.0, MIN_STEP)
        offsets = [s.offset for s in self._candidates]
        same_side = all(o > median for o in offsets) or all(o < median for o in offsets)
        return same_side and max(offsets) - min(offsets) < threshold

    def _delays_explain_jumps(self) -> bool:
        """Whether every candidate's round trip differs from the recent median delay by
        at least its jump from the recent median offset: later replies, or the first on
        time after a run of late ones (see the comment at STEP_SIGMAS)."""
        if len(self._delays) < 8:
            return False
        usual = _median_sorted(sorted(self._delays))
        level = self._level()
        median = level[0] if level is not None else 0.0
        # (a candidate without a delay is never explained, nor one with NaN: NaN >= x is False)
        return all(s.delay is not None and abs(s.delay - usual) >= abs(s.offset - median)
                   for s in self._candidates)

    def _restart_at_step(self) -> None:
        self.steps += 1
        held, self._candidates = self._candidates, []
        self._history.clear()
        self._last_t_ns = None
        self._queue.append(_RESET)
        for s in held:
            self._place(s)

    def _place(self, sample: Sample) -> None:
        if self._queue_drained_long and not self._queue:
            # A deque keeps up to 16 freed blocks (7.7 KB measured) once it has held a
            # replayed window; a new one lets them go.  Swapped here, on the event loop,
            # which is the only thread that appends once the series is attached (replay
            # runs before), and only when empty, so nothing queued can be lost.
            self._queue = deque()
            self._queue_drained_long = False
        t_ns = sample.t_ns
        marks = self._marks
        last_t_ns = self._last_t_ns
        if last_t_ns is None:  # the first sample, or the first after a step
            slot = 0
            marks.clear()
            marks.append((0, t_ns))
            self._first_marked = True
        else:
            slots = round((t_ns - last_t_ns) / (self.tau0 * 1e9))
            advance = min(max(slots, 1), self._stability.window + 1)
            for _ in range(advance - 1):
                self._queue.append(math.nan)
            slot = self._slot + advance
            if t_ns // self._mark_ns != last_t_ns // self._mark_ns:
                if self._first_marked:
                    marks.popleft()
                    self._first_marked = False
                marks.append((slot, t_ns))
            while len(marks) > 1 and marks[0][0] <= slot - self._stability.window:
                marks.popleft()
        self._slot = slot
        self._span = (slot - marks[0][0], t_ns - marks[0][1])
        self._last_t_ns = t_ns
        self._queue.append(sample.offset)
        self._history.append(sample.offset)
        delay = sample.delay
        if delay is not None and math.isfinite(delay):
            self._delays.append(delay)

    # -- statistics-thread side ----------------------------------------------------------

    def fold_due(self, now: float) -> bool:
        """Whether a batch is ready or the oldest sample has waited long enough
        (``now``: monotonic seconds)."""
        if not self._queue:
            return False
        young = self.result.samples_in_window < YOUNG_WINDOW
        max_age = YOUNG_MAX_AGE if young else FOLD_MAX_AGE
        return len(self._queue) >= FOLD_BATCH or now - self._last_fold >= max_age

    def compute_if_due(self, now: float) -> bool:
        """Fold and publish when ``fold_due``.  Returns whether it did."""
        if not self.fold_due(now):
            return False
        self._last_fold = now
        self.compute()
        return True

    def compute(self) -> LiveResult:
        """Fold queued samples in and publish the result (numpy: off the event loop)."""
        stab = self._stability
        queue = self._queue
        # What the event loop queued so far (it may go on appending meanwhile), then
        # handed over in runs between the step resets.
        items = [queue.popleft() for _ in range(len(queue))]
        if len(items) > QUEUE_LONG:
            self._queue_drained_long = True
        start = 0
        for at in [i for i, item in enumerate(items) if item is _RESET]:
            stab.extend(items[start:at])  # type: ignore[arg-type]
            stab.reset()
            start = at + 1
        stab.extend(items[start:])  # type: ignore[arg-type]
        stab.update()
        # The spacing of the samples placed so far: those queued since are a few of the
        # thousands it averages over.  (No span: a single sample, or the first mark of a
        # period just replaced the series' first sample; the last spacing holds.)
        slots, ns = self._span
        spacing = ns / slots / 1e9 if slots else self.result.sample_interval
        stab.set_spacing(spacing or self.tau0)
        points = tuple(stab.points())
        verdicts, limits = mask_verdicts(points, self.masks)
        self.result = LiveResult(points, stab.frequency_offset(), stab.count, verdicts, limits,
                                 spacing)
        return self.result
