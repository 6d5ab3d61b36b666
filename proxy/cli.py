"""`privacylens` command line: serve, validate, demo-data, make-cert, issue-token, verify, clear-alert,
hash-password."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from pathlib import Path

from proxy import activity_cli
from proxy.settings import SETTINGS, ProxySettings
from rewriter.roles import ROLES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="privacylens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the PostgreSQL-wire DP gateway")
    for setting in SETTINGS:
        serve.add_argument(
            f"--{setting.name.replace('_', '-')}",
            dest=setting.name,
            default=None,
            help=f"{setting.help} (default {setting.default}; env PRIVACYLENS_{setting.name.upper()})",
        )

    validate = commands.add_parser(
        "validate", help="check a policy file: its schema, and its bounds against the data (admins only)"
    )
    validate.add_argument("--policy", default="policies/demo.yaml")

    demo = commands.add_parser("demo-data", help="write the seeded demo tables (employees, visits)")
    demo.add_argument("--out-dir", default="data")
    demo.add_argument("--force", action="store_true", help="rewrite even if the file exists")

    cert = commands.add_parser("make-cert", help="write a self-signed TLS certificate for development")
    cert.add_argument("--out-dir", default="var/tls")
    cert.add_argument("--hostname", action="append", default=None, help="DNS name (repeatable)")

    token = commands.add_parser("issue-token", help="print a development JWT (HS256, from jwt_secret)")
    token.add_argument("--user", required=True, help="the token's subject: the user name to log in as")
    token.add_argument("--role", default="analyst", choices=sorted(ROLES))
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")

    verify = commands.add_parser(
        "verify", help="check the audit log's hash chain for changed or removed rows"
    )
    verify.add_argument("--ledger", default="var/ledger.sqlite")

    clear = commands.add_parser(
        "clear-alert", help="lift the throttle or refusal of an attack alert (the alert stays on record)"
    )
    clear.add_argument("alert", type=int, help="the alert's id (privacylens.alerts)")
    clear.add_argument("--ledger", default="var/ledger.sqlite")
    clear.add_argument("--by", default=getpass.getuser(), help="who clears it, for the audit log")

    migrate = commands.add_parser(
        "migrate-ledger",
        help="copy a ledger (budgets, answers, audit chain, alerts) into an empty one (SQLite to PostgreSQL)",
    )
    migrate.add_argument("--from", dest="source", required=True, help="SQLite file or postgresql:// URL")
    migrate.add_argument("--to", dest="target", required=True, help="SQLite file or postgresql:// URL")

    hashing = commands.add_parser("hash-password", help="print a SCRAM-SHA-256 verifier for a policy file")
    hashing.add_argument("--password", help="read from the terminal when omitted")

    activity_cli.add_commands(commands)

    args = parser.parse_args(argv)
    if args.command in activity_cli.COMMANDS:
        return activity_cli.run(args)
    if args.command == "serve":
        settings = ProxySettings.resolve({s.name: getattr(args, s.name) for s in SETTINGS})
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        from proxy.workers import WorkerRole, supervise

        if settings.workers > 1 and WorkerRole.from_env() is None:
            return supervise(settings, argv if argv is not None else sys.argv[1:])
        from proxy.server import Server

        try:
            server = Server(settings)
        except (ValueError, OSError) as err:  # a policy, engine, ledger or setting that cannot be used
            logging.getLogger("privacylens").error("cannot start: %s", err)
            return 2
        try:
            asyncio.run(server.serve_forever())
        except KeyboardInterrupt:
            pass
        return 0
    if args.command == "validate":
        from proxy.validate import validate_data
        from rewriter.policy import PolicyError, load_policy

        try:
            policy = load_policy(args.policy)
        except PolicyError as err:
            print(err)
            return 1
        report = validate_data(policy)
        for problem in report.problems:
            print(f"problem: {problem}")
        for note in report.notes:
            print(f"note: {note}")
        datasets = ", ".join(sorted(policy.datasets))
        print(f"policy {args.policy} {'is valid' if report.ok else 'is NOT valid'} (datasets: {datasets})")
        return 0 if report.ok else 1
    if args.command == "demo-data":
        from demo import activity, employees, visits

        events_csv = Path(args.out_dir) / "activity.csv"
        if not events_csv.exists() or args.force:
            events_csv.parent.mkdir(parents=True, exist_ok=True)
            generated = activity.events(60, 5000, platforms=True)
            rows = ["user_id,ts,op,platform", *(",".join(r) for r in generated)]
            events_csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
            print(f"wrote {len(rows) - 1} activity events to {events_csv}")

        for name, generate in (("employees", employees.generate), ("visits", visits.generate)):
            out = Path(args.out_dir) / f"{name}.parquet"
            if out.exists() and not args.force:
                print(f"{out} exists (use --force to rewrite)")
                continue
            print(f"wrote {generate(out)} rows to {out}")
        return 0
    if args.command == "issue-token":
        from proxy.tokens import issue_development_token

        settings = ProxySettings.resolve({})
        if not settings.jwt_secret or not settings.jwt_issuer:
            print("set PRIVACYLENS_JWT_SECRET and PRIVACYLENS_JWT_ISSUER first", file=sys.stderr)
            return 2
        print(
            issue_development_token(
                settings.jwt_secret,
                args.user,
                args.role,
                settings.jwt_audience,
                settings.jwt_issuer,
                args.ttl,
            )
        )
        return 0
    if args.command == "verify":
        from stores.audit import verify as verify_log

        result = verify_log(args.ledger)
        for problem in result.problems:
            print(problem)
        print(f"audit log {'intact' if result.ok else 'TAMPERED'}: {result.rows} rows checked")
        return 0 if result.ok else 1
    if args.command == "clear-alert":
        from stores.audit import AuditLog
        from stores.monitor import Monitor

        if not Monitor(args.ledger).clear(args.alert):
            print(f"no alert {args.alert} holding queries", file=sys.stderr)
            return 1
        AuditLog(args.ledger).record("alert cleared", args.by, None, alert=args.alert)
        print(f"alert {args.alert} cleared: its accounts may query again")
        return 0
    if args.command == "migrate-ledger":
        from stores.audit import verify as verify_log
        from stores.database import open_database
        from stores.migrate import TargetNotEmpty, migrate

        source, target = open_database(args.source), open_database(args.target)
        try:
            copied = migrate(source, target)
        except TargetNotEmpty as err:
            print(err, file=sys.stderr)
            return 1
        result = verify_log(target)
        counts = ", ".join(f"{n} {t}" for t, n in copied.rows.items())
        print(f"copied {counts}; audit chain {'intact' if result.ok else 'BROKEN'} in the target")
        return 0 if result.ok else 1
    if args.command == "make-cert":
        from proxy.tls import make_self_signed

        out_dir = Path(args.out_dir)
        cert_path, key_path = out_dir / "server.crt", out_dir / "server.key"
        if cert_path.exists() and key_path.exists():
            print(f"{cert_path} exists")
            return 0
        make_self_signed(cert_path, key_path, tuple(args.hostname or ["localhost"]))
        print(f"wrote {cert_path} and {key_path} (self-signed, for development)")
        return 0
    from proxy.scram import make_verifier

    password = args.password if args.password is not None else getpass.getpass("password: ")
    print(make_verifier(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
