"""A child's boot: postfork hooks, a mule's program or worker 1's `pyrun` script, then
the loop; and the first steps of the forked process (become_child)."""

from __future__ import annotations

import ctypes
import logging
import os
import runpy
import signal as unix
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from switchboard import api, binding
from switchboard.channels import READY, record
from switchboard.shared import IDLE
from switchboard.targets import Role, Topology

if TYPE_CHECKING:
    from switchboard.procs.child import Background, Child
    from switchboard.shared import ProcRecord

log = logging.getLogger("switchboard.child")

BOOT_ERROR = 3          # exit status: the child could not boot; the master stops
NEVER = -2              # the top-level loop: no signal ends it


class Boot:
    """Mixed into Child: what it needs of the child is declared below."""

    record: ProcRecord
    role: Role
    ident: int
    topology: Topology
    queues: Any
    program: Callable[..., Any] | None
    script: str
    background: Background | None
    _in_program: bool
    _inbox: list[socket.socket]

    if TYPE_CHECKING:       # Child's own, declared for the type checker only
        def _serve(self, want: int, deadline: float | None) -> int | None: ...
        def _send(self, data: bytes, num: int | None = None) -> None: ...
        def _watch(self, socks: list[socket.socket]) -> list[socket.socket]: ...
        def _name(self) -> str: ...

    def run(self) -> int:
        """Boot (postfork hooks) and serve; the exit status."""
        try:
            programs = binding.run_postfork_hooks()
        except Exception:
            log.exception("%s: a postfork function failed; cannot boot", self._name())
            return BOOT_ERROR
        try:
            if self.background is not None:
                self.background.start()     # watches placed before we say we are ready
        except Exception:
            log.exception("%s: could not start; cannot boot", self._name())
            return BOOT_ERROR
        self.record.status = IDLE
        self.record.last_active = time.monotonic()
        if self.program is not None:
            programs.append(self.program)
        if self.role is Role.MULE and not programs and api.mule_msg_hook:
            self._inbox = self.queues.receivers(self.ident, self.topology)
            self._watch(self._inbox)
        self._send(record(READY))
        try:
            if self.script:
                return self._run_script(self.script)
            for program in programs:
                self._run_program(program)
            self._serve(NEVER, None)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        finally:
            if self.background is not None:
                self.background.stop()
        return 0

    def _run_script(self, path: str) -> int:
        """`pyrun`: run the script as __main__; its exit status ends the instance."""
        self._in_program = True
        sys.argv = [path]               # as `python script.py`; uWSGI's is not the script's
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as exc:
            code = exc.code
            if code is None or isinstance(code, int):
                return code or 0
            print(code, file=sys.stderr)
            return 1
        except Exception:
            log.exception("%s: pyrun script %s failed", self._name(), path)
            return 1
        finally:
            self._in_program = False
        return 0

    def _run_program(self, program: Callable[..., Any]) -> None:
        """A mule's program: signals are handled only inside its signal_wait() calls."""
        self._in_program = True
        try:
            program()
        except Exception:
            log.exception("%s: its program failed; it carries on as a signal-only mule",
                          self._name())
        else:
            log.info("%s: its program returned; it carries on as a signal-only mule",
                     self._name())
        finally:
            self._in_program = False


def become_child(child: Child, sock: socket.socket, groups: list[tuple[socket.socket, int]],
                 drained_fd: int, signal_timeout: float,
                 direct: dict[int, tuple[socket.socket, socket.socket]],
                 signal_queue: int) -> int:
    """Run in the forked process once the master's descriptors are closed."""
    _die_with_parent(child.masterpid)
    child.shared.after_fork()
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            # whole lines in one write: children share the master's stdout and stderr
            stream.reconfigure(line_buffering=True, write_through=False)
    unix.signal(unix.SIGINT, unix.SIG_IGN)      # the master turns Ctrl-C into SIGTERM
    unix.signal(unix.SIGHUP, unix.SIG_IGN)
    child.setup(sock, groups, drained_fd, signal_timeout, direct, signal_queue)
    binding.install(child)
    return child.run()


def _die_with_parent(masterpid: int) -> None:
    """Ask the kernel to SIGKILL us when the master dies, even by kill -9."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, unix.SIGKILL)        # PR_SET_PDEATHSIG
    if os.getppid() != masterpid:
        os._exit(1)
