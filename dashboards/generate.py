"""Generate timemon's Grafana dashboards and the mask-limit recording rules.

    python dashboards/generate.py          # rewrite dashboards/grafana/*.json, prometheus/masks.yml
    python dashboards/generate.py --check  # exit 1 when a committed file differs (tests run this)

The JSON files are what operators import; this script keeps their panel ids unique,
their uids fixed and every query on the ``$datasource`` variable by construction.
Edit here, regenerate, commit both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 42  # Grafana's current dashboard schema (the Foundation SDK's default)
DS = {"type": "prometheus", "uid": "${datasource}"}
# Powers of two, in seconds, at which masks.yml gives each mask's limit: the taus the
# agent exports for a source whose interval is a power of two (1 s, 16 s, 64 s, 0.5 s...).
MASK_TAU_EXPONENTS = range(-4, 21)

NODE = 'job=~"$job", instance=~"$instance"'
SRC = NODE + ', source=~"$source"'


class Dashboard:
    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.panels: list[dict[str, Any]] = []
        self.variables: list[dict[str, Any]] = [_datasource_variable()]
        self._next_id = 1
        self._x = self._y = 0
        self._row_height = 0

    # -- layout: panels flow left to right, 24 columns wide -------------------------

    def _place(self, w: int, h: int) -> dict[str, int]:
        if self._x + w > 24:
            self._x, self._y = 0, self._y + self._row_height
            self._row_height = 0
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_height = max(self._row_height, h)
        return pos

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def row(self, title: str) -> None:
        if self._x:
            self._x, self._y, self._row_height = 0, self._y + self._row_height, 0
        self.panels.append({"type": "row", "id": self._id(), "title": title, "collapsed": False,
                            "panels": [], "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y}})
        self._y += 1

    def panel(self, kind: str, title: str, description: str, targets: list[dict[str, Any]],
              *, w: int = 12, h: int = 8, unit: str = "", options: dict[str, Any] | None = None,
              custom: dict[str, Any] | None = None, mappings: list[dict[str, Any]] | None = None,
              transformations: list[dict[str, Any]] | None = None,
              thresholds: list[tuple[float | None, str]] | None = None) -> None:
        defaults: dict[str, Any] = {}
        if unit:
            defaults["unit"] = unit
        if custom:
            defaults["custom"] = custom
        if mappings:
            defaults["mappings"] = mappings
        if thresholds:
            defaults["thresholds"] = {"mode": "absolute",
                                      "steps": [{"value": v, "color": c} for v, c in thresholds]}
        panel: dict[str, Any] = {
            "type": kind, "id": self._id(), "title": title, "description": description,
            "datasource": DS, "gridPos": self._place(w, h),
            "targets": [{"refId": chr(ord("A") + i), "datasource": DS, **t}
                        for i, t in enumerate(targets)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options or {},
        }
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)

    def variable(self, name: str, label: str, query: str, *, multi: bool = True) -> None:
        self.variables.append({
            "type": "query", "name": name, "label": label, "datasource": DS,
            "query": query, "definition": query, "refresh": 2, "sort": 1,
            "multi": multi, "includeAll": True, "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
        })

    def render(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["timemon"], "timezone": "utc", "editable": True, "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
            "schemaVersion": SCHEMA_VERSION, "version": 1,
            "links": [{"title": "timemon dashboards", "type": "dashboards", "icon": "external link",
                       "tooltip": "", "tags": ["timemon"], "asDropdown": True,
                       "targetBlank": False, "includeVars": True, "keepTime": True}],
            "annotations": {"list": [{
                "name": "Annotations & Alerts", "builtIn": 1, "enable": True, "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)", "type": "dashboard",
                "datasource": {"type": "grafana", "uid": "-- Grafana --"}}]},
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def _datasource_variable() -> dict[str, Any]:
    return {"type": "datasource", "name": "datasource", "label": "Data source",
            "query": "prometheus", "current": {"text": "default", "value": "default"},
            "refresh": 1, "regex": "", "hide": 0}


def q(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {"expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        target["instant"], target["range"] = True, False
    if table:
        target["format"] = "table"
    return target


def _enum(pairs: dict[int, str]) -> list[dict[str, Any]]:
    return [{"type": "value", "options": {str(k): {"text": v, "index": i}
                                          for i, (k, v) in enumerate(pairs.items())}}]


UP_DOWN = _enum({0: "down", 1: "up"})
NO_YES = _enum({0: "no", 1: "yes"})
PORT_STATES = _enum({1: "INITIALIZING", 2: "FAULTY", 3: "DISABLED", 4: "LISTENING",
                     5: "PRE_MASTER", 6: "MASTER", 7: "PASSIVE", 8: "UNCALIBRATED", 9: "SLAVE",
                     10: "GRAND_MASTER"})
LEGEND = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"],
                     "showLegend": True}}
TABLE = {"showHeader": True, "cellHeight": "sm"}


def _common_variables(d: Dashboard, source_kind: str | None = None) -> None:
    d.variable("job", "Job", "label_values(timemon_build_info, job)")
    d.variable("instance", "Instance", 'label_values(timemon_build_info{job=~"$job"}, instance)')
    kind = f', kind="{source_kind}"' if source_kind else ""
    d.variable("source", "Source",
               f"label_values(timemon_source_up{{{NODE}{kind}}}, source)")


# -- fleet overview ---------------------------------------------------------------------


def fleet() -> Dashboard:
    d = Dashboard("timemon-fleet", "timemon / Fleet overview",
                  "Every node watched by timemon: agents, sources down, worst offsets, alerts.")
    d.variable("job", "Job", "label_values(timemon_build_info, job)")
    j = 'job=~"$job"'
    stat = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background", "graphMode": "none", "textMode": "value"}
    d.panel("stat", "Agents up", "Agents scraped successfully (up == 1).",
            [q(f"sum(up{{{j}}})", instant=True)], w=4, h=4, options=stat,
            thresholds=[(None, "blue")])
    d.panel("stat", "Agents down", "Agents Prometheus cannot scrape.",
            [q(f"count(up{{{j}}} == 0) or vector(0)", instant=True)], w=4, h=4, options=stat,
            thresholds=[(None, "green"), (1, "red")])
    d.panel("stat", "Sources", "Reference sources configured over the fleet.",
            [q(f"count(timemon_source_up{{{j}}})", instant=True)], w=4, h=4, options=stat,
            thresholds=[(None, "blue")])
    d.panel("stat", "Sources down", "Reference sources whose last poll gave no accepted sample.",
            [q(f"sum(1 - timemon_source_up{{{j}}})", instant=True)], w=4, h=4, options=stat,
            thresholds=[(None, "green"), (1, "orange")])
    d.panel("stat", "Firing alerts", "timemon alerts firing now (alerts.yml).",
            [q('count(ALERTS{alertname=~"Timemon.*", alertstate="firing"}) or vector(0)',
               instant=True)], w=4, h=4, options=stat, thresholds=[(None, "green"), (1, "red")])
    d.panel("stat", "Mask violations", "Sources whose live MTIE/TDEV exceeds a configured mask.",
            [q(f"sum(timemon_mask_violation{{{j}}}) or vector(0)", instant=True)], w=4, h=4,
            options=stat, thresholds=[(None, "green"), (1, "red")])
    d.panel("table", "Top 10 worst |offset|",
            "The ten sources with the largest |local − reference| now (GNSS: PPS only).",
            [q(f'topk(10, abs(timemon_offset_seconds{{{j}, quality!="serial"}}))',
               instant=True, table=True)], w=12, h=10, unit="s", options=TABLE,
            transformations=[{"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True},
                "renameByName": {"Value": "|offset|"}}}])
    d.panel("timeseries", "Worst |offset| per cluster and job",
            "Recording rule cluster_job:timemon_offset_seconds:max_abs (recording.yml).",
            [q(f"cluster_job:timemon_offset_seconds:max_abs{{{j}}}", "{{cluster}} {{job}}")],
            w=12, h=10, unit="s", custom={"scaleDistribution": {"type": "log", "log": 10}})
    d.panel("timeseries", "Worst |offset| per node",
            "Recording rule instance:timemon_offset_seconds:max_abs (recording.yml).",
            [q(f"instance:timemon_offset_seconds:max_abs{{{j}}}", "{{instance}}")], w=12, h=9,
            unit="s", options=LEGEND, custom={"scaleDistribution": {"type": "log", "log": 10}})
    d.panel("timeseries", "Sources down per kind",
            "Recording rule cluster_job_kind:timemon_sources_down:sum (recording.yml).",
            [q(f"sum by (kind) (cluster_job_kind:timemon_sources_down:sum{{{j}}})", "{{kind}}")],
            w=12, h=9, custom={"drawStyle": "bars", "fillOpacity": 60})
    d.panel("table", "Sources (down first)", "Every reference source of the fleet, down first.",
            [q(f"sort(timemon_source_up{{{j}}})", instant=True, table=True)], w=12, h=10,
            mappings=UP_DOWN, options=TABLE,
            transformations=[{"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True},
                "renameByName": {"Value": "state"}}}])
    d.panel("table", "Firing and pending alerts", "ALERTS of alerts.yml, with their labels.",
            [q('ALERTS{alertname=~"Timemon.*"}', instant=True, table=True)], w=12, h=10,
            options=TABLE, transformations=[{"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True, "Value": True}}}])
    return d


# -- node detail ----------------------------------------------------------------------------


def node() -> Dashboard:
    d = Dashboard("timemon-node", "timemon / Node detail",
                  "One node's sources: offset, delay, jitter, frequency, error bound; kernel "
                  "clock; the agent itself.")
    _common_variables(d)
    legend = "{{instance}} {{source}}"
    d.row("Sources")
    d.panel("state-timeline", "Source state", "timemon_source_up: 1 accepted sample at last poll.",
            [q(f"timemon_source_up{{{SRC}}}", legend)], w=24, h=5, mappings=UP_DOWN,
            thresholds=[(None, "red"), (1, "green")])
    d.panel("timeseries", "Offset (local − reference)",
            "timemon_offset_seconds: positive means the local clock is ahead.",
            [q(f"timemon_offset_seconds{{{SRC}}}", legend + " {{quality}}")], unit="s",
            options=LEGEND)
    d.panel("timeseries", "Delay", "timemon_delay_seconds: NTP round trip, PTP mean path delay.",
            [q(f"timemon_delay_seconds{{{SRC}}}", legend)], unit="s", options=LEGEND)
    d.panel("timeseries", "Jitter", "timemon_jitter_seconds (RFC 5905 jitter for NTP).",
            [q(f"timemon_jitter_seconds{{{SRC}}}", legend)], unit="s", options=LEGEND)
    d.panel("timeseries", "Frequency offset",
            "timemon_frequency_offset_ratio: slope of the offset over the stability window "
            "(1e-6 = 1 ppm).", [q(f"timemon_frequency_offset_ratio{{{SRC}}}", legend)],
            unit="sci", options=LEGEND)
    d.panel("timeseries", "Error bound", "timemon_error_bound_seconds: the worst-case error of "
            "the local clock against the source.",
            [q(f"timemon_error_bound_seconds{{{SRC}}}", legend)], unit="s", options=LEGEND)
    d.panel("timeseries", "Last sample age", "Seconds since the last accepted sample.",
            [q(f"time() - timemon_last_sample_timestamp_seconds{{{SRC}}}", legend)], unit="s",
            options=LEGEND)
    d.panel("timeseries", "Probe errors by reason",
            "rate(timemon_probe_errors_total) by reason; 0 for sources without errors.",
            [q(f"sum by (instance, source, reason) "
               f"(rate(timemon_probe_errors_total{{{SRC}}}[$__rate_interval])) "
               f"or sum by (instance, source) (0 * timemon_source_up{{{SRC}}})",
               "{{instance}} {{source}} {{reason}}")], unit="reqps", options=LEGEND)
    d.panel("timeseries", "Poll duration", "timemon_probe_duration_seconds of the last poll.",
            [q(f"timemon_probe_duration_seconds{{{SRC}}}", legend)], unit="s", options=LEGEND)
    d.row("NTP servers")
    d.panel("timeseries", "Stratum", "timemon_ntp_stratum of the last accepted reply.",
            [q(f"timemon_ntp_stratum{{{SRC}}}", legend)], w=8, options=LEGEND)
    d.panel("timeseries", "Root distance", "timemon_ntp_root_distance_seconds (RFC 5905).",
            [q(f"timemon_ntp_root_distance_seconds{{{SRC}}}", legend)], w=8, unit="s",
            options=LEGEND)
    d.panel("table", "Servers", "timemon_ntp_server_info: reference id, version, address.",
            [q(f"timemon_ntp_server_info{{{SRC}}}", instant=True, table=True)], w=8,
            options=TABLE, transformations=[{"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True, "Value": True}}}])
    d.row("chronyd and cross-checks")
    d.panel("timeseries", "chronyd frequency and skew",
            "timemon_chrony_frequency_ratio and timemon_chrony_skew_ratio (ratios).",
            [q(f"timemon_chrony_frequency_ratio{{{SRC}}}", legend + " frequency"),
             q(f"timemon_chrony_skew_ratio{{{SRC}}}", legend + " skew")], w=8, unit="sci",
            options=LEGEND)
    d.panel("timeseries", "chronyd RMS offset", "timemon_chrony_rms_offset_seconds.",
            [q(f"timemon_chrony_rms_offset_seconds{{{SRC}}}", legend)], w=8, unit="s",
            options=LEGEND)
    d.panel("state-timeline", "Falsetickers", "timemon_falseticker: 1 when the source "
            "disagrees with the majority of the node's references (RFC 5905 intersection).",
            [q(f"timemon_falseticker{{{SRC}}}", legend)], w=8, mappings=NO_YES,
            thresholds=[(None, "green"), (1, "red")])
    d.panel("timeseries", "Spread of the truechimers", "timemon_reference_spread_seconds.",
            [q(f"timemon_reference_spread_seconds{{{NODE}}}", "{{instance}}")], w=8, unit="s")
    d.panel("state-timeline", "Majority and leap consistency",
            "timemon_reference_majority and timemon_leap_consistent (1 good).",
            [q(f"timemon_reference_majority{{{NODE}}}", "{{instance}} majority"),
             q(f"timemon_leap_consistent{{{NODE}}}", "{{instance}} leap consistent")], w=16,
            mappings=NO_YES, thresholds=[(None, "red"), (1, "green")])
    d.row("Kernel clock (adjtimex)")
    d.panel("state-timeline", "Kernel synchronised", "timemon_kernel_sync_status "
            "(STA_UNSYNC clear) and timemon_kernel_clock_state (0 TIME_OK ... 5 TIME_ERROR).",
            [q(f"timemon_kernel_sync_status{{{NODE}}}", "{{instance}} synchronised"),
             q(f"timemon_kernel_clock_state{{{NODE}}}", "{{instance}} clock state")], w=24,
            h=5, thresholds=[(None, "blue")])
    d.panel("timeseries", "Kernel errors", "maxerror and esterror of adjtimex.",
            [q(f"timemon_kernel_maxerror_seconds{{{NODE}}}", "{{instance}} maxerror"),
             q(f"timemon_kernel_estimated_error_seconds{{{NODE}}}", "{{instance}} esterror")],
            w=8, unit="s")
    d.panel("timeseries", "Kernel PLL correction", "timemon_kernel_offset_seconds: the "
            "correction still to apply (reference − local), not an offset.",
            [q(f"timemon_kernel_offset_seconds{{{NODE}}}", "{{instance}}")], w=8, unit="s")
    d.panel("timeseries", "Kernel frequency adjustment",
            "timemon_kernel_frequency_adjustment_ratio (1e-6 = 1 ppm).",
            [q(f"timemon_kernel_frequency_adjustment_ratio{{{NODE}}}", "{{instance}}")], w=8,
            unit="sci")
    d.row("Agent")
    d.panel("timeseries", "Event loop lag", "timemon_event_loop_lag_seconds.",
            [q(f"timemon_event_loop_lag_seconds{{{NODE}}}", "{{instance}}")], w=8, unit="s")
    d.panel("timeseries", "Store", "Store errors per second and samples waiting for the disk.",
            [q(f"rate(timemon_store_errors_total{{{NODE}}}[$__rate_interval])",
               "{{instance}} errors/s"),
             q(f"timemon_store_backlog_samples{{{NODE}}}", "{{instance}} backlog")], w=8)
    d.panel("table", "Versions", "timemon_build_info.",
            [q(f"timemon_build_info{{{NODE}}}", instant=True, table=True)], w=8, options=TABLE,
            transformations=[{"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True, "Value": True}}}])
    return d


# -- stability ----------------------------------------------------------------------------------


STATISTICS = (
    ("timemon_allan_deviation", "ADEV (overlapping)", "sci", None),
    ("timemon_modified_allan_deviation", "MDEV", "sci", None),
    ("timemon_time_deviation_seconds", "TDEV", "s", "tdev"),
    ("timemon_mtie_seconds", "MTIE", "s", "mtie"),
)


def stability() -> Dashboard:
    d = Dashboard("timemon-stability", "timemon / Stability",
                  "Live ADEV, MDEV, TDEV and MTIE against tau per source, with the ITU-T mask "
                  "configured for the source (masks.yml gives the limits).")
    _common_variables(d)
    d.variable("mask", "Mask",
               f"label_values(timemon_mask_violation{{{SRC}}}, mask)")
    d.variable("tau", "Tau (trend)", f"label_values(timemon_allan_deviation{{{SRC}}}, tau)",
               multi=True)
    log_axes = {"scaleDistribution": {"type": "log", "log": 10}, "show": "points+lines",
                "pointSize": {"fixed": 6}}
    for metric, title, unit, mask_stat in STATISTICS:
        targets = [q(f"{metric}{{{SRC}}}", instant=True, table=True)]
        if mask_stat:
            # The mask's limit at the taus the selected sources export, as one more series
            # named after the mask (masks.yml).
            targets.append(q(
                f'label_replace(timemon:mask_limit_seconds{{mask=~"$mask", '
                f'statistic="{mask_stat}"}} and on(tau) {metric}{{{SRC}}}, '
                f'"source", "$1 limit", "mask", "(.*)")', instant=True, table=True))
        d.panel("xychart", f"{title} vs tau", f"{metric} at every exported tau (log-log)"
                + (", with the selected mask's limit." if mask_stat else "."), targets,
                unit=unit, custom={"scaleDistribution": {"type": "log", "log": 10},
                                   "axisPlacement": "auto"},
                options={"mapping": "auto", "series": [], "dims": {"x": "tau"},
                         "legend": {"showLegend": True, "displayMode": "list",
                                    "placement": "bottom", "calcs": []},
                         "tooltip": {"mode": "multi", "sort": "none"}, "seriesMapping": "auto",
                         **log_axes},
                transformations=[
                    {"id": "merge", "options": {}},
                    {"id": "convertFieldType", "options": {"conversions": [
                        {"targetField": "tau", "destinationType": "number"}]}},
                    {"id": "sortBy", "options": {"sort": [{"field": "tau"}]}},
                    {"id": "partitionByValues", "options": {"fields": ["instance", "source"]}},
                ])
    d.panel("state-timeline", "Mask violations", "timemon_mask_violation: 1 when the live "
            "MTIE or TDEV exceeds the mask at any exported tau.",
            [q(f"timemon_mask_violation{{{SRC}}}",
               "{{instance}} {{source}} {{mask}} {{statistic}}")], w=24, h=6,
            mappings=NO_YES, thresholds=[(None, "green"), (1, "red")])
    d.panel("timeseries", "ADEV trend at tau", "timemon_allan_deviation over time at the "
            "selected tau.", [q(f'timemon_allan_deviation{{{SRC}, tau=~"$tau"}}',
                                "{{instance}} {{source}} τ={{tau}} s")], unit="sci",
            options=LEGEND)
    d.panel("timeseries", "MTIE trend at tau", "timemon_mtie_seconds over time at the "
            "selected tau.", [q(f'timemon_mtie_seconds{{{SRC}, tau=~"$tau"}}',
                                "{{instance}} {{source}} τ={{tau}} s")], unit="s",
            options=LEGEND)
    d.panel("table", "All statistics now", "Every statistic at every tau, one row per tau.",
            [q(f"timemon_allan_deviation{{{SRC}}}", instant=True, table=True),
             q(f"timemon_modified_allan_deviation{{{SRC}}}", instant=True, table=True),
             q(f"timemon_time_deviation_seconds{{{SRC}}}", instant=True, table=True),
             q(f"timemon_mtie_seconds{{{SRC}}}", instant=True, table=True)],
            w=24, h=10, options=TABLE, transformations=[
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {
                    "excludeByName": {"Time": True, "job": True},
                    "renameByName": {"Value #A": "ADEV", "Value #B": "MDEV",
                                     "Value #C": "TDEV (s)", "Value #D": "MTIE (s)"}}}])
    d.panel("timeseries", "Offset steps", "timemon_offset_steps_total: steps that restarted "
            "the stability window.", [q(f"timemon_offset_steps_total{{{SRC}}}",
                                        "{{instance}} {{source}}")], w=12, h=6)
    d.panel("timeseries", "Measured sample interval",
            "timemon_sample_interval_seconds: the mean interval between the window's "
            "samples, the tau0 of ADEV, MDEV and the frequency offset (polls come a little "
            "later than the configured interval; the tau labels are multiples of it).",
            [q(f"timemon_sample_interval_seconds{{{SRC}}}", "{{instance}} {{source}}")],
            unit="s", w=12, h=6)
    return d


# -- PTP ------------------------------------------------------------------------------------------


def ptp() -> Dashboard:
    d = Dashboard("timemon-ptp", "timemon / PTP (linuxptp)",
                  "ptp4l instances read over their management socket.")
    _common_variables(d, "ptp")
    legend = "{{instance}} {{source}}"
    sel = SRC + ', kind="ptp"'
    d.panel("state-timeline", "Port state", "timemon_ptp_port_state (IEEE 1588-2008 Table 8).",
            [q(f"timemon_ptp_port_state{{{sel}}}", legend)], w=24, h=5, mappings=PORT_STATES,
            thresholds=[(None, "orange"), (8, "yellow"), (9, "green"), (10, "blue")])
    d.panel("timeseries", "Offset from master", "timemon_offset_seconds (local − master).",
            [q(f"timemon_offset_seconds{{{sel}}}", legend)], unit="s", options=LEGEND)
    d.panel("timeseries", "Mean path delay", "timemon_delay_seconds: CURRENT_DATA_SET "
            "meanPathDelay (one way).", [q(f"timemon_delay_seconds{{{sel}}}", legend)],
            unit="s", options=LEGEND)
    d.panel("state-timeline", "Grandmaster present", "timemon_ptp_gm_present.",
            [q(f"timemon_ptp_gm_present{{{sel}}}", legend)], w=12, h=6, mappings=NO_YES,
            thresholds=[(None, "red"), (1, "green")])
    d.panel("table", "Grandmaster", "timemon_ptp_gm_info: the grandmaster followed now.",
            [q(f"timemon_ptp_gm_info{{{sel}}}", instant=True, table=True)], w=12, h=6,
            options=TABLE, transformations=[{"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True, "Value": True}}}])
    d.panel("timeseries", "Grandmaster changes", "increase(timemon_ptp_gm_changes_total).",
            [q(f"increase(timemon_ptp_gm_changes_total{{{sel}}}[$__rate_interval])", legend)],
            w=8, custom={"drawStyle": "bars"})
    d.panel("timeseries", "Clock class and accuracy",
            "timemon_ptp_clock_class (6 locked, 7 holdover, 248 default) and "
            "timemon_ptp_clock_accuracy (Table 6).",
            [q(f"timemon_ptp_clock_class{{{sel}}}", legend + " class"),
             q(f"timemon_ptp_clock_accuracy{{{sel}}}", legend + " accuracy")], w=8)
    d.panel("timeseries", "Steps removed and priorities",
            "timemon_ptp_steps_removed, timemon_ptp_priority1/2.",
            [q(f"timemon_ptp_steps_removed{{{sel}}}", legend + " steps removed"),
             q(f"timemon_ptp_priority1{{{sel}}}", legend + " priority1"),
             q(f"timemon_ptp_priority2{{{sel}}}", legend + " priority2")], w=8)
    d.panel("timeseries", "UTC offset", "timemon_ptp_utc_offset_seconds (TAI − UTC) and "
            "its valid flag.", [q(f"timemon_ptp_utc_offset_seconds{{{sel}}}", legend),
                                q(f"timemon_ptp_utc_offset_valid{{{sel}}}", legend + " valid")],
            w=8)
    d.panel("state-timeline", "Leap and traceability",
            "leap61, leap59, time and frequency traceable, PTP timescale.",
            [q(f"timemon_ptp_leap61{{{sel}}}", legend + " leap61"),
             q(f"timemon_ptp_leap59{{{sel}}}", legend + " leap59"),
             q(f"timemon_ptp_time_traceable{{{sel}}}", legend + " time traceable"),
             q(f"timemon_ptp_frequency_traceable{{{sel}}}", legend + " freq traceable"),
             q(f"timemon_ptp_timescale{{{sel}}}", legend + " PTP timescale")], w=16,
            mappings=NO_YES, thresholds=[(None, "blue")])
    d.panel("timeseries", "Messages", "rate(timemon_ptp_messages_total) by direction and type.",
            [q(f"sum by (instance, source, direction, message) "
               f"(rate(timemon_ptp_messages_total{{{sel}}}[$__rate_interval]))",
               legend + " {{direction}} {{message}}")], w=24, unit="pps", options=LEGEND)
    return d


# -- GNSS --------------------------------------------------------------------------------------------


def gnss() -> Dashboard:
    d = Dashboard("timemon-gnss", "timemon / GNSS receivers",
                  "GNSS receivers on a serial port or through gpsd.")
    _common_variables(d, "gnss")
    legend = "{{instance}} {{source}}"
    sel = SRC + ', kind="gnss"'
    d.panel("timeseries", "Offset (local − UTC)", "timemon_offset_seconds by quality: pps "
            "(the pulse) or serial (coarse, carries the receiver's latency).",
            [q(f"timemon_offset_seconds{{{sel}}}", legend + " {{quality}}")], w=24, unit="s",
            options=LEGEND)
    d.panel("state-timeline", "Fix", "timemon_gnss_fix_mode (0 unknown, 1 no fix, 2 2D, 3 3D).",
            [q(f"timemon_gnss_fix_mode{{{sel}}}", legend)], w=12, h=6,
            mappings=_enum({0: "unknown", 1: "no fix", 2: "2D", 3: "3D"}),
            thresholds=[(None, "red"), (2, "yellow"), (3, "green")])
    d.panel("state-timeline", "Antenna and jamming",
            "timemon_gnss_antenna_status (2 ok, 3 short, 4 open) and "
            "timemon_gnss_jamming_state (1 ok, 2 warning, 3 critical).",
            [q(f"timemon_gnss_antenna_status{{{sel}}}", legend + " antenna"),
             q(f"timemon_gnss_jamming_state{{{sel}}}", legend + " jamming")], w=12, h=6,
            thresholds=[(None, "blue")])
    d.panel("timeseries", "Satellites", "Used in the solution, and visible.",
            [q(f"timemon_gnss_satellites_used{{{sel}}}", legend + " used"),
             q(f"timemon_gnss_satellites_visible{{{sel}}}", legend + " visible")], w=8)
    d.panel("timeseries", "DOP", "timemon_gnss_pdop and timemon_gnss_tdop.",
            [q(f"timemon_gnss_pdop{{{sel}}}", legend + " PDOP"),
             q(f"timemon_gnss_tdop{{{sel}}}", legend + " TDOP")], w=8)
    d.panel("timeseries", "C/N0", "timemon_gnss_cn0_mean_dbhz of the satellites used.",
            [q(f"timemon_gnss_cn0_mean_dbhz{{{sel}}}", legend)], w=8)
    d.panel("timeseries", "Time accuracy and qErr", "timemon_gnss_time_accuracy_seconds "
            "(receiver tAcc), timemon_gnss_qerr_seconds (next pulse).",
            [q(f"timemon_gnss_time_accuracy_seconds{{{sel}}}", legend + " tAcc"),
             q(f"timemon_gnss_qerr_seconds{{{sel}}}", legend + " qErr")], w=8, unit="s")
    d.panel("timeseries", "Jamming indicator", "timemon_gnss_jamming_indicator (0–255).",
            [q(f"timemon_gnss_jamming_indicator{{{sel}}}", legend)], w=8)
    d.panel("timeseries", "Leap seconds", "timemon_gnss_leap_seconds (GPS − UTC).",
            [q(f"timemon_gnss_leap_seconds{{{sel}}}", legend)], w=8)
    d.panel("timeseries", "Survey-in", "Active, valid, mean accuracy (m) and duration (s).",
            [q(f"timemon_gnss_survey_in_active{{{sel}}}", legend + " active"),
             q(f"timemon_gnss_survey_in_valid{{{sel}}}", legend + " valid"),
             q(f"timemon_gnss_survey_in_mean_accuracy_meters{{{sel}}}", legend + " accuracy m")],
            w=12)
    d.panel("timeseries", "Receiver clock", "timemon_gnss_clock_bias_seconds and "
            "timemon_gnss_clock_drift_ratio (NAV-CLOCK).",
            [q(f"timemon_gnss_clock_bias_seconds{{{sel}}}", legend + " bias"),
             q(f"timemon_gnss_clock_drift_ratio{{{sel}}}", legend + " drift")], w=12)
    d.panel("timeseries", "Epochs and pulses", "Epochs decoded and PPS pulses per second; "
            "PPS active.", [
                q(f"rate(timemon_gnss_epochs_total{{{sel}}}[$__rate_interval])",
                  legend + " epochs/s"),
                q(f"rate(timemon_gnss_pps_pulses_total{{{sel}}}[$__rate_interval])",
                  legend + " pulses/s"),
                q(f"timemon_gnss_pps_active{{{sel}}}", legend + " PPS active")], w=24)
    return d


DASHBOARDS = {"fleet.json": fleet, "node.json": node, "stability.json": stability,
              "ptp.json": ptp, "gnss.json": gnss}


# -- masks.yml ------------------------------------------------------------------------------------


def masks_yaml() -> str:
    from timemon.analysis.masks import MASKS

    from timemon.live import tau_label

    lines = [
        "# GENERATED by dashboards/generate.py from timemon.analysis.masks: do not edit.",
        "# The ITU-T mask limits as series timemon:mask_limit_seconds{mask,statistic,tau}, for",
        "# the stability dashboard's overlay, at power-of-two taus (2^-4 ... 2^20 s) inside each",
        "# mask's range: the taus the agent exports for sources with a power-of-two interval.",
        "groups:",
        "  - name: timemon-mask-limits",
        "    interval: 1m",
        "    rules:",
    ]
    for name, mask in MASKS.items():
        for statistic in ("mtie", "tdev"):
            rng = mask.tau_range(statistic)  # type: ignore[arg-type]
            if rng is None:
                continue
            terms = []
            for k in MASK_TAU_EXPONENTS:
                tau = 2.0 ** k
                if not rng[0] < tau <= rng[1]:
                    continue
                limit = mask.limit_seconds(statistic, tau)  # type: ignore[arg-type]
                if limit != limit:  # NaN: not defined there
                    continue
                terms.append(f'label_replace(vector({limit!r}), "tau", "{tau_label(tau)}", '
                             '"", "")')
            if not terms:
                continue
            lines.append("      - record: timemon:mask_limit_seconds")
            lines.append("        expr: |")
            lines.append("          " + "\n          or ".join(terms))
            lines.append(f'        labels: {{mask: "{name}", statistic: {statistic}}}')
    return "\n".join(lines) + "\n"


def outputs() -> dict[Path, str]:
    files = {HERE / "grafana" / name: json.dumps(build().render(), indent=2,
                                                  ensure_ascii=False) + "\n"
             for name, build in DASHBOARDS.items()}
    files[HERE / "prometheus" / "masks.yml"] = masks_yaml()
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in outputs().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"generate.py: out of date: {', '.join(stale)} (run python dashboards/generate.py)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
