"""What the command line imports: `--help` of every command, and the admin client commands,
run in fresh processes without loading the store, the web stack or the service.

Each run prints the modules it loaded that it should not have (from `sys.modules`, after
`main` returned) as one JSON line on stderr, after whatever the command printed.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.cli import build_parser, load_command
from tests.e2e.server import HOST, service_env
from tests.helpers import ADMIN_TOKEN

# Whole packages: none of them may be loaded by `--help` or by a client command.
HEAVY = (
    "alembic",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "service.app",
    "service.bootstrap",
    "service.commands.common",
    "service.dispatch",
    "service.fake_llmtune",
    "service.handlers",
    "service.http",
    "service.ingest",
    "service.services",
    "service.store",
)
RUN_MAIN = f"""
import json, sys
from service.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = {HEAVY!r}
loaded = sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + "." for h in heavy)))
sys.stdout.flush()
print(json.dumps({{"code": code, "loaded": loaded}}), file=sys.stderr)
"""

# Every command's options, as `--help` listed them when each command's module was still imported
# to build the parser: the lazy parser must offer exactly these.
OPTIONS = {
    (): "-h",
    ("serve",): "-h --host --port --workers --no-migrate --init-env --no-init-env --no-worker",
    ("worker",): "-h --once --metrics-port --metrics-host",
    ("migrate",): "-h",
    ("send-test-event",): "-h --url --secret --event --lifecycle --format --job-id",
    ("replay",): "-h --event --since --until --route --dry-run",
    ("retry-dead",): "-h --route --job-id --dry-run",
    ("purge",): "-h --older-than --dry-run --batch-size",
    ("fake-llmtune",): "-h --host --port --secret --step-seconds --workspace-url --api-key "
    "--webhook-attempts --retry-base-seconds --duplicates --reorder --drop --fail-status "
    "--fail-times --flat-errors --slow-seconds",
    ("submit",): "-h --base-model --dataset --training-method --learning-rate --epochs "
    "--batch-size --idempotency-key --url --token --json",
    ("demo",): "-h --step --timeout --port",
    ("events",): "-h",
    ("events", "list"): "-h --type --job-id --limit --cursor --url --token --json",
    ("events", "show"): "-h --url --token --json",
    ("deliveries",): "-h",
    ("deliveries", "list"): "-h --status --route --event-id --job-id --limit --cursor --url "
    "--token --json",
    ("deliveries", "show"): "-h --url --token --json",
    ("deliveries", "retry"): "-h --url --token --json",
    ("deliveries", "retry-dead"): "-h --route --event-id --job-id --since --until --url --token "
    "--json",
    ("jobs",): "-h",
    ("jobs", "list"): "-h --status --limit --cursor --url --token --json",
    ("jobs", "show"): "-h --url --token --json",
    ("jobs", "refresh"): "-h --url --token --json",
    ("tail",): "-h --url --token --json",
    ("keys",): "-h",
    ("keys", "generate"): "-h --hmac --encryption --json",
    ("rotate-keys",): "-h --to-clear --batch-size",
}


@dataclass(frozen=True, slots=True)
class Run:
    """One finished command: its exit status, output, and the heavy modules it had loaded."""

    code: int
    stdout: str
    stderr: str
    loaded: list[str]


def run_command(argv: tuple[str, ...], env: dict[str, str], cwd: Path) -> Run:
    """`llmtune-receiver ARGV` as the console script runs it, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_MAIN, *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    *printed, last = done.stderr.rstrip("\n").split("\n")
    report = json.loads(last)
    return Run(report["code"], done.stdout, "\n".join(printed), report["loaded"])


@functools.cache
def help_of(command: tuple[str, ...]) -> Run:
    """`llmtune-receiver COMMAND --help`, once per test process (two tests read it)."""
    return run_command((*command, "--help"), service_env(), Path.cwd())


