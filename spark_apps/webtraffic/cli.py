"""The ``webtraffic`` command: one entry point for operators, the Makefile and Airflow.

Expected failures (bad arguments, missing Java, a port in use, a broker that did not start) print
one line on stderr and exit non-zero; only bugs show a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


# --- stack -----------------------------------------------------------------------------------


def _format_stack_status(status: dict[str, Any]) -> str:
    kafka = status["kafka"]
    catalog = status["catalog"]
    lines = [f"state folder     {status['state_dir']}"]
    if kafka["state"] == "stopped":
        lines.append(f"kafka broker     stopped (ports {kafka['port']}/{kafka['controller_port']})")
    else:
        lines.append(
            f"kafka broker     {kafka['state']}  pid {kafka['pid']}  "
            f"{kafka['bootstrap_servers']} (controller 127.0.0.1:{kafka['controller_port']})  "
            f"log {kafka['log_file']}"
        )
        for topic, partitions in kafka["topics"].items():
            lines.append(f"  topic          {topic} ({partitions} partitions)")
    lines.append(
        f"iceberg catalog  {catalog['name']}  {catalog['uri']}  warehouse {catalog['warehouse']}"
    )
    airflow = status.get("airflow")
    if airflow:
        if airflow["state"] == "stopped":
            lines.append(f"airflow          stopped (port {airflow['port']})")
        else:
            lines.append(
                f"airflow          {airflow['state']}  pid {airflow['pid']}  {airflow['url']}  "
                f"log {airflow['log_file']}"
            )
            lines.append(
                f"  login          user {airflow['user']}, password in {airflow['passwords_file']}"
            )
    simulator = status.get("simulator")
    if simulator:
        pid = f"  pid {simulator['pid']}" if simulator["pid"] else ""
        lines.append(
            f"simulator        {simulator['state']}{pid}  {simulator['rate']:g} events/s to "
            f"{simulator['topic']}  log {simulator['log_file']}"
        )
    for name, app in status.get("apps", {}).items():
        pid = f"  pid {app['pid']}" if app["pid"] else ""
        lines.append(
            f"app {name:12} {app['state']}{pid}  ({app['command']})  log {app['log_file']}"
        )
    return "\n".join(lines)


def _cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from webtraffic import stack

    if args.action == "up":
        status = stack.stack_up(settings)
    elif args.action == "down":
        stopped = stack.stack_down(settings)
        if args.json:
            _print_json({"stopped": stopped})
        else:
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    else:
        status = stack.stack_status(settings)
    if args.json:
        _print_json(status)
    else:
        print(_format_stack_status(status))
    return 0


# --- tables ----------------------------------------------------------------------------------


def _cmd_tables(args: argparse.Namespace, settings: Settings) -> int:
    from webtraffic.catalog import load_catalog, table_summaries

    summaries = table_summaries(load_catalog(settings))
    if args.json:
        _print_json([s.to_dict() for s in summaries])
        return 0
    if not summaries:
        print(f"no tables yet in catalog {settings.catalog_name} ({settings.catalog_db})")
        return 0
    header = ("table", "rows", "snapshots", "data files", "last commit (UTC)")
    rows = [
        (s.table, f"{s.rows:,}", str(s.snapshots), str(s.data_files), s.last_commit or "-")
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for i, row in enumerate([header, *rows]):
        cells = [
            cell.ljust(widths[j]) if j in (0, 4) else cell.rjust(widths[j])
            for j, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


# --- airflow ---------------------------------------------------------------------------------


def _cmd_airflow(args: argparse.Namespace, settings: Settings) -> int:
    from webtraffic.airflow_env import apply_airflow_environment

    apply_airflow_environment(settings)
    airflow = shutil.which("airflow")
    if airflow is None:
        raise WebtrafficError("the airflow command is not installed; run `make setup` first")
    os.execv(airflow, [airflow, *args.airflow_args])
    return 0  # not reached


# --- settings --------------------------------------------------------------------------------


def _cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    from webtraffic.apps import DATABRICKS_VARIABLES, SUPERVISOR_VARIABLES
    from webtraffic.settings import ENVIRONMENT_VARIABLES

    if args.variables:
        variables = {**ENVIRONMENT_VARIABLES, **SUPERVISOR_VARIABLES, **DATABRICKS_VARIABLES}
        for name, doc in variables.items():
            print(f"{name:36} {doc}")
        return 0
    # repr of Secret is masked, so printing the dataclass never leaks a credential.
    print(f"profile          {settings.profile}")
    print(f"state folder     {settings.state_dir}")
    print(f"kafka            {settings.kafka.bootstrap_servers}  topic {settings.kafka.topic}")
    print(f"catalog          {settings.catalog_name}")
    print(f"checkpoints      {settings.checkpoint_root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of the ``webtraffic`` command."""
    parser = _Parser(
        prog="webtraffic",
        description="Real-time website-users analytics: Kafka -> Spark -> Iceberg, run by Airflow.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p_stack = sub.add_parser(
        "stack", help="start, stop or inspect the local stack (Kafka, Airflow, streaming app)"
    )
    p_stack.add_argument("action", choices=("up", "down", "status"))
    p_stack.add_argument("--json", action="store_true", help="machine-readable output")
    p_stack.set_defaults(handler=_cmd_stack)

    p_tables = sub.add_parser("tables", help="every Iceberg table with rows, snapshots and files")
    p_tables.add_argument("--json", action="store_true", help="machine-readable output")
    p_tables.set_defaults(handler=_cmd_tables)

    p_airflow = sub.add_parser(
        "airflow", help="run an Airflow command in the project's Airflow environment"
    )
    p_airflow.add_argument("airflow_args", nargs=argparse.REMAINDER, metavar="ARGS")
    p_airflow.set_defaults(handler=_cmd_airflow)

    p_settings = sub.add_parser("settings", help="show the effective settings (secrets masked)")
    p_settings.add_argument(
        "--variables", action="store_true", help="list the environment variables read"
    )
    p_settings.set_defaults(handler=_cmd_settings)

    # Feature packages add their own commands; each module exposes register(subparsers).
    for register in _feature_commands():
        register(sub)
    return parser


def _feature_commands() -> list[Callable[[Any], None]]:
    """Returns the ``register(subparsers)`` functions of the feature packages.

    A registered command sets ``handler(args, settings) -> int`` like the built-in ones and
    imports its heavy dependencies inside the handler, so ``webtraffic --help`` stays fast.
    """
    from webtraffic import gold_cli, streaming
    from webtraffic.geo import cli as geo_cli
    from webtraffic.simulator import cli as simulator_cli

    return [streaming.register, simulator_cli.register, geo_cli.register, gold_cli.register]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``webtraffic`` command.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The process exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        return handler(args, Settings.from_env())
    except WebtrafficError as exc:
        print(f"webtraffic: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("webtraffic: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
