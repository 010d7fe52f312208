"""Run a Switchboard deployment, check its config, raise a signal in a running instance,
or read its stats."""

from __future__ import annotations

import argparse
import json
import sys

from switchboard import config as config_mod
from switchboard import control, logs, statstable
from switchboard.errors import SwitchboardError
from switchboard.master import Master
from switchboard.table import describe

EXIT_CONFIG = 2
# With --control the instance's signal-timeout is unknown; it answers within it anyway.
_PATIENCE = 600.0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SwitchboardError as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="start the master in the foreground")
    run.add_argument("config", help="the deployment config (TOML, or a uWSGI .ini)")
    run.add_argument("--log-level", default="INFO",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.set_defaults(func=_run)
    check = sub.add_parser("check", help="validate a config and print its signal table")
    check.add_argument("config")
    check.set_defaults(func=_check)
    sig = sub.add_parser("signal", help="raise a signal in a running instance")
    sig.add_argument("num", type=int, help="signal number, 0-255")
    _instance_args(sig)
    where = sig.add_mutually_exclusive_group()
    where.add_argument("--node", metavar="NODE",
                       help="raise it on this node of the config's [cluster] instead")
    where.add_argument("--all", action="store_true",
                       help="raise it on every member of the config's [cluster]")
    sig.set_defaults(func=_signal)
    st = sub.add_parser("stats", help="print a running instance's stats: tables on a "
                        "terminal, JSON when piped")
    _instance_args(st)
    form = st.add_mutually_exclusive_group()
    form.add_argument("--json", dest="form", action="store_const", const="json",
                      help="print the stats document as JSON (the default when piped)")
    form.add_argument("--table", dest="form", action="store_const", const="table",
                      help="print tables (the default on a terminal)")
    st.set_defaults(func=_stats)
    return parser


def _instance_args(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--control", metavar="PATH", help="the instance's control socket")
    which.add_argument("--config", metavar="CONFIG", help="the instance's config file")


def _run(args: argparse.Namespace) -> int:
    logs.setup(args.log_level)
    config = config_mod.load(args.config)
    control.socket_path(config)     # an unsafe folder is refused before anything starts
    master = Master(config)
    master.boot()
    try:
        return master.run()
    except OSError as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return 1


def _check(args: argparse.Namespace) -> int:
    logs.setup("WARNING")
    config = config_mod.load(args.config)
    master = Master(config)
    master.boot()
    entries = master.table.entries()
    topo = master.topology
    print(f"config: {config.path}")
    print(f"workers: {topo.workers}, mules: {topo.mules}, spoolers: {topo.spoolers}")
    if config.ignored:
        print(f"ignored uWSGI options (not implemented): {', '.join(config.ignored)}")
    print(f"signal table: {len(entries)} entries")
    for entry in entries:
        print("  " + describe(entry, topo))
    sources = master.registry.describe()
    print(f"event sources: {len(sources)}")
    for line in sources:
        print("  " + line)
    return 0


def _control_path(args: argparse.Namespace) -> tuple[str, float]:
    if args.control:
        return args.control, _PATIENCE
    config = config_mod.load(args.config)
    return control.socket_path(config), config.signal_timeout + 5.0


def _ask(args: argparse.Namespace, line: str) -> control.Reply | None:
    path, timeout = _control_path(args)
    try:
        return control.request(path, line, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"switchboard: error: no instance is listening on {path} (is it running?)",
              file=sys.stderr)
    except OSError as exc:
        print(f"switchboard: error: {path}: {exc}", file=sys.stderr)
    return None


def _signal(args: argparse.Namespace) -> int:
    if not 0 <= args.num <= 255:
        print(f"switchboard: error: signal number {args.num} is out of range [0, 255]",
              file=sys.stderr)
        return EXIT_CONFIG
    if args.node is not None or args.all:
        return _signal_cluster(args)
    reply = _ask(args, f"signal {args.num}")
    if reply is None:
        return 1
    if not reply.get("ok"):
        print(f"switchboard: error: signal {args.num}: {reply.get('error')}", file=sys.stderr)
        return 1
    if reply.get("held"):
        waiting = reply.get("waiting", 0)
        print(f"switchboard: signal {args.num}: no handler is registered for it; it is held "
              f"for signal_wait() ({waiting} process{'' if waiting == 1 else 'es'} waiting "
              "now)", file=sys.stderr)
    return 0


def _signal_cluster(args: argparse.Namespace) -> int:
    """--node/--all: the signal goes through the cluster's PostgreSQL, not a socket."""
    from switchboard.cluster import node, sender  # psycopg: only where a cluster is

    remote = "*" if args.all else args.node
    if not args.config:
        print("switchboard: error: --node/--all need --config (its [cluster] says where "
              "the cluster is)", file=sys.stderr)
        return EXIT_CONFIG
    config = config_mod.load(args.config)
    if config.cluster is None:
        print(f"switchboard: error: {config.path} has no [cluster] section; --node and "
              "--all need one", file=sys.stderr)
        return EXIT_CONFIG
    try:
        node.raise_from_shell(config.cluster, args.num, sender.check_remote(args.num, remote),
                              config.signal_timeout)
    except (OSError, ValueError) as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _stats(args: argparse.Namespace) -> int:
    reply = _ask(args, "stats")
    if reply is None:
        return 1
    if not reply.get("ok"):
        print(f"switchboard: error: {reply.get('error')}", file=sys.stderr)
        return 1
    form = args.form or ("table" if sys.stdout.isatty() else "json")
    if form == "table":
        print(statstable.render(reply["stats"]), end="")
    else:
        print(json.dumps(reply["stats"], indent=2))
    return 0
