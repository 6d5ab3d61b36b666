"""DAU and MAU by a public segment column (platform): counts equal an independent count under the
per-person cap, one person moves at most `per_person` of them by 1, and through a real proxy the
vector of a day is released once, charged once and re-served; bad values and columns are refused."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from stores.activity import ActivityStore
from stores.activity_input import BadEvent, Batch
from tests.proxy_process import ProxyProcess

DOMAIN = {"platform": ("ios", "android", "web")}
DAY = dt.timedelta(days=1)
Row = tuple[str, str, str, str | None]


def workload(seed: int, people: int = 300) -> list[Row]:
    rng = random.Random(seed)  # test data, not noise
    rows: list[Row] = []
    for k in range(20):
        day = dt.date(2025, 10, 1) + k * DAY
        for person in rng.sample(range(people), 80):
            for _ in range(rng.randint(1, 3)):
                platform = rng.choice([*DOMAIN["platform"], None])
                rows.append(
                    (f"p{person}", f"{day} {rng.randrange(24):02d}:{rng.randrange(60):02d}:00", "+", platform)
                )
    return rows


def truth(rows: list[Row], end: dt.date, window: int, cap: int) -> dict[str, int]:
    """Per platform: people whose `cap` earliest platforms in the window (ties by name) include it."""
    first = end - (window - 1) * DAY
    earliest: dict[tuple[str, str], str] = {}
    for user, ts, _, platform in rows:
        if platform and first <= dt.date.fromisoformat(ts[:10]) <= end:
            key = (user, platform)
            earliest[key] = min(earliest.get(key, ts), ts)
    counts = dict.fromkeys(DOMAIN["platform"], 0)
    by_user: dict[str, list[tuple[str, str]]] = {}
    for (user, platform), ts in earliest.items():
        by_user.setdefault(user, []).append((ts, platform))
    for choices in by_user.values():
        for _, platform in sorted(choices)[:cap]:
            counts[platform] += 1
    return counts


def store_with(tmp_path: Path, rows: list[Row], name: str = "a") -> ActivityStore:
    store = ActivityStore(str(tmp_path / "ledger.sqlite"), tmp_path / "events")
    store.ingest(
        name, Batch.of_rows(rows, segments=["platform"]), now=dt.datetime(2025, 12, 1), domains=DOMAIN
    )
    return store


@pytest.mark.parametrize("cap", [1, 2])
def test_counts_by_segment_equal_an_independent_count_under_the_cap(tmp_path: Path, cap: int) -> None:
    rows = workload(4)
    store = store_with(tmp_path, rows)
    ends = [dt.date(2025, 10, 1) + k * DAY for k in range(20)]
    for window in (1, 7):
        counted = store.segment_users("a", "platform", cap, ends, window)
        for end in ends:
            want = {k: v for k, v in truth(rows, end, window, cap).items() if v}
            assert counted[end] == want, (window, end)
    store.close()


def test_one_person_moves_at_most_per_person_counts_by_one(tmp_path: Path) -> None:
    rows = workload(6, people=120)
    ends = [dt.date(2025, 10, 1) + k * DAY for k in range(20)]
    for cap in (1, 2):
        with_all = store_with(tmp_path / f"all{cap}", rows)
        for person in ("p3", "p50", "p77"):
            without = store_with(tmp_path / f"{person}{cap}", [r for r in rows if r[0] != person])
            for window in (1, 7):
                a = with_all.segment_users("a", "platform", cap, ends, window)
                b = without.segment_users("a", "platform", cap, ends, window)
                for end in ends:
                    moved = [a[end].get(v, 0) - b[end].get(v, 0) for v in DOMAIN["platform"]]
                    assert all(m in (0, 1) for m in moved) and sum(moved) <= cap, (person, window, end)
            without.close()
        with_all.close()


def test_a_value_outside_the_domain_refuses_its_batch(tmp_path: Path) -> None:
    store = ActivityStore(str(tmp_path / "ledger.sqlite"), tmp_path / "events")
    batch = Batch.of_rows(
        [("u1", "2025-10-01 08:00", "+", "ios"), ("u2", "2025-10-01 08:00", "+", "tv")], segments=["platform"]
    )
    with pytest.raises(BadEvent, match="line 2: platform 'tv' is not one of its values"):
        store.ingest("a", batch, now=dt.datetime(2025, 12, 1), domains=DOMAIN)
    assert not list((tmp_path / "events").rglob("*.parquet"))
    store.close()


@pytest.fixture(scope="module")
def proxy(proxy_factory: Callable[..., ProxyProcess]) -> ProxyProcess:
    return proxy_factory(**{"activity:dau.epsilon": 0.3})


def test_dau_by_platform_over_the_wire_is_released_once_and_re_served(proxy: ProxyProcess) -> None:
    rows = [(f"s{i}", "2025-04-10 10:00:00+00", "+", ("ios", "android", "web")[i % 3]) for i in range(300)]
    rows += [
        (f"s{i}", "2025-04-10 11:00:00+00", "+", "web") for i in range(0, 300, 3)
    ]  # ios people on web too
    with psycopg.connect(proxy.dsn("ingest"), autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy("COPY activity (user_id, ts, op, platform) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        csv = "COPY activity (user_id, ts, platform) FROM STDIN WITH (FORMAT csv)"
        with pytest.raises(psycopg.errors.BadCopyFileFormat) as bad, cur.copy(csv) as copy:
            copy.write(b"x1,2025-04-11 10:00:00+00,ios\nx2,2025-04-11 10:00:00+00,tv\n")
        assert "line 2" in bad.value.diag.message_primary
        with pytest.raises(psycopg.errors.UndefinedColumn) as unknown:
            cur.execute(
                "INSERT INTO activity (user_id, ts, country) VALUES ('x', '2025-04-11 10:00+00', 'fr')"
            )
        assert "platform" in unknown.value.diag.message_hint
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        sql = (
            "SELECT segment, dau, dau_ci_low, dau_ci_high, epsilon, status "
            "FROM privacylens.dau_by('activity', 'platform', DATE '2025-04-10')"
        )
        first = conn.execute(sql).fetchall()
        assert [r[0] for r in first] == ["ios", "android", "web"]
        expected = {"ios": 100, "android": 100, "web": 200}  # per_person 2: ios people count on web too
        for segment, value, low, high, _, status in first:
            assert abs(value - expected[segment]) < 60 and low <= value <= high and status == "released"
        assert first[0][4] == pytest.approx(0.3) and first[1][4] == first[2][4] == 0.0  # one charge
        again = conn.execute(sql).fetchall()
        assert [r[1] for r in again] == [r[1] for r in first] and {r[5] for r in again} == {"re-served"}
        mau = conn.execute(
            "SELECT segment, mau FROM privacylens.mau_by('activity', 'platform', DATE '2025-04-12', 7)"
        ).fetchall()
        assert [r[0] for r in mau] == ["ios", "android", "web"]
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("SELECT * FROM privacylens.dau_by('activity', 'country', DATE '2025-04-10')")


def test_segment_columns_are_read_from_text_csv_and_json_lines() -> None:
    from stores.activity_input import read_batch

    text = read_batch(
        "u1\t2025-10-01\t+\tios\nu2\t2025-10-01\t+\t\n", "text", ("user_id", "ts", "op", "platform")
    )
    csv = read_batch(
        "platform,user_id,ts\nweb,u1,2025-10-01\n", "csv", ("platform", "user_id", "ts"), header=True
    )
    jsonl = read_batch(
        '{"user_id": "u1", "ts": "2025-10-01", "platform": "android"}\n',
        "jsonl",
        ("user_id", "ts", "op", "platform"),
    )
    assert list(text.segments["platform"]) == ["ios", None]  # empty is no segment
    assert list(csv.segments["platform"]) == ["web"] and list(csv.op) == ["+"]
    assert list(jsonl.segments["platform"]) == ["android"]
