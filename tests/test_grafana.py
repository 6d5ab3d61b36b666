"""Grafana provisioning is consistent, every SQL panel runs through the proxy as the auditor, and every
PromQL expression of the dashboards and alert rules evaluates on a real Prometheus scraping the proxy."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import yaml

from tests.proxy_process import ROOT, ProxyProcess, free_port
from tests.test_attack_detectors import NARROW, WIDE

GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def datasource_uids() -> set[str]:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/privacylens.yaml").read_text())
    return {d["uid"] for d in provisioned["datasources"]}


def queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, datasource uid, query) for every panel target and template variable."""
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for variable in board["templating"]["list"]:
            if "datasource" in variable:  # custom variables list their values, they query nothing
                yield path.name, variable["datasource"]["uid"], variable["query"]
        for panel in board["panels"]:
            for target in panel["targets"]:
                uid = target["datasource"]["uid"]
                yield path.name, uid, target["expr"] if uid == "prometheus" else target["rawSql"]
    rules = yaml.safe_load((GRAFANA / "provisioning/alerting/privacylens.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for step in rule["data"]:
                if step["datasourceUid"] != "__expr__":
                    yield "alert rule " + rule["uid"], step["datasourceUid"], step["model"]["expr"]


def test_dashboards_reference_provisioned_datasources() -> None:
    uids = datasource_uids()
    assert uids == {"privacylens", "privacylens-analyst", "prometheus"}
    assert len(DASHBOARDS) == 5
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] and board["title"] and board["panels"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids, (path, panel["title"])
            assert panel["targets"] and panel["gridPos"]["w"] > 0
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]
    rules = yaml.safe_load((GRAFANA / "provisioning/alerting/privacylens.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            refs = {step["refId"] for step in rule["data"]}
            assert rule["condition"] in refs
            assert all(step["datasourceUid"] in uids | {"__expr__"} for step in rule["data"])
    links = json.dumps(json.loads((GRAFANA / "dashboards/privacylens-budget.json").read_text()))
    replay_uid = json.loads((GRAFANA / "dashboards/privacylens-replay.json").read_text())["uid"]
    assert f"/d/{replay_uid}/" in links  # the alerts table drills down into the replay


def grafana_sql(
    sql: str, alert_id: int = 0, window: tuple[dt.datetime, dt.datetime] | None = None, channel: str = "web"
) -> str:
    """Expand the Grafana PostgreSQL macros and variables the way Grafana does before sending."""
    now = dt.datetime.now(dt.UTC)
    low, high = window or (now - dt.timedelta(days=1), now + dt.timedelta(minutes=1))
    start, end = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (low, high))
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", sql)
    sql = sql.replace("$__timeFrom()", f"'{start}'").replace("$__timeTo()", f"'{end}'")

    def group(match: re.Match[str]) -> str:
        column, interval = match.group(1), match.group(2)
        seconds = {"m": 60, "h": 3600, "d": 86400}[interval[-1]] * int(interval[:-1])
        return f'floor(extract(epoch from {column})/{seconds})*{seconds} AS "time"'

    sql = re.sub(r"\$__timeGroupAlias\((\w+), '(\w+)'\)", group, sql)
    sql = sql.replace("${dataset:regex}", ".*").replace("$alert", str(alert_id)).replace("$channel", channel)
    assert "$_" not in sql and "${" not in sql, sql
    return sql


@pytest.fixture(scope="module")
def observed_proxy(proxy_factory: Callable[..., ProxyProcess]) -> Iterator[tuple[ProxyProcess, int]]:
    """A proxy with metrics on, after answered, re-served and refused queries and an attack alert."""
    port = free_port()
    proxy = proxy_factory(_args=["--metrics-port", str(port)], **{"budget.epsilon": 1000.0})
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET dp.epsilon = 2")
        conn.execute("SELECT department, COUNT(*) FROM employees GROUP BY department")
        conn.execute("SELECT department, COUNT(*) FROM employees GROUP BY department")
        conn.execute(WIDE)
        conn.execute(NARROW)
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT salary FROM employees")
    yield proxy, port


def test_every_sql_panel_runs_as_the_auditor(observed_proxy: tuple[ProxyProcess, int]) -> None:
    proxy, _ = observed_proxy
    with psycopg.connect(proxy.dsn("auditor"), autocommit=True) as conn:
        (alert_id,) = conn.execute("SELECT max(id) FROM privacylens.alerts").fetchone()  # type: ignore[misc]
        assert alert_id is not None
        ran = 0
        for source, uid, sql in queries():
            if uid != "privacylens":
                continue
            rows = conn.execute(grafana_sql(sql, alert_id)).fetchall()  # type: ignore[arg-type]
            assert rows, (source, sql)  # every panel has something to show after this workload
            ran += 1
    assert ran >= 9


def test_the_analyst_dashboard_refreshes_for_free(proxy_factory: Callable[..., ProxyProcess]) -> None:
    """Every panel of the analyst dashboard runs as the analyst over its own time range, with 95 %
    intervals; refreshing the whole dashboard costs nothing, sliding its window by a week costs one
    release per panel, for the days that enter."""
    import sqlite3

    board = json.loads((GRAFANA / "dashboards/privacylens-analyst.json").read_text())
    start = dt.datetime.fromisoformat(board["time"]["from"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(board["time"]["to"].replace("Z", "+00:00"))
    proxy = proxy_factory(**{"visits:budget.epsilon": 100.0})
    targets = [t["rawSql"] for panel in board["panels"] for t in panel["targets"]]
    assert all(t["datasource"]["uid"] == "privacylens-analyst" for p in board["panels"] for t in p["targets"])

    def debits() -> int:
        with sqlite3.connect(proxy.ledger) as db:
            return db.execute("SELECT COUNT(*) FROM debits").fetchone()[0]

    def refresh(window: tuple[dt.datetime, dt.datetime], channel: str = "web") -> list[list[tuple]]:
        with psycopg.connect(proxy.dsn("analyst"), autocommit=True) as conn:
            out = []
            for sql in targets:
                cursor = conn.execute(grafana_sql(sql, window=window, channel=channel))
                names = [c.name for c in cursor.description or []]
                if "time" in names:
                    assert names[0] == "time" and names[-1] == "suppressed" and names[2].endswith("_ci_low")
                out.append(cursor.fetchall())
            return out

    first = refresh((start, end))
    assert all(first), "every panel shows something"
    spent = debits()
    assert spent == 2  # two DP panels; the suppressed-days table re-serves the visits panel's days
    assert refresh((start, end)) == first and debits() == spent  # a refresh is free
    slid = refresh((start + dt.timedelta(days=7), end + dt.timedelta(days=7)))
    assert debits() == spent + 2  # 7 new days in one release for the daily panel, a week for the weekly
    days = {row[0]: row for row in first[0]}
    assert all(days[row[0]] == row for row in slid[0] if row[0] in days)  # released days never change


def test_the_activity_dashboard_shows_dau_and_mau_bands_and_refreshes_for_free(
    proxy_factory: Callable[..., ProxyProcess],
) -> None:
    """Both panels over the dashboard's own range, after the demo's kind of events are COPY'd in:
    a band around every value, the first refresh charges each day once, the next charges nothing."""
    import sqlite3

    from demo.activity import events

    board = json.loads((GRAFANA / "dashboards/privacylens-activity.json").read_text())
    start = dt.datetime.fromisoformat(board["time"]["from"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(board["time"]["to"].replace("Z", "+00:00"))
    proxy = proxy_factory()
    with (
        psycopg.connect(proxy.dsn("ingest"), autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy("COPY activity (user_id, ts, op) FROM STDIN") as copy,
    ):
        for row in events(61, 800, end.date()):
            copy.write_row(row)

    def refresh() -> list[list[tuple]]:
        with psycopg.connect(proxy.dsn("analyst"), autocommit=True) as conn:
            out = []
            for panel in board["panels"]:
                cursor = conn.execute(grafana_sql(panel["targets"][0]["rawSql"], window=(start, end)))
                assert [c.name for c in cursor.description or []][0] == "time"
                rows = cursor.fetchall()
                assert len(rows) == 61 and all(low <= value <= high for _, value, low, high in rows)
                out.append(rows)
            return out

    def debits() -> int:
        with sqlite3.connect(proxy.ledger) as db:
            return db.execute("SELECT COUNT(*) FROM debits").fetchone()[0]

    first = refresh()
    assert debits() == 2 * 61  # every day once per panel
    assert refresh() == first and debits() == 2 * 61


@pytest.fixture(scope="module")
def prometheus(
    observed_proxy: tuple[ProxyProcess, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("PRIVACYLENS_REQUIRE_CLIENTS"):
            raise AssertionError("prometheus is not installed (make clients installs it)")
        pytest.skip("prometheus is not installed (make clients installs it)")
    _, metrics_port = observed_proxy
    config = yaml.safe_load((ROOT / "configs/prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{metrics_port}"]
    directory = tmp_path_factory.mktemp("prometheus")
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (directory / "log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until a few scrapes are in (rate() needs two)
            try:
                up = instant(url, "count_over_time(up[1m])")
                if up and float(up[0]["value"][1]) >= 5:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError((directory / "log").read_text()[-2000:])
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def instant(url: str, expr: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def test_every_promql_expression_evaluates(prometheus: str) -> None:
    checked = 0
    for source, uid, expr in queries():
        if uid != "prometheus":
            continue
        resolved = expr.replace("$__rate_interval", "1m").replace('"$dataset"', '".*"')
        assert "$" not in resolved, resolved
        assert instant(prometheus, resolved), (source, expr)  # a series for each, after the workload
        checked += 1
    assert checked >= 10
    ratio = instant(prometheus, 'privacylens_budget_remaining_ratio{dataset="employees",user="analyst"}')
    assert 0.99 < float(ratio[0]["value"][1]) < 1.0
    new_alerts = instant(prometheus, 'privacylens_alerts_total{dataset="employees",kind="differencing"}')
    assert float(new_alerts[0]["value"][1]) == 1
