"""Graceful reload (SIGHUP): re-read the config, then replace the children one at a time.

1. The config is checked first in a separate interpreter (`switchboard check`), so a
   config that became invalid, or code that no longer imports, is refused with a log
   line and the running instance carries on unchanged.
2. The master applies it: what the old config and its modules registered (signals and
   event sources) is removed, the modules are re-imported (importlib.reload), the Lua
   scripts run in a fresh Lua runtime, and the new registrations and sources are made.
   What children registered or added at run time stays.
3. Each child is stopped gracefully and its replacement (same id) is forked from the
   updated master; the next goes only once the replacement is ready, so a group always
   has members reading its channel.  Signals queued meanwhile wait in the channels and
   run in the replacements: none is lost.
The process layout (workers, mules, farms, spooler) cannot change by reload; that needs
a restart, and the reload is refused with a log line saying so.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

from switchboard import config as config_mod
from switchboard.errors import ConfigError

if TYPE_CHECKING:
    from switchboard.master import Master

log = logging.getLogger("switchboard.reload")

CHECK_TIMEOUT = 120.0


class Reload:
    def __init__(self, master: Master) -> None:
        self.master = master
        self.check: subprocess.Popen[bytes] | None = None
        self.queue: list[int] = []
        self.current: int | None = None
        self._deadline = 0.0

    @property
    def busy(self) -> bool:
        return self.check is not None or bool(self.queue) or self.current is not None

    def begin(self) -> None:
        """SIGHUP: check the config in a fresh interpreter, without waiting for it."""
        if self.busy:
            log.warning("SIGHUP: a reload is already in progress; ignored")
            return
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _step_check
        self.check = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "check", self.master.config.path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._output)
        self._deadline = time.monotonic() + CHECK_TIMEOUT
        log.info("reload: checking %s", self.master.config.path)
        self.master.lifecycle.reloading()

    def step(self) -> None:
        """Called on every pass of the master's loop."""
        if self.check is not None:
            self._step_check()
        elif self.current is None and self.queue:
            self._replace_next()
        elif self.current is not None and time.monotonic() > self._deadline:
            child = self.master.children.get(self.current)
            if child is not None and not child.kill_reason:
                log.warning("reload: %s did not stop within reload-mercy; killing it",
                            self.master.topology.describe(self.current))
                self.master.kill(self.current, "reload-mercy")

    def _step_check(self) -> None:
        assert self.check is not None
        code = self.check.poll()
        if code is None and time.monotonic() < self._deadline:
            return
        if code is None:
            self.check.kill()
            self.check.wait()
        self.check = None
        self._output.seek(0)
        errors = self._output.read().decode(errors="replace").strip()
        self._output.close()
        if code != 0:
            return self._refuse(errors.splitlines()[-1] if errors else
                                f"check exited with {code}")
        try:
            new = config_mod.load(self.master.config.path)
        except ConfigError as exc:
            return self._refuse(str(exc))
        old = self.master.config
        if new.topology() != self.master.topology or new.cheaper != old.cheaper or \
                new.control != old.control:
            return self._refuse("the process layout (workers, mules, farms, spooler, "
                                "cheaper) or the control socket changed; restart to apply it")
        if not self.master.apply_config(new):
            self.master.lifecycle.ready()           # still running, on the old config
            return
        self.queue = sorted(self.master.children)
        log.info("reload: config applied; replacing %d children one at a time",
                 len(self.queue))

    def _replace_next(self) -> None:
        while self.queue:
            slot = self.queue.pop(0)
            child = self.master.children.get(slot)
            if child is None:
                continue                    # gone meanwhile: its respawn is new already
            self.current = slot
            self._deadline = time.monotonic() + self.master.config.reload_mercy
            child.replacing = True
            self.master.kill(slot, "")
            return
        self._done()

    def _refuse(self, why: str) -> None:
        log.error("reload refused, the running config stays: %s", why)
        self.master.lifecycle.ready()

    def _done(self) -> None:
        log.info("reload: done")
        self.master.lifecycle.ready()

    def replaced(self, slot: int) -> None:
        """The replacement of `slot` is ready: go on with the next child."""
        if slot == self.current:
            self.current = None
            if not self.queue:
                self._done()
