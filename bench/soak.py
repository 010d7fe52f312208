"""Soak: nothing grows over a long run (issue 15).

Run: python bench/soak.py                      (the long form: ~10-20 minutes)
     python bench/soak.py --short              (what the test suite runs: ~1 minute)

One instance (4 workers, 3 mules with a farm of two, a spooler) takes SIGNALS signals
through every target kind (raised by a mule program, apps/soak.py), RELOADS graceful
reloads (SIGHUP, one after another), KILLS SIGKILLs of random children (each at least
1.5 s old, so it is respawned at once) and TICKS ticks of a 1 ms timer, all at the same
time.  It samples the master's and every child's RSS, open descriptors and threads
after a warm-up and again at the end, once the queues are empty, and checks:

- no process has more descriptors or threads than at the start;
- no process's RSS grew by more than RSS_BOUND_KIB;
- for every signal, what was routed was handled, failed or dropped with a reason
  (children killed mid-handler drop theirs as `died`), and the master exits 0.

Exit status 0 when every check holds; the report is a Markdown table (and JSON with
--json FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

from harness import APPS, Proc

from switchboard import control

RSS_BOUND_KIB = 10 * 1024
KILL_AGE = 1.5              # seconds: younger children are respawned after a delay
TARGETS = {10: "worker", 11: "worker1", 12: "workers", 13: "active-workers", 14: "mule",
           15: "mule1", 16: "mules", 17: "farm_f", 18: "spooler", 20: "worker2"}
KILLABLE = [f"switchboard worker {w}" for w in range(1, 5)] + \
    ["switchboard mule 1", "switchboard mule 2", "switchboard spooler"]
LONG = {"signals": 10_000_000, "reloads": 200, "kills": 500, "ticks": 50_000}
SHORT = {"signals": 200_000, "reloads": 5, "kills": 10, "ticks": 3_000}


def config_text(workdir: Path) -> str:
    text = (f"[switchboard]\nworkers = 4\nmules = 3\nfarms = {{ f = [1, 2] }}\n"
            f"spooler = \"spool\"\npython-path = [{str(APPS)!r}]\nimport = [\"soak\"]\n"
            f"control = {str(workdir / 'control.sock')!r}\n"
            "[[mule]]\nid = 3\nprogram = \"python:soak:driver\"\n")
    for num, target in TARGETS.items():
        text += f"[[signal]]\nnum = {num}\ntarget = \"{target}\"\nhandler = \"python:soak:count\"\n"
    return text + "[[timer]]\nsignal = 20\nseconds = 0.001\n"


# -- what each process holds ---------------------------------------------------------------

def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def sample(inst: Proc) -> dict[str, dict[str, int]]:
    """Process title -> rss_kib, fds, threads, pid."""
    out = {}
    for pid, title in inst.family().items():
        if not title.startswith("switchboard "):
            continue
        try:
            status = _status(pid)
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        out[title] = {"rss_kib": int(status["VmRSS"].split()[0]), "fds": fds,
                      "threads": int(status["Threads"]), "pid": pid}
    return out


def _age(pid: int) -> float:
    start = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start / os.sysconf("SC_CLK_TCK")


# -- the run -------------------------------------------------------------------------------

class Soak:
    def __init__(self, plan: dict[str, int]) -> None:
        self.plan = plan
        workdir = Path(os.environ.get("SOAK_DIR") or Path.cwd() / "build" / "soak")
        workdir.mkdir(parents=True, exist_ok=True)
        for leftover in ("progress", "out.txt"):
            (workdir / leftover).unlink(missing_ok=True)
        os.chmod(workdir, 0o700)
        self.sock = str(workdir / "control.sock")
        (workdir / "switchboard.toml").write_text(config_text(workdir))
        self.inst = Proc([sys.executable, "-m", "switchboard", "run",
                          str(workdir / "switchboard.toml"), "--log-level", "INFO"],
                         env={"SOAK_SIGNALS": str(plan["signals"])}, workdir=workdir,
                         ready=[r"\bready:"])
        self.reloads = self.kills = 0
        self.reloading = False
        self.last_kill = 0.0

    def stats(self) -> dict:
        reply = control.request(self.sock, "stats", 30)
        return reply["stats"]

    def ticks(self, stats: dict) -> int:
        return stats["signals"].get("20", {}).get("raised", 0)

    def run(self, timeout: float) -> dict:
        inst = self.inst
        inst.wait_ready(60)
        self._warm_up(max(2000, self.plan["signals"] // 100))
        start = sample(inst)
        deadline = time.monotonic() + timeout
        stats, next_stats = self.stats(), 0.0
        while not self._finished(stats):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not finished within {timeout:g} s: {self.reloads} "
                                   f"reloads, {self.kills} kills, {self.ticks(stats)} ticks, "
                                   f"log:\n{inst.log_tail()}")
            self._reload_step()
            self._kill_step()
            if time.monotonic() > next_stats:
                stats, next_stats = self.stats(), time.monotonic() + 1.0
            time.sleep(0.02)
        stats = self._quiet(set(start))
        end = sample(inst)
        inst.stop()
        return {"plan": self.plan, "start": start, "end": end, "stats": stats,
                "exit": inst.proc.returncode, "reloads": self.reloads, "kills": self.kills}

    def _warm_up(self, signals: int) -> None:
        """Let imports, caches and the first batches settle before the first sample."""
        progress = self.inst.dir / "progress"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if progress.exists() and int(progress.read_text() or 0) >= signals:
                return
            time.sleep(0.01)
        raise RuntimeError(f"the driver raised fewer than {signals} signals in 60 s; "
                           f"log:\n{self.inst.log_tail()}")

    def _finished(self, stats: dict) -> bool:
        return (self.reloads >= self.plan["reloads"] and not self.reloading
                and self.kills >= self.plan["kills"]
                and self.ticks(stats) >= self.plan["ticks"]
                and "driver-done" in self.inst.lines())

    def _reload_step(self) -> None:
        if self.reloading:
            if self.inst.log_text().count("reload: done") > self.reloads:
                self.reloads += 1
                self.reloading = False
        elif self.reloads < self.plan["reloads"]:
            self.inst.proc.send_signal(signal.SIGHUP)
            self.reloading = True

    def _kill_step(self) -> None:
        left = self.plan["kills"] - self.kills
        if left <= 0 or time.monotonic() - self.last_kill < 0.1:
            return
        pids = [pid for pid, title in self.inst.family().items() if title in KILLABLE]
        old = [pid for pid in pids if _safe_age(pid) > KILL_AGE]
        if old:
            os.kill(random.choice(old), signal.SIGKILL)
            self.kills += 1
            self.last_kill = time.monotonic()

    def _quiet(self, titles: set[str]) -> dict:
        """Stats once every run is counted and every child is back from its last kill."""
        deadline = time.monotonic() + 60
        while True:
            stats = self.stats()
            back = titles <= set(sample(self.inst))
            if (back and not unbalanced(stats)) or time.monotonic() > deadline:
                return stats
            time.sleep(0.2)


def _safe_age(pid: int) -> float:
    try:
        return _age(pid)
    except OSError:
        return 0.0


def unbalanced(stats: dict) -> dict[str, tuple[int, int]]:
    """Signals whose routed copies are not all handled, failed or dropped."""
    out = {}
    for num in TARGETS:
        s = stats["signals"].get(str(num), {})
        done = s.get("handled", 0) + s.get("failed", 0) + sum(s.get("dropped", {}).values())
        if s.get("routed", 0) != done:
            out[str(num)] = (s.get("routed", 0), done)
    return out


# -- the verdict ---------------------------------------------------------------------------

def verdict(result: dict) -> list[str]:
    """What broke a bound, one line each (empty: every check holds)."""
    problems = []
    start, end = result["start"], result["end"]
    for title, before in sorted(start.items()):
        after = end.get(title)
        if after is None:
            problems.append(f"{title}: not running at the end")
            continue
        if after["fds"] > before["fds"]:
            problems.append(f"{title}: descriptors {before['fds']} -> {after['fds']}")
        if after["threads"] > before["threads"]:
            problems.append(f"{title}: threads {before['threads']} -> {after['threads']}")
        if after["rss_kib"] - before["rss_kib"] > RSS_BOUND_KIB:
            problems.append(f"{title}: RSS {before['rss_kib']} -> {after['rss_kib']} KiB")
    for num, (routed, done) in unbalanced(result["stats"]).items():
        problems.append(f"signal {num}: routed {routed}, handled+failed+dropped {done}")
    if result["exit"] != 0:
        problems.append(f"the master exited {result['exit']}")
    return problems


def report(result: dict) -> str:
    stats = result["stats"]
    lines = [f"plan: {result['plan']}; done: {result['reloads']} reloads, {result['kills']} "
             f"kills, {stats['signals'].get('20', {}).get('raised', 0)} timer ticks",
             "", "| process | RSS KiB start | end | fds start | end | threads start | end |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for title, a in sorted(result["start"].items()):
        b = result["end"].get(title, {"rss_kib": 0, "fds": 0, "threads": 0})
        lines.append(f"| {title[12:]} | {a['rss_kib']} | {b['rss_kib']} | {a['fds']} | "
                     f"{b['fds']} | {a['threads']} | {b['threads']} |")
    lines += ["", "| signal | target | raised | routed | handled | dropped |",
              "| ---: | --- | ---: | ---: | ---: | --- |"]
    for num, target in TARGETS.items():
        s = stats["signals"].get(str(num), {})
        lines.append(f"| {num} | {target} | {s.get('raised', 0)} | {s.get('routed', 0)} | "
                     f"{s.get('handled', 0)} | {s.get('dropped', {})} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the test suite's short form")
    for key, value in LONG.items():
        parser.add_argument(f"--{key}", type=int, help=f"default {value} ({SHORT[key]} short)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    plan = {key: getattr(args, key) or (SHORT if args.short else LONG)[key] for key in LONG}
    soak = Soak(plan)
    try:
        result = soak.run(args.timeout)
    finally:
        soak.inst.stop()
    problems = verdict(result)
    print(report(result))
    print("\n" + ("\n".join("FAIL " + p for p in problems) if problems else
                  "every bound held"))
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "problems": problems}, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
