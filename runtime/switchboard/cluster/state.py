"""What the cluster's processes share with the master: counters and the member list.

An anonymous shared mapping made before the first fork.  Counters are one row per
slot, written only by the process in that slot (no lock; the master sums the rows).
The member list is written by the sources helper alone, under a sequence number the
readers check (odd while it is being written), so a reader never sees half of it.
`fired` counts, per signal number, the unique fires the helper raised locally: at a
graceful stop the master weighs it against what it dropped (cluster/release.py).
"""

from __future__ import annotations

import json
import mmap
import struct
import time
import uuid
from typing import Any

COUNTERS = ("sent", "received", "expired", "uncertain", "fires_claimed", "fires_elsewhere",
            "send_failures", "commits")
_ROW = 8 * len(COUNTERS)
_MEMBERS = 64 * 1024            # bytes for the member list (JSON); ~1,000 members
_HEAD = struct.Struct("QI")     # sequence number, length
SIGNALS = 256


class ClusterState:
    def __init__(self, slots: int, name: str, node: str) -> None:
        self.name, self.node = name, node
        self._base = slots * _ROW
        stamps = self._base + _HEAD.size + _MEMBERS
        fired = stamps + 8 * slots
        self.mem = mmap.mmap(-1, fired + 8 * SIGNALS)
        self.rows = memoryview(self.mem)[:self._base].cast("Q")
        self.raised_at = memoryview(self.mem)[stamps:fired].cast("d")  # monotonic, per slot
        self.fired = memoryview(self.mem)[fired:].cast("Q")       # per number (the helper)
        self.connected = True       # in the helper: whether PostgreSQL answers now
        self.outbox = f"\0switchboard-cluster-{uuid.uuid4().hex}"   # cluster/outbox.py

    def count(self, slot: int, name: str, n: int = 1) -> None:
        """Add `n` to this process's counter `name` (only `slot`'s process calls this)."""
        self.rows[slot * len(COUNTERS) + COUNTERS.index(name)] += n

    def others_raising(self, slot: int, now: float, window: float) -> bool:
        """Stamp this process's remote raise; whether another process of this instance
        made one within `window` seconds (then they share the outbox's commits)."""
        stamps = self.raised_at
        stamps[slot] = 0.0
        busy = max(stamps) > now - window
        stamps[slot] = now
        return busy

    def totals(self) -> dict[str, int]:
        """Each counter summed over every process."""
        width = len(COUNTERS)
        return {name: sum(self.rows[i::width]) for i, name in enumerate(COUNTERS)}

    def set_members(self, members: list[tuple[str, float]], connected: bool) -> None:
        """Publish the member list (the sources helper, after each heartbeat)."""
        data = json.dumps({"members": members, "connected": connected,
                           "at": time.time()}).encode()[:_MEMBERS]
        seq = _HEAD.unpack_from(self.mem, self._base)[0]
        _HEAD.pack_into(self.mem, self._base, seq + 1, 0)
        self.mem[self._base + _HEAD.size:self._base + _HEAD.size + len(data)] = data
        _HEAD.pack_into(self.mem, self._base, seq + 2, len(data))

    def snapshot(self) -> dict[str, Any]:
        """The last published member list: {"members": [[node, heartbeat]], ...}."""
        for _ in range(1000):
            seq, size = _HEAD.unpack_from(self.mem, self._base)
            if seq % 2:
                continue
            data = bytes(self.mem[self._base + _HEAD.size:self._base + _HEAD.size + size])
            if _HEAD.unpack_from(self.mem, self._base)[0] == seq:
                return json.loads(data) if data else {"members": [], "connected": False,
                                                      "at": 0.0}
        return {"members": [], "connected": False, "at": 0.0}

    def nodes(self) -> list[str]:
        return [m[0] for m in self.snapshot()["members"]]

    def describe(self) -> dict[str, Any]:
        """The stats document's `cluster` section, as plain data."""
        snap = self.snapshot()
        return {"name": self.name, "node": self.node, "connected": snap["connected"],
                "members": [{"node": n, "last_heartbeat": int(t)}
                            for n, t in snap["members"]],
                **self.totals()}
