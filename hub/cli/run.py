"""``hub run`` and ``hub check``."""

from __future__ import annotations

import argparse

from hub.cli.helpers import add_config_argument, install_reactor, load_config


def cmd_check(args: argparse.Namespace) -> int:
    plugins, config = load_config(args)
    print(f"{config.file}: OK ({len(config.devices)} devices, {len(config.transports)} "
          f"transports, {len(config.sinks)} sinks, plugins: {len(plugins.infos)})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    install_reactor()
    from twisted.internet import reactor
    from twisted.logger import Logger

    from hub.core import Hub
    from hub.logs import start_logging
    from hub.service import HubService, tune_gc

    plugins, config = load_config(args)
    tune_gc(config.gc)
    start_logging(args.log_level or config.log_level, config.log_format)
    log = Logger(namespace="hub.cli")
    if args.role == "all":  # the single process: no NATS, nothing of hub.cluster imported
        service = HubService(Hub(config, plugins, reactor))
    else:
        from hub.cluster.node import build_service

        try:
            service = build_service(args.role, Hub(config, plugins, reactor))
        except ValueError as e:
            print(f"hub run: {e}")
            return 2
    exit_code = [0]

    def failed(f):
        log.failure("hub failed to start", f)
        exit_code[0] = 1
        if reactor.running:
            reactor.stop()

    def start():
        d = service.startService()
        if d is not None:
            d.addCallback(lambda _: tune_gc(config.gc, started=True))
            d.addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()  # handles SIGINT and SIGTERM by stopping, which stops the services
    return exit_code[0]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sp = add_config_argument(sub.add_parser("run", help="run the hub"))
    sp.add_argument("--log-level", choices=("debug", "info", "warn", "error"))
    sp.add_argument("--role", choices=("all", "edge", "core"), default="all",
                    help="all: the single process (default); edge: device protocols into "
                    "NATS JetStream; core: partitions, alarms, journal, sinks (README: "
                    "Cluster mode)")
    sp.set_defaults(func=cmd_run)
    add_config_argument(sub.add_parser("check", help="validate a configuration")).set_defaults(
        func=cmd_check)
