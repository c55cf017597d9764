"""What the ``hub simulate ...`` subcommands share: their group, argument types and the
options every simulator run has (``--duration``, ``--status-interval``)."""

from __future__ import annotations

import argparse

__all__ = ["add_run_options", "endpoint", "non_negative", "positive", "simulate_parser"]


def endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets) as ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number ≥ 0")
    return value


def simulate_parser(subparsers: argparse._SubParsersAction, name: str, help: str,
                    description: str) -> argparse.ArgumentParser:
    """The parser of ``hub simulate <name>``."""
    from hub.cli import command_group

    group = command_group(subparsers, "simulate", "simulators of devices and peers")
    return group.add_parser(name, help=help, description=description)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--duration`` and ``--status-interval``, which every simulator run has."""
    p.add_argument("--duration", type=positive, metavar="S", help="stop after S seconds")
    p.add_argument("--status-interval", type=positive, default=5.0, metavar="S",
                   help="seconds between status lines (default 5)")
