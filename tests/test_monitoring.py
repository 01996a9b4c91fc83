"""deploy/monitoring: the alert rules, the Prometheus example config and the Grafana dashboard.

Checked with ``promtool`` (rules, config, the rules' unit tests, and every dashboard
expression parsed as PromQL), and against the daemon's real exposition: the registry is
built in-process the way ``mfad serve`` builds it (``open_core``, ``DaemonGauges``, the
transports' services, none started), and every metric, label and known label value the
rules and the dashboard use must be one it exports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from peer_tools import need_tool
from mfad.api.metrics import PrometheusGrpcMetrics
from mfad.app import daemon_registry, open_core, transport_services
from mfad.config import Config
from mfad.core.limits import Block
from mfad.core.model import Method
from mfad.core.outbox import IssueOutcome
from mfad.core.verification import Reason
from mfad.mail.metrics import EmailPrometheusMetrics
from mfad.observability.http import HealthState
from mfad.observability.metrics import CorePrometheusMetrics, DaemonGauges, StorePrometheusMetrics
from mfad.radius.metrics import DropReason, PrometheusRadiusMetrics

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "mfad-alerts.yml"
DASHBOARD = MONITORING / "mfad-dashboard.json"

#: Series Prometheus itself attaches or makes, not the daemon.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}
#: The sample names prometheus-client renders for each family type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}
#: Grafana's variables, replaced by what a query would carry.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m", "$job": "mfad",
                     "$instance": ".*"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan"}
#: Label values the code defines (where a family's samples do not list them all).
KNOWN_VALUES: dict[tuple[str, str], set[str]] = {
    ("mfad_radius_packets_dropped", "reason"): {r.value for r in DropReason},
    ("mfad_grpc_requests", "code"): {c.name for c in grpc.StatusCode},
    ("mfad_rate_limited", "scope"): {b.value for b in Block} | {f"email_{o.value}" for o in IssueOutcome},
    ("mfad_verifications", "result"): {"accepted", "refused", "locked"} | {r.value for r in Reason},
    ("mfad_verifications", "method"): {m.value for m in Method} | {"password"},
    ("mfad_webauthn_clone_warnings", "method"): {m.value for m in Method},
    # mfad.core.approval's results (docs/approval.md)
    ("mfad_approvals", "result"): {"requested", "approved", "wrong_number", "denied", "reported", "used", "refused"},
}


@dataclasses.dataclass
class Family:
    name: str
    type: str
    labels: set[str] = dataclasses.field(default_factory=set)
    values: dict[str, set[str]] = dataclasses.field(default_factory=dict)


def _promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    promtool = need_tool("promtool", "prometheus")
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=30)


# --- the daemon's exposition -----------------------------------------------------------------------

async def _daemon_registry(tmp: Path) -> CollectorRegistry:
    """What ``mfad.app.serve`` registers, on a throw-away SQLite store; nothing listens."""
    config = Config()
    config = dataclasses.replace(
        config,
        storage=dataclasses.replace(config.storage, url=f"sqlite:///{tmp}/mfad.db"),
        secrets=dataclasses.replace(config.secrets, key_file=str(tmp / "secrets.key")),
    )
    registry = daemon_registry()
    async with open_core(config, registry) as mfa:
        DaemonGauges(registry, mfa.store.engine)
        transport_services(mfa, config, registry, HealthState(), reuse_port=False)
    return registry


def _touched_registry() -> CollectorRegistry:
    """The same metric classes with every labelled series touched once, for their label names."""
    registry = CollectorRegistry()
    core = CorePrometheusMetrics(registry)
    core.verification("radius", "totp", "accepted", 0.01)
    core.clone_warning("passkey")
    core.approval("reported")
    core.registration("passkey", "ok")
    core.lockout()
    core.rate_limited("locked")
    StorePrometheusMetrics(registry).store_operation("get_user", 0.001, False)
    email = EmailPrometheusMetrics(registry)
    email.queued("signin")
    email.finished("sent", 0.1)
    DaemonGauges(registry, "sqlite")
    PrometheusGrpcMetrics(registry).observe_call("mfad.v1.Authentication/VerifyCode", "OK", 0.01)
    PrometheusRadiusMetrics(registry).request_latency(0.01)
    return registry


def _families(registry: CollectorRegistry, into: dict[str, Family]) -> None:
    for metric in registry.collect():
        family = into.setdefault(metric.name, Family(metric.name, metric.type))
        for sample in metric.samples:
            for label, value in sample.labels.items():
                if label not in ("le", "quantile"):
                    family.labels.add(label)
                    family.values.setdefault(label, set()).add(value)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Family]:
    """Series name (as scraped: ``_total``, ``_bucket`` …) → its family, from the daemon's registry."""
    daemon: dict[str, Family] = {}
    _families(asyncio.run(_daemon_registry(tmp_path_factory.mktemp("mfad"))), daemon)
    touched: dict[str, Family] = {}
    _families(_touched_registry(), touched)
    series: dict[str, Family] = {}
    for name, family in daemon.items():
        if name in touched:  # label names of series the daemon creates only when first used
            family.labels |= touched[name].labels
        for suffix in SUFFIXES[family.type]:
            series[name + suffix] = family
    return series


