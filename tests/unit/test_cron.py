"""Cron entries (SPEC section 7): which local minutes match, and the next one after a time.

uWSGI's integers (`add_cron(num, minute, hour, day, month, weekday)`): -1 = any, -N =
every N (the value is a multiple of N), 7 = Sunday like 0, day and weekday ORed when
both are set (else ANDed).  Config entries may give a crontab expression instead.
Pure functions: every test gives its own datetimes.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.sources import cron
from switchboard.sources.cron import CronSpec, from_expr, from_ints, matches, next_fire

D = dt.datetime
# 2025-06-01 is a Sunday; 2025-06-02 a Monday ... 2025-06-07 a Saturday.
SUNDAY = D(2025, 6, 1)
WEEK = [SUNDAY + dt.timedelta(days=i) for i in range(7)]     # cron weekdays 0..6


def spec(minute=-1, hour=-1, day=-1, month=-1, weekday=-1) -> CronSpec:
    return from_ints(minute, hour, day, month, weekday)


def minutes_of_day(s: CronSpec, day: dt.datetime) -> list[tuple[int, int]]:
    start = day.replace(hour=0, minute=0, second=0, microsecond=0)
    return [(m.hour, m.minute) for m in (start + dt.timedelta(minutes=i) for i in range(1440))
            if matches(s, m)]


def days_of_year(s: CronSpec, year: int = 2025) -> list[dt.date]:
    """The dates on which the spec matches at 00:00."""
    day, out = D(year, 1, 1), []
    while day.year == year:
        if matches(s, day):
            out.append(day.date())
        day += dt.timedelta(days=1)
    return out


# -- checking uWSGI's integers -------------------------------------------------------------

@pytest.mark.parametrize("values", [
    (-1, -1, -1, -1, -1), (0, 0, 1, 1, 0), (59, 23, 31, 12, 7), (-5, -2, -10, -3, -2),
    (-60, -24, -1, -12, -7),
])
def test_valid_integers_are_accepted(values):
    s = from_ints(*values)
    assert (s.minute, s.hour, s.day, s.month, s.weekday) == values
    assert s.expr == ""
    assert s.text() == " ".join(str(v) for v in values)


@pytest.mark.parametrize("values, field, value", [
    ((60, -1, -1, -1, -1), "minute", "60"),
    ((-1, 24, -1, -1, -1), "hour", "24"),
    ((-1, -1, 32, -1, -1), "day", "32"),
    ((-1, -1, 0, -1, -1), "day", "0"),
    ((-1, -1, -1, 13, -1), "month", "13"),
    ((-1, -1, -1, 0, -1), "month", "0"),
    ((-1, -1, -1, -1, 8), "weekday", "8"),
    ((-61, -1, -1, -1, -1), "minute", "-61"),
    ((-1, -25, -1, -1, -1), "hour", "-25"),
])
def test_out_of_range_integers_are_a_value_error_naming_field_and_value(values, field, value):
    with pytest.raises(ValueError) as err:
        from_ints(*values)
    assert f"cron {field} = {value}" in str(err.value)


@pytest.mark.parametrize("bad", ["5", 5.0, None, True])
def test_a_field_that_is_not_an_integer_is_a_type_error_naming_it(bad):
    with pytest.raises(TypeError, match="cron hour"):
        from_ints(0, bad, -1, -1, -1)


def test_five_fields_are_required():
    with pytest.raises(TypeError, match="5 fields"):
        from_ints(0, 0, 1, 1)


# -- matching uWSGI's integers ---------------------------------------------------------------

def test_all_any_matches_every_minute():
    assert len(minutes_of_day(spec(), SUNDAY)) == 1440


def test_seconds_within_the_minute_do_not_matter():
    s = spec(minute=30, hour=10)
    assert matches(s, D(2025, 6, 1, 10, 30, 0))
    assert matches(s, D(2025, 6, 1, 10, 30, 59, 999999))
    assert not matches(s, D(2025, 6, 1, 10, 31, 0))
    assert not matches(s, D(2025, 6, 1, 10, 29, 59, 999999))


def test_exact_minute_and_hour():
    assert minutes_of_day(spec(minute=15, hour=9), SUNDAY) == [(9, 15)]
    assert minutes_of_day(spec(minute=0), SUNDAY) == [(h, 0) for h in range(24)]
    assert minutes_of_day(spec(hour=23), SUNDAY) == [(23, m) for m in range(60)]


def test_minus_n_means_values_that_are_multiples_of_n():
    assert [m for h, m in minutes_of_day(spec(minute=-15, hour=0), SUNDAY)] == [0, 15, 30, 45]
    assert [h for h, m in minutes_of_day(spec(minute=0, hour=-6), SUNDAY)] == [0, 6, 12, 18]
    assert [m for h, m in minutes_of_day(spec(minute=-7, hour=0), SUNDAY)] == \
        [0, 7, 14, 21, 28, 35, 42, 49, 56]
    # days that are multiples of 10 (uWSGI), not 1, 11, 21, 31 as crontab's */10 would be
    assert [d.day for d in days_of_year(spec(day=-10, month=1))] == [10, 20, 30]
    assert sorted({d.month for d in days_of_year(spec(month=-3))}) == [3, 6, 9, 12]


def test_minus_n_weekday_takes_weekdays_that_are_multiples_of_n():
    matched = [(d.weekday() + 1) % 7 for d in WEEK if matches(spec(weekday=-2), d)]
    assert matched == [0, 2, 4, 6]
    matched = [(d.weekday() + 1) % 7 for d in WEEK if matches(spec(weekday=-3), d)]
    assert matched == [0, 3, 6]


@pytest.mark.parametrize("weekday", [0, 7])
def test_zero_and_seven_both_mean_sunday(weekday):
    assert [d for d in WEEK if matches(spec(weekday=weekday), d)] == [SUNDAY]
    assert {d.weekday() for d in days_of_year(spec(weekday=weekday))} == {6}


def test_each_weekday_number_is_its_day():
    for number, day in enumerate(WEEK):
        assert [d for d in WEEK if matches(spec(weekday=number), d)] == [day]


def test_day_and_weekday_both_set_are_ored():
    """The 13th of each month OR any Friday (5), as crontab and uWSGI do."""
    days = days_of_year(spec(minute=0, hour=0, day=13, weekday=5))
    assert all(d.day == 13 or d.weekday() == 4 for d in days)
    assert {d for d in days if d.day == 13} == {dt.date(2025, m, 13) for m in range(1, 13)}
    fridays = [d for d in days if d.weekday() == 4]
    assert len(fridays) == 52
    assert len(days) == 52 + 12 - 1          # 2025-06-13 is a Friday the 13th


def test_sunday_as_seven_is_ored_with_the_day_too():
    days = days_of_year(spec(day=1, month=6, weekday=7))
    assert days[0] == dt.date(2025, 6, 1)
    assert {d.weekday() for d in days[1:]} == {6}
    assert len(days) == 5                    # June 2025: Sundays 1, 8, 15, 22, 29


def test_a_day_alone_restricts_only_the_day():
    days = days_of_year(spec(day=31))
    assert [d.month for d in days] == [1, 3, 5, 7, 8, 10, 12]


def test_a_weekday_alone_restricts_only_the_weekday():
    days = days_of_year(spec(weekday=1))
    assert len(days) == 52 and {d.weekday() for d in days} == {0}


def test_an_every_n_day_with_a_weekday_is_anded():
    """Only values >= 0 count as 'set' for the OR (uWSGI): -N with a weekday is ANDed."""
    days = days_of_year(spec(day=-2, weekday=1))
    assert days and all(d.day % 2 == 0 and d.weekday() == 0 for d in days)


def test_every_field_at_once():
    s = spec(minute=-30, hour=-12, day=-1, month=2, weekday=-1)
    assert matches(s, D(2025, 2, 14, 12, 30))
    assert not matches(s, D(2025, 3, 14, 12, 30))
    assert not matches(s, D(2025, 2, 14, 13, 30))
    assert not matches(s, D(2025, 2, 14, 12, 15))


# -- the next matching minute (integers) -----------------------------------------------------

def test_next_fire_is_strictly_after_and_at_the_start_of_a_minute():
    s = spec(minute=30)
    assert next_fire(s, D(2025, 6, 1, 10, 29, 59, 999999)) == D(2025, 6, 1, 10, 30)
    assert next_fire(s, D(2025, 6, 1, 10, 30)) == D(2025, 6, 1, 11, 30)
    assert next_fire(s, D(2025, 6, 1, 10, 30, 30)) == D(2025, 6, 1, 11, 30)
    assert next_fire(spec(), D(2025, 6, 1, 10, 30, 30)) == D(2025, 6, 1, 10, 31)


def test_next_fire_crosses_days_months_and_years():
    assert next_fire(spec(0, 0), D(2025, 12, 31, 23, 59)) == D(2026, 1, 1)
    assert next_fire(spec(0, 0, 1, 3), D(2025, 3, 1, 0, 0)) == D(2026, 3, 1)
    assert next_fire(spec(59, 23, 31), D(2025, 4, 1)) == D(2025, 5, 31, 23, 59)


def test_next_fire_of_minus_n_fields():
    assert next_fire(spec(minute=-5), D(2025, 6, 1, 10, 7, 12)) == D(2025, 6, 1, 10, 10)
    assert next_fire(spec(minute=0, hour=-6), D(2025, 6, 1, 12, 0)) == D(2025, 6, 1, 18, 0)
    assert next_fire(spec(0, 0, -10), D(2025, 1, 30, 0, 0)) == D(2025, 2, 10)


def test_next_fire_with_day_ored_with_weekday():
    s = spec(0, 0, day=13, weekday=5)
    assert next_fire(s, D(2025, 6, 1)) == D(2025, 6, 6)       # a Friday before the 13th
    assert next_fire(s, D(2025, 6, 6)) == D(2025, 6, 13)
    assert next_fire(s, D(2025, 6, 13)) == D(2025, 6, 20)


def test_feb_29_comes_in_the_next_leap_year():
    assert next_fire(spec(0, 0, 29, 2), D(2025, 1, 1)) == D(2028, 2, 29)


@pytest.mark.parametrize("day, month", [(31, 2), (30, 2), (31, 4), (31, 6), (31, 9), (31, 11)])
def test_an_impossible_date_never_comes(day, month):
    s = spec(0, 0, day, month)
    assert next_fire(s, D(2025, 1, 1)) is None
    assert days_of_year(s, 2024) == []


def test_an_impossible_date_ored_with_a_weekday_still_fires_on_that_weekday():
    s = spec(0, 0, 31, 2, 1)
    assert next_fire(s, D(2025, 1, 1)) == D(2025, 2, 3)     # the first Monday of February


@settings(max_examples=150, deadline=None)
@given(minute=st.sampled_from([-1, -5, -15, 0, 7, 59]),
       hour=st.sampled_from([-1, -6, 0, 13, 23]),
       day=st.sampled_from([-1, -2, 1, 15, 28, 31]),
       month=st.sampled_from([-1, -4, 1, 2, 12]),
       weekday=st.sampled_from([-1, -2, 0, 3, 7]),
       after=st.datetimes(min_value=D(2024, 1, 1), max_value=D(2030, 1, 1)))
def test_next_fire_matches_and_nothing_in_between_does(minute, hour, day, month, weekday,
                                                      after):
    s = spec(minute, hour, day, month, weekday)
    found = next_fire(s, after)
    if found is None:
        return
    assert found > after and found.second == found.microsecond == 0
    assert matches(s, found)
    probe = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    steps = 0
    while probe < found and steps < 3000:       # the minutes just after `after`
        assert not matches(s, probe), f"{probe} matches before next_fire's {found}"
        probe += dt.timedelta(minutes=1)
        steps += 1


# -- crontab expressions ---------------------------------------------------------------------

@pytest.mark.parametrize("expr", ["* * * * *", "*/5 9-17 * * 1-5", "0 0 1 1 *",
                                  "0,30 * * * 0", "15 3 * * 7", "0-59/15 * * * MON",
                                  "0 0 29 2 *"])
def test_crontab_expressions_are_accepted(expr):
    s = from_expr(expr)
    assert s.expr == expr and s.text() == expr


@pytest.mark.parametrize("expr", ["", "* * * *", "* * * * * *", "61 * * * *", "* 24 * * *",
                                  "* * 32 * *", "* * * 13 *", "* * * * 8", "a b c d e",
                                  "*/0 * * * *", "@hourly", "5-1-2 * * * *"])
def test_malformed_expressions_are_a_value_error_naming_the_expression(expr):
    with pytest.raises(ValueError) as err:
        from_expr(expr)
    assert f"'{expr}'" in str(err.value)
    assert "malformed cron expression" in str(err.value)


@pytest.mark.parametrize("expr", [None, 5, ["* * * * *"]])
def test_an_expression_that_is_not_a_string_is_a_type_error(expr):
    with pytest.raises(TypeError, match="cron expression"):
        from_expr(expr)


def test_an_expression_matches_its_minutes():
    s = from_expr("*/5 9-17 * * 1-5")
    monday = WEEK[1]
    got = [(m.hour, m.minute) for m in (monday.replace(hour=8) + dt.timedelta(minutes=i)
                                        for i in range(11 * 60)) if matches(s, m)]
    assert got[0] == (9, 0) and got[-1] == (17, 55)      # nothing at 8:xx or 18:xx
    assert len(got) == 9 * 12
    assert all(m % 5 == 0 for h, m in got)
    for weekend in (SUNDAY, WEEK[6]):
        assert not any(matches(s, weekend.replace(hour=h, minute=m))
                       for h in (9, 12, 17) for m in (0, 5, 55))


def test_expression_next_fire():
    s = from_expr("*/5 9-17 * * 1-5")
    assert next_fire(s, D(2025, 6, 2, 9, 0)) == D(2025, 6, 2, 9, 5)
    assert next_fire(s, D(2025, 6, 2, 9, 3, 30)) == D(2025, 6, 2, 9, 5)
    assert next_fire(s, D(2025, 6, 6, 17, 56)) == D(2025, 6, 9, 9, 0)      # Fri -> Mon
    assert next_fire(from_expr("* * * * *"), D(2025, 6, 1, 10, 0, 59)) == D(2025, 6, 1, 10, 1)


def test_an_expression_every_n_counts_from_the_first_value_as_crontab():
    assert [d.day for d in days_of_year(from_expr("0 0 */10 1 *"))] == [1, 11, 21, 31]


def test_expression_day_and_weekday_are_ored_as_crontab():
    days = days_of_year(from_expr("0 0 13 * 5"))
    assert len(days) == 52 + 12 - 1


def test_seven_is_sunday_in_an_expression():
    assert [d for d in WEEK if matches(from_expr("0 0 * * 7"), d)] == [SUNDAY]


@pytest.mark.parametrize("expr", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *"])
def test_an_impossible_expression_date_never_comes(expr):
    """next_fire() answers None when no minute ever matches, for expressions too."""
    assert next_fire(from_expr(expr), D(2025, 1, 1)) is None


def test_the_same_rule_as_integers_and_expression_agree():
    pairs = [(spec(minute=30, hour=9), "30 9 * * *"),
             (spec(minute=0, hour=-6), "0 */6 * * *"),
             (spec(minute=-15), "*/15 * * * *"),
             (spec(0, 12, weekday=7), "0 12 * * 0"),
             (spec(0, 0, 13, weekday=5), "0 0 13 * 5")]
    start = D(2025, 1, 1)
    for ints, expr in pairs:
        when = start
        for _ in range(20):
            a, b = next_fire(ints, when), next_fire(from_expr(expr), when)
            assert a == b, (ints.text(), expr, when)
            when = a


def test_the_module_rule_is_documented():
    """The rule the schedule implements is written at the top of cron.py."""
    doc = cron.__doc__ or ""
    assert "never twice in one" in doc and "at start-up" in doc