def usage_options(text: str) -> str:
    """The option strings of a help text's usage paragraph, in order."""
    usage = " ".join(text.split("\n\n")[0].split())
    return " ".join(re.findall(r"(?<=[\[ (|])--?[a-z][\w-]*", usage))


def commands_of(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under `parser` with its command words, the groups (`events`) included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands_of(child, (*path, name))


class TestHelp:
    @pytest.mark.parametrize("command", list(OPTIONS), ids=lambda c: " ".join(c) or "(top)")
    def test_help_lists_the_same_options(self, command: tuple[str, ...]) -> None:
        """`--help` of each command exits 0 and offers the same options as before."""
        run = help_of(command)
        assert run.code == 0, run.stderr
        assert run.stdout.startswith(" ".join(["usage: llmtune-receiver", *command]))
        assert usage_options(run.stdout) == OPTIONS[command]

    @pytest.mark.parametrize("command", list(OPTIONS), ids=lambda c: " ".join(c) or "(top)")
    def test_help_imports_no_command(self, command: tuple[str, ...]) -> None:
        """`--help` loads neither the store, the web stack nor any part of the service."""
        assert help_of(command).loaded == []

    def test_every_command_is_in_the_table(self) -> None:
        """A new command gets its row above, so its `--help` is checked too."""
        assert {path for path, _ in commands_of(build_parser())} == set(OPTIONS)

    def test_every_command_names_a_function(self) -> None:
        """Each runnable command's `module:function` imports and is callable."""
        runnable = [
            (path, sub.get_default("run"))
            for path, sub in commands_of(build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
        ]
        assert runnable
        for path, target in runnable:
            assert isinstance(target, str), path
            assert callable(load_command(target)), path


@pytest.fixture(scope="module")
def refusing_url() -> Iterator[str]:
    """A URL whose port is bound but not listening: every connection is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        yield f"http://{HOST}:{sock.getsockname()[1]}"


CLIENT_COMMANDS = {
    "events list": ("events", "list", "--token", ADMIN_TOKEN),
    "deliveries show": ("deliveries", "show", "dlv_1", "--token", ADMIN_TOKEN),
    "jobs list --json": ("jobs", "list", "--json", "--token", ADMIN_TOKEN),
    "tail": ("tail", "--token", ADMIN_TOKEN),
    "submit": ("submit", "--base-model", "m", "--dataset", "d", "--token", ADMIN_TOKEN),
    "jobs refresh": ("jobs", "refresh", "job_1", "--token", ADMIN_TOKEN),
    "deliveries retry": ("deliveries", "retry", "dlv_1", "--token", ADMIN_TOKEN),
    "deliveries retry-dead": ("deliveries", "retry-dead", "--route", "log"),
    "events list, token from ADMIN_TOKENS": ("events", "list"),
}


class TestClientCommands:
    @pytest.mark.parametrize("argv", CLIENT_COMMANDS.values(), ids=CLIENT_COMMANDS.keys())
    def test_client_command_imports_only_what_it_uses(
        self, argv: tuple[str, ...], refusing_url: str, tmp_path: Path
    ) -> None:
        """A command that calls the admin API fails on a refused connection with one line,
        having loaded neither the store, the web stack nor the service."""
        run = run_command(
            (*argv, "--url", refusing_url), service_env(ADMIN_TOKENS=ADMIN_TOKEN), tmp_path
        )
        assert run.code == 1, run.stderr
        assert refusing_url in run.stderr
        assert run.loaded == []

    def test_send_test_event_imports_only_what_it_uses(
        self, refusing_url: str, tmp_path: Path
    ) -> None:
        """`send-test-event` signs and posts without loading the receiver it posts to."""
        url = f"{refusing_url}/webhooks/llmtune"
        run = run_command(
            ("send-test-event", "--secret", "s", "--url", url), service_env(), tmp_path
        )
        assert run.code == 1, run.stderr
        assert url in run.stderr
        assert run.loaded == []
