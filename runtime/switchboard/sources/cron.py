"""Cron entries: which local minutes match, and the next one after a given time.

Two ways to say it.  uWSGI's integers (`add_cron(num, minute, hour, day, month,
weekday)`): -1 = any, -N = every N (the value is a multiple of N), 7 = Sunday like 0, and
day/weekday are ORed when both are set (else ANDed).  Or a crontab expression of five
fields in a config entry, read by croniter (its `*/N` counts from the field's first
value, as crontab does).

The rule: an entry fires once in each local minute that matches, at the start of the
minute (or when the master reaches that minute, if it was busy); never twice in one
minute; at start-up it fires at once only if the current minute matches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12),
           ("weekday", 0, 7))
_HORIZON_DAYS = 366 * 8         # a spec that matches nothing in 8 years never matches


@dataclass(frozen=True)
class CronSpec:
    minute: int = -1
    hour: int = -1
    day: int = -1
    month: int = -1
    weekday: int = -1
    expr: str = ""

    def text(self) -> str:
        if self.expr:
            return self.expr
        return " ".join(str(getattr(self, name)) for name, _, _ in _FIELDS)


def from_ints(*values: object) -> CronSpec:
    """A spec from uWSGI's five integers; ValueError/TypeError naming the field."""
    if len(values) != 5:
        raise TypeError(f"a cron entry takes 5 fields (minute, hour, day, month, weekday), "
                        f"not {len(values)}")
    for (name, low, high), value in zip(_FIELDS, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"cron {name} must be an integer, not {type(value).__name__}")
        if value == 0 and name in ("day", "month"):
            raise ValueError(f"cron {name} = 0 is out of range [{low}, {high}]")
        if value > high or (value < 0 and -value > high + 1):
            raise ValueError(f"cron {name} = {value} is out of range [{low}, {high}] "
                             "(or -1 for any, -N for every N)")
    return CronSpec(*values)  # type: ignore[arg-type]


def from_expr(expr: object) -> CronSpec:
    """A spec from a five-field crontab expression; ValueError naming it."""
    if not isinstance(expr, str):
        raise TypeError(f"cron expression must be a string, not {type(expr).__name__}")
    from croniter import croniter  # here, not at the top: only crontab expressions need it
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ValueError(f"malformed cron expression '{expr}' (five fields: "
                         "minute hour day month weekday, e.g. '*/5 9-17 * * 1-5')")
    return CronSpec(expr=expr)


def matches(spec: CronSpec, when: dt.datetime) -> bool:
    """True if the local minute `when` falls in matches the spec."""
    minute = when.replace(second=0, microsecond=0)
    if spec.expr:
        from croniter import croniter
        return bool(croniter.match(spec.expr, minute))
    if not (_field(spec.minute, minute.minute) and _field(spec.hour, minute.hour)
            and _field(spec.month, minute.month)):
        return False
    return _day_matches(spec, minute)


def next_fire(spec: CronSpec, after: dt.datetime) -> dt.datetime | None:
    """The first matching minute strictly after `after`; None if none ever comes."""
    start = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    if spec.expr:
        from croniter import CroniterBadDateError, croniter
        try:
            return croniter(spec.expr, start - dt.timedelta(seconds=1)).get_next(dt.datetime)
        except CroniterBadDateError:       # e.g. "0 0 31 2 *": that date never comes
            return None
    day = start.replace(hour=0, minute=0)
    for _ in range(_HORIZON_DAYS):
        if _field(spec.month, day.month) and _day_matches(spec, day):
            for hour in range(24):
                if not _field(spec.hour, hour):
                    continue
                for minute in range(60):
                    candidate = day.replace(hour=hour, minute=minute)
                    if candidate >= start and _field(spec.minute, minute):
                        return candidate
        day += dt.timedelta(days=1)
    return None


def _field(rule: int, value: int) -> bool:
    if rule == -1:
        return True
    if rule < 0:
        return value % -rule == 0
    return rule == value


def _day_matches(spec: CronSpec, day: dt.datetime) -> bool:
    weekday = (day.weekday() + 1) % 7          # cron: 0 = Sunday
    rule = 0 if spec.weekday == 7 else spec.weekday
    by_day = _field(spec.day, day.day)
    by_weekday = _field(rule, weekday) or (spec.weekday == 7 and weekday == 0)
    if spec.day >= 0 and spec.weekday >= 0:
        return by_day or by_weekday            # crontab: both set means either
    return by_day and by_weekday