# --- what the rules and the dashboard use ------------------------------------------------------------

@dataclasses.dataclass
class Rule:
    name: str
    text: str
    expr: str


def _rules() -> list[Rule]:
    """The alerting rules of mfad-alerts.yml: each ``- alert:`` block and its ``expr`` (one line or a
    ``|`` block). A small reader for this file's layout; the rule count is checked against promtool's."""
    lines = RULES.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"\s*- alert:", line)]
    rules = []
    for start, end in zip(starts, [*starts[1:], len(lines)], strict=True):
        block = lines[start:end]
        name = block[0].split("alert:", 1)[1].strip()
        (at,) = [i for i, line in enumerate(block) if re.match(r"\s*expr:", line)]
        indent = len(block[at]) - len(block[at].lstrip())
        value = block[at].split("expr:", 1)[1].strip()
        if value in ("|", "|-", ">", ">-"):
            body = []
            for line in block[at + 1:]:
                if line.strip() and len(line) - len(line.lstrip()) <= indent:
                    break
                body.append(line.strip())
            value = " ".join(part for part in body if part)
        rules.append(Rule(name, "\n".join(block), value))
    return rules


def _dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _dashboard_panels(panel.get("panels", []))


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _dashboard_exprs() -> list[str]:
    dashboard = _dashboard()
    exprs = [target["expr"] for panel in _dashboard_panels(dashboard["panels"])
             for target in panel.get("targets", []) if target.get("expr")]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            # label_values(selector, label): the selector and a by-clause on the label say the same
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
            assert match, f"variable {variable['name']}: unexpected query {query!r}"
            exprs.append(f"count by ({match[2]}) ({match[1]})")
    return exprs


def _substitute(expr: str) -> str:
    for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
    return expr


@dataclasses.dataclass
class Uses:
    names: set[str]
    selectors: list[tuple[str, str, str, str]]  # metric, label, operator, value
    grouping: set[str]


def _uses(expr: str) -> Uses:
    """Metric names, label matchers and grouping labels of a PromQL expression (enough of PromQL
    for these files: selectors, functions, aggregations with by/without, binary operators)."""
    expr = _substitute(expr)
    selectors: list[tuple[str, str, str, str]] = []
    names: set[str] = set()

    def selector(match: re.Match[str]) -> str:
        name = match[1] or ""
        for label, op, value in re.findall(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', match[2]):
            selectors.append((name, label, op, value))
        return f" {name} "

    expr = re.sub(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}", selector, expr)
    grouping: set[str] = set()

    def group(match: re.Match[str]) -> str:
        grouping.update(label.strip() for label in match[2].split(",") if label.strip())
        return " "

    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", group, expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\boffset\s+\w+", " ", expr)
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        if match[2] is None and match[1] not in KEYWORDS:
            names.add(match[1])
    names |= {name for name, *_ in selectors if name}
    return Uses(names, selectors, grouping)


def _all_exprs() -> list[tuple[str, str]]:
    return [(f"rule {rule.name}", rule.expr) for rule in _rules()] + \
           [(f"dashboard expr {i}", expr) for i, expr in enumerate(_dashboard_exprs())]


# --- tests ------------------------------------------------------------------------------------------

