"""The contract between the hub and its plugins.

Every hook the hub calls is declared here, and only here. A plugin is any importable object
(usually a module) with functions named like these hooks and decorated with
``@hub.hookimpl``; a distribution makes it known to the hub through an entry point in the
``hub`` group::

    [options.entry_points]
    hub =
        acme_efd = acme_hub.plugin

Implementations may accept any subset of a hook's arguments, by name. The hub always calls
hooks with every argument.

The hooks fall into three groups:

* **types** (``hub_register_*``): called once while the hub is built; a plugin returns the
  transport types, device models and sink types it contributes. Type names are global: two
  plugins contributing the same name stop the hub with an error naming both.
* **lifecycle and CLI** (``hub_add_commands``, ``hub_startup``, ``hub_shutdown``).
* **observers** (``hub_event_recorded``, ``hub_device_online``, ``hub_device_offline``,
  ``hub_command_finished``): called after the fact, one implementation at a time. An
  exception in one observer is logged and counted (metric ``plugins.observer_errors``) and
  the others still run. Observers are for side effects (notify, mirror, count). They are
  *not* the data path: readings and events reach sinks through the journal, so a slow or
  broken observer never loses data. An observer may return a Deferred or a coroutine; the
  hub does not wait for it before handling the next record, but logs its failure.

No hook here is ``firstresult``: the type hooks collect every plugin's list, and lifecycle
and observer hooks are called for every implementation.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from hub.contracts import DeviceModelType, SinkType, SmsProviderType, TransportType
    from hub.core import Hub
    from hub.model import Command, CommandResult, Event

PROJECT = "hub"

hookspec = pluggy.HookspecMarker(PROJECT)


# --------------------------------------------------------------------------------------------
# Types: what a plugin contributes
# --------------------------------------------------------------------------------------------


@hookspec
def hub_register_transport_types() -> list[TransportType]:
    """Return the transport types this plugin contributes (may be empty).

    A transport owns sockets and sessions: it listens or connects, identifies devices
    against the registry, keeps them online and delivers downlink commands. It never
    interprets payloads; it hands bytes to the device's model and the model's records to
    the hub. Its ``factory(port, name, options)`` gets the hub as a
    :class:`hub.contracts.TransportPort` (resolve, ingest, presence, command progress) and
    uses nothing else of it.

    Called once while the hub is built, before the configuration is validated, so the
    configuration can name the types. Each :class:`hub.contracts.TransportType` carries a
    unique ``name`` (what ``transports.<id>.type`` names in ``hub.yaml``), a
    ``check_options`` function that validates the transport's options section and a
    ``factory`` that builds the running service.
    """


@hookspec
def hub_register_device_models() -> list[DeviceModelType]:
    """Return the device models this plugin contributes (may be empty).

    A device model turns one detector family's bytes into canonical records
    (:mod:`hub.model`) and commands into bytes. It is pure: no sockets, no clock, no
    threads, so a vendor can test it with byte vectors alone (see :mod:`hub.testing`).

    Called once while the hub is built. Each :class:`hub.contracts.DeviceModelType` has a unique
    ``name`` (what ``devices[].model`` or ``models.<name>.type`` names), ``check_options``
    and a ``factory(options)`` that returns the model object.
    """


@hookspec
def hub_register_sink_types() -> list[SinkType]:
    """Return the sink types this plugin contributes (may be empty).

    A sink reads the journal from its own durable cursor, delivers records to the far side
    (a database, a fire-alarm centre, an SMS provider) and advances the cursor only after
    the far side accepted them. Several sinks of one type may be configured, each with its
    own cursor named after its config key.

    Called once while the hub is built. Each :class:`hub.contracts.SinkType` has a unique
    ``name`` (what ``sinks.<id>.type`` names), ``check_options`` and ``factory``.
    """


@hookspec
def hub_register_sms_providers() -> list[SmsProviderType]:
    """Return the SMS providers this plugin contributes (may be empty).

    The ``sms`` sink renders, routes and rate-limits alarm texts; a provider only delivers
    them: a cloud API, a local HTTP gateway, a GSM modem. An ``sms`` sink names its provider
    in ``sinks.<id>.provider.type``; the rest of that section goes to the provider's
    ``check_options``. ``factory(options, reactor)`` returns an object with a ``name`` and
    ``send(message)`` (see :class:`hub.contracts.SmsProvider`): a Deferred firing with one
    :class:`hub.contracts.SendResult` per phone, or failing when the whole attempt should be
    retried.

    Called once while the hub is built; names are global, as for the other types.
    """


# --------------------------------------------------------------------------------------------
# Lifecycle and command line
# --------------------------------------------------------------------------------------------


@hookspec
def hub_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add subcommands to the ``hub`` command line.

    Called once while the CLI is built, with the :mod:`argparse` subparsers object of the
    ``hub`` command. Add a parser and set its handler with
    ``parser.set_defaults(func=handler)``; the handler receives the parsed
    :class:`argparse.Namespace` and returns the process exit code. Simulators and
    commissioning tools (``hub simulate mqtt``, ``hub gb26875 centre``) come in this way.
    Nothing is returned.
    """


@hookspec
def hub_startup(hub: Hub) -> Any:
    """Called once after the hub's services have started and before the first device is
    accepted.

    ``hub`` gives access to the configuration, registry, journal and metrics. May return a
    Deferred or coroutine; the hub waits for it. An exception stops the start-up with the
    plugin's name in the error.
    """


@hookspec
def hub_shutdown(hub: Hub) -> Any:
    """Called once when the hub stops, after transports and sinks have stopped and before the
    journal is closed. May return a Deferred or coroutine; the hub waits for it. Failures are
    logged and do not stop the shutdown of other plugins.
    """


# --------------------------------------------------------------------------------------------
# Observers: called one implementation at a time, each failure isolated
# --------------------------------------------------------------------------------------------


@hookspec
def hub_event_recorded(hub: Hub, event: Event) -> Any:
    """An alarm, fault or state event was committed to the journal.

    Called once per event record, after the commit, in journal order: a raised alarm and its
    later clear are two calls with the same ``event.id``. ``event.source`` says whether the
    hub decided it (thresholds, presence) or the device reported it.
    """


@hookspec
def hub_device_online(hub: Hub, device: str, ts: float) -> Any:
    """A device that was offline sent data or a heartbeat again.

    ``ts`` is the UTC epoch time it was seen. The matching ``offline`` fault clear has
    already been committed and passed to :func:`hub_event_recorded`.
    """


@hookspec
def hub_device_offline(hub: Hub, device: str, ts: float, last_seen: float | None) -> Any:
    """Nothing arrived from a device for its heartbeat interval × timeout count.

    ``ts`` is the moment the device became overdue (``last_seen`` + heartbeat interval ×
    timeout count, or, for a device never heard from, that long after the hub started or
    the device was first tracked), which is also the offline event's ``raised_ts``; the hub
    may decide a little later (its timer, a restart). ``last_seen`` is when anything last
    arrived (``None`` when nothing ever did). The ``offline`` fault event has already been
    committed.
    """


@hookspec
def hub_command_finished(hub: Hub, command: Command, result: CommandResult) -> Any:
    """A command reached a final status (succeeded, failed or timed out).

    The command and its result (with who asked) are already committed to the journal.
    """
