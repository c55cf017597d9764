"""Downlink commands on a DTU line: the half of
:class:`~plugins.transports.tcp_dtu.session.DtuSession` that queues a command's writes ahead
of the polls, checks each answer (and read-back) and reports the result. Sans-IO like the
session itself, of which it is a base class (it uses the session's queues and I/O)."""

from __future__ import annotations

import abc
from collections import deque
from typing import TYPE_CHECKING, Any

from hub.contracts import DecodeError
from hub.model import Command, CommandResult, CommandStatus
from plugins.transports.tcp_dtu.session_io import CommandRun, Request

if TYPE_CHECKING:
    from hub.contracts import ResponseFrame
    from plugins.transports.tcp_dtu.session_io import SessionIO

__all__ = ["CommandQueue"]


class CommandQueue(abc.ABC):
    """Commands before polls, one write at a time (see the session's docstring)."""

    __slots__ = ()

    io: SessionIO
    commands: deque[Request] | None
    _now: float

    @abc.abstractmethod
    def _send_next(self) -> None:
        """Write the next queued request, if the line is free (the session's own)."""

    # -- commands --------------------------------------------------------------------------

    def enqueue_command(self, device: Any, command: Command, now: float) -> CommandRun:
        """Queue ``command``'s writes ahead of the polls; raises
        :class:`hub.contracts.EncodeError` if the model cannot express it."""
        self._now = now
        slave = device.address_key[1]
        writes = device.model.command_requests(command, slave)
        run = CommandRun(command, device, list(writes))
        self._queue_write(run)
        self._send_next()
        return run

    def cancel(self, run: CommandRun) -> None:
        """Drop the run's writes not yet sent. A write on the wire is left to its answer or
        timeout (the line is half duplex: the next request must not overlap it), but is not
        retried and starts no read-back or further write."""
        run.cancelled = True
        run.writes.clear()
        if self.commands:
            self.commands = deque(r for r in self.commands if r.command is not run)

    def _queue_write(self, run: CommandRun) -> None:
        frame = run.writes.pop(0)
        if self.commands is None:
            self.commands = deque()
        self.commands.append(Request(run.device, frame,
                                     run.device.model.response_length(frame), command=run))

    def _command_step(self, req: Request, frame: ResponseFrame) -> None:
        run = req.command
        assert run is not None
        if run.cancelled:
            return
        assert self.commands is not None  # req came from it
        model = req.device.model
        try:
            if req.readback_of is not None:
                model.check_readback(req.readback_of, frame.raw)
            else:
                model.check_write_response(req.frame, frame.raw)
        except DecodeError as e:
            self._command_done(run, CommandStatus.FAILED, str(e))
            return
        if req.readback_of is None and model.needs_readback(run.command):
            # the echo says the slave received the write; reading it back says it took it
            read = model.readback_request(req.frame)
            self.commands.appendleft(Request(run.device, read, model.response_length(read),
                                             command=run, readback_of=req.frame))
            return
        if run.writes:
            self._queue_write(run)
            # keep the command's writes together, ahead of other commands
            self.commands.rotate(1)
        else:
            self._command_done(run, CommandStatus.SUCCEEDED, "")

    def _command_done(self, run: CommandRun, status: CommandStatus, detail: str) -> None:
        self.io.command_result(run, CommandResult(run.command.id, run.command.device, status,
                                                  self._now, detail))
