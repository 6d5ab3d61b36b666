"""Prometheus metrics from a real proxy, scraped over HTTP."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable

import psycopg
import pytest

from tests.proxy_process import ProxyProcess, free_port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


def test_metrics_follow_queries(proxy_factory: Callable[..., ProxyProcess]) -> None:
    port = free_port()
    proxy = proxy_factory(_args=["--metrics-port", str(port)], **{"budget.epsilon": 5.0})
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SELECT department, COUNT(*) FROM employees GROUP BY 1")
        conn.execute("SELECT department, count(*) FROM employees GROUP BY department")  # answered again
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT salary FROM employees")
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT COUNT(*) FROM made_up_table_name")
        text = scrape(port)
        assert value(text, "privacylens_connections") == 1
    assert value(text, "privacylens_queries_total", dataset="employees", outcome="answered") == 1
    assert value(text, "privacylens_queries_total", dataset="employees", outcome="answered_again") == 1
    assert (
        value(text, "privacylens_queries_total", dataset="employees", outcome="refused", sqlstate="42501")
        == 1
    )
    assert value(text, "privacylens_queries_total", dataset="-", outcome="refused", sqlstate="42501") == 1
    assert "made_up_table_name" not in text
    assert value(text, "privacylens_epsilon_spent_total", dataset="employees") == pytest.approx(0.5)
    assert value(text, "privacylens_budget_remaining", dataset="employees", user="analyst") == pytest.approx(
        4.5
    )
    assert value(text, "privacylens_groups_released_total", dataset="employees", suppressed="false") >= 9
    for phase in ("check", "engine", "noise", "charge"):  # the fresh answer's own phases, once
        assert value(text, "privacylens_query_phase_seconds_count", phase=phase) == 1, phase
    for phase in ("plan", "send"):  # every answer, the re-served one too
        assert value(text, "privacylens_query_phase_seconds_count", phase=phase) >= 2, phase
    for phase in ("present", "detect"):
        assert value(text, "privacylens_query_phase_seconds_count", phase=phase) >= 1, phase


def test_metrics_need_the_bearer_token_when_one_is_set(proxy_factory: Callable[..., ProxyProcess]) -> None:
    port = free_port()
    proxy_factory(_args=["--metrics-port", str(port), "--metrics-token", "scrape-me-0123456789"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(port)
    refused.value.close()
    assert refused.value.code == 401
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 401
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert "privacylens_connections" in response.read().decode()


def test_a_repeated_query_text_is_parsed_and_planned_once(proxy_factory: Callable[..., ProxyProcess]) -> None:
    port = free_port()
    proxy = proxy_factory(_args=["--metrics-port", str(port)])
    sql = "SELECT department, COUNT(*) FROM employees GROUP BY department"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        first = conn.execute(sql).fetchall()
        for _ in range(3):
            assert conn.execute(sql).fetchall() == first  # re-served, from the same plan
    with psycopg.connect(proxy.dsn(), autocommit=True) as other:  # another session shares it
        assert other.execute(sql).fetchall() == first
    text = scrape(port)
    assert value(text, "privacylens_statement_cache_total", outcome="hit") >= 4
