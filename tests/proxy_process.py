"""Start the real proxy as a subprocess on a free port, and policies for tests to run it with."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEMO_POLICY = ROOT / "policies" / "demo.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_policy(directory: Path, data_file: Path, **dataset_overrides: object) -> Path:
    """The demo policy pointed at the demo data beside `data_file`, with keys of the employees dataset
    overridden (dotted: budget.epsilon=...; "visits:budget.epsilon" for the visits dataset)."""
    policy = yaml.safe_load(DEMO_POLICY.read_text())
    for name, dataset in policy["datasets"].items():
        if dataset.get("kind") != "activity":  # activity events live in the proxy's activity store
            dataset["source"] = str(data_file.parent / f"{name}.parquet")
    for dotted, value in dataset_overrides.items():
        name, _, dotted = dotted.rpartition(":")  # "visits:budget.epsilon" for another dataset
        target = policy["datasets"][name or "employees"]
        *path, last = dotted.split(".")
        for part in path:
            target = target.setdefault(part, {})
        target[last] = value
    out = directory / f"policy-{len(list(directory.glob('policy-*.yaml')))}.yaml"
    out.write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False))
    return out


@dataclass
class ProxyProcess:
    port: int
    ledger: Path
    process: subprocess.Popen[bytes]
    log: Path
    policy: Path | None = None
    activity: Path | None = None

    def dsn(self, user: str = "analyst", password: str = "demo") -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/demo"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_proxy(
    policy: Path, workdir: Path, timeout: float = 30.0, args: list[str] | None = None
) -> ProxyProcess:
    port = free_port()
    ledger = workdir / f"ledger-{port}.sqlite"
    activity = workdir / f"activity-{port}"
    log = workdir / f"proxy-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as log_file:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy.cli",
                "serve",
                "--policy",
                str(policy),
                "--ledger",
                str(ledger),
                "--activity-store",
                str(activity),
                "--port",
                str(port),
                *(args or []),
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"proxy exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return ProxyProcess(port, ledger, process, log, policy, activity)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"proxy did not listen within {timeout}s:\n{log.read_text()}")


def restart_proxy(old: ProxyProcess) -> ProxyProcess:
    """A new proxy process on the same policy, ledger and activity store (after a stop or a kill)."""
    assert old.policy is not None and old.activity is not None
    where = ["--ledger", str(old.ledger), "--activity-store", str(old.activity)]
    return start_proxy(old.policy, old.ledger.parent, args=where)