def test_promtool_check_rules() -> None:
    run = _promtool("check", "rules", RULES.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in run.stdout, (run.stdout, [r.name for r in _rules()])


def test_promtool_check_config() -> None:
    run = _promtool("check", "config", "prometheus.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "mfad-alerts.yml" in run.stdout


def test_promtool_rule_unit_tests() -> None:
    run = _promtool("test", "rules", "mfad-alerts.test.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", (MONITORING / "mfad-alerts.test.yml").read_text()))
    assert {"MfadDown", "MfadWebauthnCloneWarning"} <= tested


def test_every_rule_has_severity_summary_description() -> None:
    rules = _rules()
    assert len({rule.name for rule in rules}) == len(rules), "alert names must be unique"
    for rule in rules:
        assert re.search(r"^\s+severity: (critical|warning|info)$", rule.text, re.M), rule.name
        assert re.search(r"^\s+summary: \S", rule.text, re.M), rule.name
        assert re.search(r"^\s+description: \S", rule.text, re.M), rule.name
        assert rule.name.startswith("Mfad"), rule.name


def test_dashboard_is_grafana_json_with_datasource_and_instance_variables() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["instance"]["type"] == "query"
    panels = list(_dashboard_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    rows = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert rows == ["Overview", "Verifications", "Lock-outs and rate limits", "RADIUS", "gRPC", "Store",
                    "Email outbox", "WebAuthn", "Process"]
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])


def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    """Each expression (Grafana's variables filled in) as a recording rule for promtool's parser."""
    rules = [{"record": f"dashboard:expr_{i}", "expr": _substitute(expr)}
             for i, expr in enumerate(_dashboard_exprs())]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    run = _promtool("check", "rules", path.name, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_metric_names_are_exported(exported: dict[str, Family]) -> None:
    missing = []
    for where, expr in _all_exprs():
        for name in _uses(expr).names:
            if name not in exported and name not in PROMETHEUS_SERIES:
                missing.append(f"{where}: {name}")
    assert not missing, "not in the daemon's exposition:\n" + "\n".join(missing)
    used = {name for _, expr in _all_exprs() for name in _uses(expr).names}
    # The sections DESIGN.md §3 lists are all on the dashboard or in the rules.
    for family in ("mfad_verifications", "mfad_verification_duration_seconds", "mfad_lockouts",
                   "mfad_rate_limited", "mfad_radius_packets_received", "mfad_radius_packets_dropped",
                   "mfad_radius_request_duration_seconds", "mfad_grpc_requests",
                   "mfad_grpc_request_duration_seconds", "mfad_store_operation_duration_seconds",
                   "mfad_store_errors", "mfad_email_outbox_depth", "mfad_email_outbox_oldest_age_seconds",
                   "mfad_email_sent", "mfad_email_failed", "mfad_webauthn_clone_warnings", "mfad_build",
                   "mfad_store_up", "mfad_challenges_open"):
        assert any(exported.get(name) and exported[name].name == family for name in used), family


def test_labels_and_values_are_exported(exported: dict[str, Family]) -> None:
    problems = []
    for where, expr in _all_exprs():
        uses = _uses(expr)
        families = [exported[name] for name in uses.names if name in exported]
        known = TARGET_LABELS | {label for family in families for label in family.labels}
        if any(name.endswith("_bucket") for name in uses.names):
            known.add("le")
        for label in uses.grouping:
            if label not in known:
                problems.append(f"{where}: grouping label {label!r} is on none of {sorted(uses.names)}")
        for name, label, op, value in uses.selectors:
            family = exported.get(name)
            if family is None:
                continue
            if label not in family.labels | TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label!r}")
                continue
            allowed = KNOWN_VALUES.get((family.name, label)) or family.values.get(label)
            if allowed is None or label in TARGET_LABELS:
                continue
            if op in ("=", "!="):
                values = [value]
            elif re.fullmatch(r"[\w-]+(\|[\w-]+)*", value):
                values = value.split("|")
            else:
                continue
            for v in values:
                if v not in allowed:
                    problems.append(f"{where}: {name}{{{label}={v!r}}} is never exported")
    assert not problems, "\n".join(problems)


def test_counter_panels_show_zero_before_the_first_event() -> None:
    """A sum of a labelled counter's rates has no series until its first event: such a panel
    says 0 (``or vector(0)``), not "No data", which reads as a broken scrape."""
    empty = [expr for expr in _dashboard_exprs()
             if expr.lstrip("(").startswith("sum") and ("rate(" in expr or "increase(" in expr)
             and "histogram_quantile" not in expr
             and not expr.rstrip().endswith("or vector(0)")]
    assert not empty, empty


def test_the_daemon_exports_process_and_python_collectors(exported: dict[str, Family]) -> None:
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "python_info", "python_gc_collections_total"):
        assert name in exported, name
