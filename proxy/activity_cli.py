"""The `privacylens` commands of activity datasets: ingest, erase, flush-deletes, generate-synthetic,
dau, mau, estimate, rotate-salt, reset-budget. They act on the same ledger and event folder as the
server (settings `ledger`, `activity_store`, `policy`) and are safe to run beside it."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
import time
from pathlib import Path

from proxy.settings import ProxySettings


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def where(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--policy", default=None, help="policy file (default: the serve setting)")
        parser.add_argument("--ledger", default=None, help="ledger file or URL (default: the serve setting)")
        parser.add_argument("--activity-store", dest="activity_store", default=None)

    ingest = commands.add_parser("ingest", help="store activity events from a CSV or JSON-lines file")
    ingest.add_argument("--dataset", required=True)
    ingest.add_argument("--from", dest="source", required=True, help="events.csv (user_id,ts,op) or .jsonl")
    ingest.add_argument("--if-empty", action="store_true", help="skip if the dataset holds events already")
    where(ingest)

    erase = commands.add_parser(
        "erase", help="record an erasure request (GDPR): the person leaves later releases"
    )
    erase.add_argument("--dataset", required=True)
    erase.add_argument("--user-id", required=True)
    where(erase)

    flush = commands.add_parser("flush-deletes", help="purge erased events from storage now")
    flush.add_argument("--dataset", required=True)
    where(flush)

    synthetic = commands.add_parser(
        "generate-synthetic", help="write seeded synthetic activity events as CSV"
    )
    synthetic.add_argument("--days", type=int, required=True)
    synthetic.add_argument("--users", type=int, required=True)
    synthetic.add_argument("--erasure-rate", type=float, default=0.02)
    synthetic.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2025, 10, 31))
    synthetic.add_argument("--seed", type=int, default=7)
    synthetic.add_argument("--platforms", action="store_true", help="add a platform column (ios/android/web)")
    synthetic.add_argument("--out", default="-", help="file to write (default: standard output)")

    for metric in ("dau", "mau"):
        release = commands.add_parser(metric, help=f"release (or re-serve) {metric.upper()} values")
        release.add_argument("--dataset", required=True)
        if metric == "dau":
            release.add_argument("--day", type=dt.date.fromisoformat, required=True)
        else:
            release.add_argument("--end", type=dt.date.fromisoformat, required=True)
            release.add_argument("--window", type=int, default=None)
        release.add_argument("--to", type=dt.date.fromisoformat, default=None, help="last day of a series")
        release.add_argument("--user", default=f"cli:{getpass.getuser()}", help="who asks, for the audit log")
        where(release)

    estimate = commands.add_parser(
        "estimate", help="admin's distinct count of active people, exact or by a sketch (not a DP release)"
    )
    estimate.add_argument("--dataset", required=True)
    estimate.add_argument("--day", type=dt.date.fromisoformat, required=True, help="the last day counted")
    estimate.add_argument("--window", type=int, default=1, help="days counted, ending on --day (default 1)")
    estimate.add_argument("--backend", choices=("exact", "kmv", "theta"), default="exact")
    estimate.add_argument("--k", type=int, default=4096, help="sketch size (theta: a power of two)")
    where(estimate)

    rotate = commands.add_parser("rotate-salt", help="start a new pseudonym key on a future day (audited)")
    rotate.add_argument("--dataset", required=True)
    rotate.add_argument(
        "--effective", type=dt.date.fromisoformat, required=True, help="first day of the new key"
    )
    where(rotate)

    reset = commands.add_parser(
        "reset-budget", help="forget a month's DAU or MAU spending (more privacy loss; audited)"
    )
    reset.add_argument("--dataset", required=True)
    reset.add_argument("--metric", choices=("dau", "mau"), required=True)
    reset.add_argument("--month", required=True, help="YYYY-MM")
    reset.add_argument("--by", default=f"cli:{getpass.getuser()}")
    where(reset)


COMMANDS = frozenset(
    {
        "ingest",
        "erase",
        "flush-deletes",
        "generate-synthetic",
        "dau",
        "mau",
        "estimate",
        "rotate-salt",
        "reset-budget",
    }
)


def run(args: argparse.Namespace) -> int:
    if args.command == "generate-synthetic":
        from demo.activity import events

        out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
        try:
            out.write("user_id,ts,op,platform\n" if args.platforms else "user_id,ts,op\n")
            n = 0
            for row in events(args.days, args.users, args.end, args.erasure_rate, args.seed, args.platforms):
                out.write(",".join(row) + "\n")
                n += 1
        finally:
            if out is not sys.stdout:
                out.close()
        print(f"wrote {n} events", file=sys.stderr)
        return 0
    from pgerrors import PgError
    from proxy.activity_query import ActivityService
    from rewriter.policy import PolicyError, load_policy
    from stores.database import open_database

    settings = ProxySettings.resolve(
        {"policy": args.policy, "ledger": args.ledger, "activity_store": args.activity_store}
    )
    try:
        policy = load_policy(settings.policy)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 2
    service = ActivityService(policy, open_database(settings.ledger), settings.activity_store)
    try:
        service.spec(args.dataset)
        return _run(service, args)
    except PgError as err:
        print(f"ERROR: {err.message}" + (f"\nHINT: {err.hint}" if err.hint else ""), file=sys.stderr)
        return 1


def _run(service, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    dataset = args.dataset
    actor = f"cli:{getpass.getuser()}"
    if args.command == "ingest":
        if args.if_empty and service.store.segments.epochs(dataset):
            print(f"{dataset} holds events already: skipped")
            return 0
        path = Path(args.source)
        fmt = "jsonl" if path.suffix == ".jsonl" else "csv"
        text = path.read_text(encoding="utf-8")
        first_line = text.split("\n", 1)[0]
        header = fmt == "csv" and first_line.replace(" ", "").lower().startswith("user_id,")
        if header:
            columns = tuple(c.strip().lower() for c in first_line.split(","))
        elif fmt == "jsonl":  # keys by name: the dataset's segment columns too
            columns = ("user_id", "ts", "op", *service.spec(dataset).segments)
        else:
            columns = ("user_id", "ts", "op")
        done = service.ingest_text(dataset, text, fmt, columns, header, "admin", actor)
        print(f"stored {done.events} events and {done.erasures} erasures in {dataset}")
        return 0
    if args.command == "erase":
        service.erase(dataset, args.user_id, "admin", actor)
        print(f"erasure recorded: {args.user_id} leaves every later release of {dataset}")
        return 0
    if args.command == "flush-deletes":
        flushed = service.flush_deletes(dataset)
        print(
            f"purged {flushed.purged} erased events in {flushed.epochs} months; "
            f"{flushed.segments} segments left"
        )
        return 0
    if args.command == "estimate":
        first = args.day - dt.timedelta(days=max(args.window, 1) - 1)
        started = time.perf_counter()
        found = service.store.estimate(dataset, first, args.day, args.backend, args.k)
        took = time.perf_counter() - started
        print(
            f"{found.backend}: {found.value:.0f} people active {first}..{args.day} "
            f"(about {found.low:.0f} to {found.high:.0f}; {found.retained} hashes held; {took:.2f} s)"
        )
        print("internal estimate, not differentially private: never publish it (releases: dau, mau)")
        return 0
    if args.command == "rotate-salt":
        made = service.rotate(dataset, args.effective, actor)
        print(f"events of {dataset} from {made.effective} on get a new pseudonym key")
        if made.counts_from > made.effective:
            print(
                f"windows ending before {made.counts_from} reach back to events stored under the old key: "
                "they keep being counted (and written) under it, so nobody counts twice"
            )
        return 0
    if args.command == "reset-budget":
        year, month = (int(p) for p in args.month.split("-"))
        spent = service.releases.reset(dataset, args.metric, year * 100 + month, args.by)
        print(
            f"{args.metric.upper()} spending of {dataset} for {args.month} reset (was ε {spent:.4g}): "
            "this is more privacy loss, recorded in the audit log"
        )
        return 0
    first = args.day if args.command == "dau" else args.end
    rows = service.release_rows(
        dataset, args.command, first, args.to or first, getattr(args, "window", None), args.user
    )
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))
    return 0
