"""Event sources: timers, rb_timers, cron, file monitors, PostgreSQL notifications.

Timers and cron are pure: they compute fire times from a clock they are given, and the
master's loop asks them.  File monitors and PostgreSQL listeners need threads (watchdog,
psycopg), so they run in a helper process the master forks (procs/sources.py).
"""
