"""A per-scrape builder of Prometheus metric families, rendered straight to text.

Each source adds its samples by family name; families with the same name from
several sources are merged into one, which Prometheus requires.  Built fresh
on every scrape from snapshots, so nothing here is shared between threads.

At 1,000 sources a scrape holds ~64,000 series, so the cost per series matters.
``Families(text=True)`` (what ``/metrics`` uses) writes each sample's line the
moment it is added and keeps only its encoded text: no per-sample tuple lives until the
end of the scrape, so a scrape neither walks its samples twice nor fills the
garbage collector's young generation with ~100,000 containers (which made
CPython run full collections mid-scrape).  Label text is formatted once per
distinct label set.  Families with one sample per source (offset, delay, the NTP
server's stratum...) are ``Column``s: ``Families.columns`` reads one column for
every source of a kind and renders it in one comprehension, instead of one call
per sample.  Parts that change rarely (a source's live statistics change
once per fold, not per scrape) are built once as a ``Fragment`` and merged as
pre-rendered, encoded text, many fragments at once (``Families.merge_all``).
Without ``text``, a ``Families`` keeps each sample as a tuple
(label names, label values, value) and iterating it gives prometheus_client
``Metric`` objects, for ``generate_latest`` and the tests; ``render`` writes the
same bytes either way (tests/test_web_config.py compares them).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from typing import Any

from prometheus_client.core import Metric

SOURCE_LABELS = ("source", "kind")

# (label names, label values, value); names and values in the same order.
Entry = tuple[tuple[str, ...], tuple[str, ...], float]

# ``render_blocks`` joins the texts of a scrape into blocks of at most this many bytes,
# below heap.MMAP_THRESHOLD so glibc serves them from the heap, and one at a time, so
# the next block reuses the memory of the last.  Joined whole, the 6 MB body at 1,000
# full windows was a fresh mapping at each scrape: ~1,600 page faults on first touch,
# ~4.5 us each on the reference VM.  In-process, a render after every source had a new
# sample (1,000 NTP sources, full windows, min of 14, five alternating pairs): 22.2-26.5
# ms joined whole, 16.7-18.1 ms in blocks (one pair reversed: 23.5 against 29.8).
CHUNK_BYTES = 64 * 1024

_SUFFIX = {"gauge": "", "counter": "_total", "info": "_info"}
_EXPOSED_TYPE = {"gauge": "gauge", "counter": "counter", "info": "gauge"}

# Label text by (names, values): the same (kind, source) pair recurs in ~40 families per
# source and in every scrape.  Bounded: cleared when it grows past _LABEL_CACHE_MAX.
_label_cache: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
_LABEL_CACHE_MAX = 200_000


def _escape_value(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def label_text(names: tuple[str, ...], values: tuple[str, ...], keep: bool = True) -> str:
    """``{a="x",b="y"}`` sorted by label name, as prometheus_client writes it; remembered
    for the next scrapes unless ``keep`` is false (text rendered once, in a Fragment)."""
    key = (names, values)
    text = _label_cache.get(key)
    if text is None:
        if not names:
            return ""
        text = "{" + ",".join(
            f'{k}="{_escape_value(v)}"' for k, v in sorted(zip(names, values, strict=True))
        ) + "}"
        if keep:
            if len(_label_cache) >= _LABEL_CACHE_MAX:
                _label_cache.clear()
            _label_cache[key] = text
    return text


class LabelSet:
    """Label values whose text is formatted once, for labels that repeat in every scrape
    (a source's ``source``/``kind`` pair).  Iterates as its values, so ``(*lv, reason)``
    still builds a wider tuple."""

    __slots__ = ("names", "values", "text")

    def __init__(self, names: tuple[str, ...], values: tuple[str, ...]) -> None:
        self.names = names
        self.values = values
        self.text = label_text(names, values, keep=False)

    def prefix(self, sample_name: str) -> str:
        """The start of a sample line, up to its value: ``name{labels} ``."""
        return f"{sample_name}{self.text} "

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)


_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def format_value(d: float) -> str:
    """A sample value as Go writes it (prometheus_client's floatToGoString)."""
    s = repr(d if d.__class__ is float else float(d))
    if s[-1] in "fn":  # nan, inf, -inf
        return _SPECIAL[s]
    if s[0] != "-":
        dot = s.find(".")
        if dot > 6:  # Go switches to an exponent sooner than Python
            mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
            return f"{mantissa}e+{dot - 1:02d}"
    return s


def _line(sample_name: str, labels: str, value: float) -> str:
    """One sample line; ``labels`` is the formatted ``{...}`` text (or "")."""
    # Most values are floats below 1e6, which repr writes as Go does (format_value).
    text = (repr(value) if value.__class__ is float and -1e6 < value < 1e6
            else format_value(value))
    return f"{sample_name}{labels} {text}\n"


class Column:
    """A family with at most one sample per source, labelled with the source's own
    ``source``/``kind`` pair (``Source.label_values``): ``value(source)``, or None for
    no sample.  ``Families.columns`` renders a column for many sources in one pass.

    At 1,000 NTP sources a scrape holds 17,000 such samples.  A chain of calls per
    sample (``gauge``) cost about a third of a scrape's CPU (in-process, best of 25:
    53 ms before, 35 ms as columns); most of the rest is formatting the floats.
    """

    __slots__ = ("name", "doc", "type", "sample_name", "value", "_prefixes", "_rendered")

    def __init__(self, name: str, doc: str, mtype: str,
                 value: Callable[[Any], float | None]) -> None:
        self.name = name
        self.doc = doc
        self.type = mtype
        self.sample_name = name + _SUFFIX[mtype]
        self.value = value
        # The label sets of the last scrape and their ``name{labels} `` texts: the same
        # sources are scraped again and again.  Replaced whole (threads may share it).
        self._prefixes: tuple[list[LabelSet], list[str]] = ([], [])
        # The prefixes, values and text of the last scrape.  Half the columns of a
        # steady fleet hold still between scrapes (up, stratum, leap, poll interval,
        # the server's root delay...); their text is reused, not formatted again.
        self._rendered: tuple[list[str], list[float | None], bytes] = ([], [], b"")

    def prefixes(self, label_sets: list[LabelSet]) -> list[str]:
        """``name{labels} `` for each label set."""
        last_sets, texts = self._prefixes
        if last_sets != label_sets:  # compares identities first: a C loop, no __eq__
            sample_name = self.sample_name
            texts = [ls.prefix(sample_name) for ls in label_sets]
            self._prefixes = (label_sets, texts)
        return texts

    def text(self, label_sets: list[LabelSet], values: list[float | None]) -> bytes:
        """The sample lines of ``values`` (None: no sample), one per label set, encoded."""
        prefixes = self.prefixes(label_sets)
        last_prefixes, last_values, text = self._rendered
        # == compares numbers: a zero whose sign flipped keeps the text of the other
        # (0.0 for -0.0), the same number to Prometheus; identical NaNs compare equal.
        if last_prefixes is prefixes and last_values == values:
            return text
        # _line's formatting, inlined: this comprehension is the scrape's inner loop.
        # Below 1e6, Go writes a float as repr does, and an int (a counter, a
        # stratum) as its digits and ".0" (format_value, without its call).
        text = "".join([
            f"{p}{repr(v)}\n" if v.__class__ is float and -1e6 < v < 1e6
            else f"{p}{v}.0\n" if v.__class__ is int and -1_000_000 < v < 1_000_000
            else f"{p}{format_value(v)}\n"
            for p, v in zip(prefixes, values, strict=True)
            if v is not None]).encode()
        self._rendered = (prefixes, values, text)  # replaced whole: threads may share it
        return text


class _Family:
    __slots__ = ("name", "doc", "type", "labels", "sample_name", "entries")

    def __init__(self, name: str, doc: str, mtype: str, labels: Sequence[str]) -> None:
        self.name = name
        self.doc = doc
        self.type = mtype
        self.labels = tuple(labels)
        self.sample_name = name + _SUFFIX[mtype]
        # Entry tuples, or (text mode) encoded lines and fragments' texts.
        self.entries: list[Entry | bytes] = []

    def render_samples(self, out: list[str], keep_labels: bool = True,
                       memo: dict[tuple[tuple[str, ...], tuple[str, ...]], str] | None = None
                       ) -> None:
        """Append the sample lines of the entries.  ``memo``: label texts shared by the
        families of one Fragment (a source's live statistics repeat each ``tau`` label
        set in four families), for label sets not kept in the module's cache."""
        sample_name = self.sample_name
        cached = _label_cache.get
        append = out.append
        for e in self.entries:
            names, values, value = e  # type: ignore[misc]
            key = (names, values)
            labels = cached(key)
            if labels is None:
                if memo is None:
                    labels = label_text(names, values, keep_labels)
                else:
                    labels = memo.get(key)
                    if labels is None:
                        labels = memo[key] = label_text(names, values, keep=False)
            append(_line(sample_name, labels, value))

    def header(self) -> str:
        exposed = self.sample_name
        doc = self.doc.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {exposed} {doc}\n# TYPE {exposed} {_EXPOSED_TYPE[self.type]}\n"

    def metric(self) -> Metric:
        """As a prometheus_client Metric (what its Gauge/Counter/InfoMetricFamily build)."""
        metric = Metric(self.name, self.doc, self.type)
        sample_name = self.sample_name
        for e in self.entries:
            if e.__class__ is bytes:
                raise TypeError("a Families built with text=True has no Metric objects")
            names, values, value = e  # type: ignore[misc]
            metric.add_sample(sample_name, dict(zip(names, values, strict=True)), value)
        return metric


class Families:
    def __init__(self, text: bool = False) -> None:
        """``text``: render each sample as it is added (``render`` only; no iteration)."""
        self._families: dict[str, _Family] = {}
        self._text = text

    def _family(self, name: str, doc: str, mtype: str, labels: Sequence[str]) -> _Family:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(name, doc, mtype, labels)
        return family

    def _add(self, family: _Family, names: tuple[str, ...],
             values: Sequence[str] | LabelSet, value: float) -> None:
        if values.__class__ is LabelSet:
            if self._text and values.names == names:  # type: ignore[union-attr]
                family.entries.append(
                    _line(family.sample_name, values.text, value).encode())  # type: ignore[union-attr]
                return
            values = values.values  # type: ignore[union-attr]
        if self._text:
            values = tuple(values)  # type: ignore[arg-type]
            labels = _label_cache.get((names, values)) or label_text(names, values)
            family.entries.append(_line(family.sample_name, labels, value).encode())
        else:
            family.entries.append((names, tuple(values), value))

    def columns(self, columns: Sequence[Column], sources: Sequence[Any]) -> None:
        """Each column's sample for each of ``sources`` (objects with a ``label_values``
        LabelSet), in the order of ``sources``; a column with no sample at all adds no
        family, as ``gauge`` would not."""
        if not sources:
            return
        label_sets = [source.label_values for source in sources]
        for column in columns:
            values = list(map(column.value, sources))
            if values.count(None) == len(values):
                continue
            family = (self._families.get(column.name)
                      or self._family(column.name, column.doc, column.type, SOURCE_LABELS))
            if not self._text:
                family.entries.extend((SOURCE_LABELS, ls.values, v)  # type: ignore[misc]
                                      for ls, v in zip(label_sets, values, strict=True)
                                      if v is not None)
                continue
            family.entries.append(column.text(label_sets, values))

    def gauge(
        self, name: str, doc: str, labels: Sequence[str], values: Sequence[str] | LabelSet,
        value: float,
    ) -> None:
        """``values``: in the order of ``labels``; a ``LabelSet`` when they repeat."""
        family = self._families.get(name) or self._family(name, doc, "gauge", labels)
        self._add(family, family.labels, values, value)

    def counter(
        self, name: str, doc: str, labels: Sequence[str], values: Sequence[str] | LabelSet,
        value: float,
    ) -> None:
        """``name`` without the ``_total`` suffix, which is appended as the client library does."""
        family = self._families.get(name) or self._family(name, doc, "counter", labels)
        self._add(family, family.labels, values, value)

    def info(
        self,
        name: str,
        doc: str,
        labels: Sequence[str],
        values: Sequence[str],
        info: dict[str, str],
    ) -> None:
        """``name`` without the ``_info`` suffix."""
        family = self._families.get(name) or self._family(name, doc, "info", labels)
        self._add(family, (*family.labels, *info), (*values, *info.values()), 1.0)

    def gauge_with(self, name: str, doc: str, labels: dict[str, str], value: float) -> None:
        """A gauge sample whose label set may be wider than the family's (e.g. GNSS's
        ``quality`` on ``timemon_offset_seconds``); the exposition format allows it."""
        family = self._families.get(name) or self._family(name, doc, "gauge", labels)
        self._add(family, tuple(labels), tuple(labels.values()), value)

    def declare_gauge(self, name: str, doc: str, labels: Sequence[str]) -> None:
        """Make a family appear (with HELP/TYPE) even when it has no samples yet."""
        self._family(name, doc, "gauge", labels)

    def declare_counter(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self._family(name, doc, "counter", labels)

    def merge(self, fragment: Fragment) -> None:
        """Add a fragment's families: as its pre-rendered text, or (not in text mode)
        as the entries it is built again from."""
        self.merge_all((fragment,))

    def merge_all(self, fragments: Sequence[Fragment]) -> None:
        """``merge`` each of ``fragments``, family by family for those with the same
        families in the same order (``Fragment.layout``).  At 1,000 NTP sources a scrape
        merges 2,000 fragments; merged one call per fragment and family, and encoded
        after the join, a render with every window full took 22-27 ms in-process
        (median of 40), 9-14 ms this way.  Samples of one family keep the order of
        ``fragments`` within each layout."""
        groups: dict[int, list[Fragment]] = {}  # by id(layout): one tuple per layout
        for fragment in fragments:
            group = groups.get(id(fragment.layout))
            if group is None:
                groups[id(fragment.layout)] = [fragment]
            else:
                group.append(fragment)
        for group in groups.values():
            if self._text:
                # zip(*...): each family's texts from every fragment, in one C loop.
                by_family = zip(*[f.texts for f in group], strict=True)
                for family, texts in zip(group[0].families, by_family, strict=True):
                    self._target(family).entries.extend(texts)
                continue
            built = [f.build()._families for f in group]
            for family in group[0].families:
                target = self._target(family)
                for b in built:
                    target.entries.extend(b[family.name].entries)

    def _target(self, family: _Family) -> _Family:
        """This scrape's family with the name of ``family`` (a fragment's)."""
        return self._families.get(family.name) or self._family(
            family.name, family.doc, family.type, family.labels)

    def render(self) -> bytes:
        """The Prometheus text exposition format (0.0.4) of every family."""
        if self._text:
            return b"".join(self._texts())
        lines: list[str] = []
        for family in self._families.values():
            lines.append(family.header())
            family.render_samples(lines)
        return "".join(lines).encode("utf-8")

    def render_blocks(self) -> tuple[int, Iterator[bytes]]:
        """``render``'s length, and its bytes as consecutive blocks of at most
        ``CHUNK_BYTES`` (a longer single text, a whole column, is a block of its own),
        each joined only when asked for: a server writes one, drops it, asks for the
        next.  The blocks hold only the encoded texts, which no one changes.  Text mode
        only (``Families(text=True)``)."""
        texts = self._texts()
        ends = list(accumulate(map(len, texts)))  # where each text ends in the body
        return (ends[-1] if ends else 0), _blocks(texts, ends)

    def _texts(self) -> list[bytes]:
        """Every family's header and encoded entries, in order (text mode)."""
        out: list[bytes] = []
        for family in self._families.values():
            out.append(family.header().encode())
            out.extend(family.entries)  # type: ignore[arg-type]
        return out

    def __iter__(self) -> Iterator[Metric]:
        return (family.metric() for family in self._families.values())


def _blocks(texts: list[bytes], ends: list[int]) -> Iterator[bytes]:
    start, written = 0, 0
    while start < len(texts):
        # The texts from ``start`` that end within CHUNK_BYTES of ``written``; at
        # least one.  A join of one text is that same object, not a copy.
        stop = max(bisect_right(ends, written + CHUNK_BYTES, lo=start), start + 1)
        yield b"".join(texts[start:stop])
        start, written = stop, ends[stop - 1]


class Fragment:
    """Families rendered once and merged into many scrapes as text.

    Only the text is kept, encoded, one per family (at 1,000 sources the entries would
    hold ~9 MB more); the prometheus_client path (``Families`` without ``text``) calls
    ``build`` again.  ``layout``: the names of its families in order, one tuple object
    for all fragments with the same (``Families.merge_all`` groups by it).
    """

    __slots__ = ("families", "texts", "build", "layout")

    def __init__(self, build: Callable[[], Families]) -> None:
        self.build = build
        families = tuple(build()._families.values())
        texts = []
        memo: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
        for family in families:
            text: list[str] = []
            family.render_samples(text, keep_labels=False, memo=memo)
            family.entries = []
            texts.append("".join(text).encode())
        self.families = families
        self.texts = tuple(texts)
        layout = tuple(family.name for family in families)
        if len(_layouts) >= _LAYOUTS_MAX:  # (fragments made before keep their tuple)
            _layouts.clear()
        self.layout = _layouts.setdefault(layout, layout)


# One tuple per distinct Fragment.layout: a handful (the live statistics while the
# window grows, NTP's own families with and without errors...), not one per fragment.
_layouts: dict[tuple[str, ...], tuple[str, ...]] = {}
_LAYOUTS_MAX = 1000
