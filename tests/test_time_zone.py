"""Schedules in a time zone (socle:timeZone): read by systemd on the servers, by busybox crond in
the local backup container, and checked against the daylight-saving changes that would make a
night's backup silently not run."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from components.config import load
from components.render.backup import cron_to_oncalendar, render_crontab, render_prune_units, render_systemd_units
from tests.conftest import errors_of, run_values, stack_values
from tests.tools import require

PARIS = "Europe/Paris"



def systemd_elapses(calendar: str, base: str, n: int) -> list[dt.datetime]:
    """The next `n` elapses of an OnCalendar= value after `base` (UTC), as systemd computes them."""
    res = subprocess.run([require("systemd-analyze", "systemd"), "calendar", f"--iterations={n}",
                          f"--base-time={base} UTC", calendar], capture_output=True, text=True,
                         env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, f"systemd refuses OnCalendar={calendar}: {res.stderr}"
    return [dt.datetime.strptime(m, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
            for m in re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", res.stdout)]


def wall_clock_elapses(cron: str, zone: str, base: str, n: int) -> list[dt.datetime]:
    """The same, from cron read as wall-clock time in `zone`: a time the clocks skip does not run."""
    tz = ZoneInfo(zone)
    start = dt.datetime.fromisoformat(base).replace(tzinfo=dt.timezone.utc).astimezone(tz).replace(tzinfo=None)
    it, out = croniter(cron, start), []
    while len(out) < n:
        local = it.get_next(dt.datetime)
        instant = local.replace(tzinfo=tz).astimezone(dt.timezone.utc)
        if instant.astimezone(tz).replace(tzinfo=None) == local and instant not in out:
            out.append(instant)
    return out


# Bases just before the spring and autumn changes of 2026 in Europe and in New York.
@pytest.mark.parametrize("zone,base", [(PARIS, "2026-03-27 12:00:00"), (PARIS, "2026-10-23 12:00:00"),
                                       ("America/New_York", "2026-03-06 12:00:00"), ("UTC", "2026-03-27 12:00:00")])
@pytest.mark.parametrize("cron", ["0 3 * * *", "30 5 * * 0", "15 1 * * 1-5", "0 */6 * * *"])
def test_systemd_runs_the_schedule_at_the_wall_clock_time_across_daylight_saving(cron, zone, base):
    calendar = cron_to_oncalendar(cron, zone)
    assert calendar.endswith(f" {zone}"), calendar
    got, want = systemd_elapses(calendar, base, 5), wall_clock_elapses(cron, zone, base, 5)
    assert got == want, f"OnCalendar={calendar} from {base}: systemd {got}, wall clock {want}"


def test_a_time_the_spring_change_skips_does_not_run_that_day_which_is_why_config_refuses_it():
    # What systemd itself does with 02:30 Paris on 2026-03-29: nothing that day.
    got = systemd_elapses(cron_to_oncalendar("30 2 * * *", PARIS), "2026-03-27 12:00:00", 3)
    assert [d.date().isoformat() for d in got] == ["2026-03-28", "2026-03-30", "2026-03-31"], got
    v = stack_values("prod")
    v["timeZone"] = PARIS
    v["backup"]["schedule"] = "30 2 * * *"
    msg = errors_of(v)
    assert ("socle:backup.schedule: '30 2 * * *' in Europe/Paris falls in the hour skipped when the clocks go "
            "forward (2026-03-29 02:30)") in msg, msg
    assert "set timeZone: UTC" in msg, msg


def test_the_same_time_in_utc_or_on_a_weekday_the_change_never_falls_on_passes():
    for key, zone, cron in (("schedule", "UTC", "30 2 * * *"), ("checkSchedule", PARIS, "30 2 * * 1"),
                            ("schedule", PARIS, "0 3 * * *")):
        v = stack_values("prod")
        v["timeZone"] = zone
        v["backup"][key] = cron
        assert load(v, frozenset())[0].time_zone == zone, (key, zone, cron)


def test_an_unknown_time_zone_is_refused_with_the_closest_name():
    v = stack_values("prod")
    v["timeZone"] = "Europe/Pariss"
    msg = errors_of(v)
    assert "socle:timeZone: 'Europe/Pariss' is not a time zone of the IANA database; did you mean 'Europe/Paris'?" in msg, msg
    v["timeZone"] = "CEST+2"
    assert "is not a time zone of the IANA database" in errors_of(v)


@pytest.mark.parametrize("alias,zone", [("US/Eastern", "America/New_York"), ("Europe/Kiev", "Europe/Kyiv")])
def test_an_old_alias_is_refused_with_the_zones_own_name(alias, zone):
    """Debian 13 moved the backward-compatibility aliases to tzdata-legacy: a timer naming one does
    not load on a server without that package."""
    v = stack_values("prod")
    v["timeZone"] = alias
    msg = errors_of(v)
    assert f"socle:timeZone: '{alias}' is an old alias of '{zone}'" in msg and f"write '{zone}'" in msg, msg


@pytest.mark.parametrize("zone", ["Europe/Paris", "Europe/Busingen", "UTC"])
def test_a_zones_own_name_and_a_country_listed_link_pass(zone):
    v = stack_values("prod")
    v["timeZone"] = zone
    assert load(v, frozenset())[0].time_zone == zone


def test_max_age_counts_the_longer_night_of_the_autumn_change():
    # A daily run in Paris is 25 hours apart once a year: maxAgeHours 24 would fail that week's check.
    v = stack_values("prod")
    v["timeZone"] = PARIS
    v["backup"]["maxAgeHours"] = 25
    msg = errors_of(v)
    assert "25 hours is not longer than the 25 hours between two runs" in msg, msg
    v["backup"]["maxAgeHours"] = 26
    load(v, frozenset())


def test_rendered_units_and_crontab_carry_the_zone():
    units = render_systemd_units({"run": "0 3 * * *", "check": "30 5 * * 0"}, PARIS)
    timers = {p: t for p, t in units.items() if p.endswith(".timer")}
    assert timers and all("OnCalendar=" in t and t.split("OnCalendar=")[1].split("\n")[0].endswith(" Europe/Paris")
                          for t in timers.values()), timers
    prune = render_prune_units("0 7 * * *", PARIS)["/etc/systemd/system/socle-prune.timer"]
    assert "OnCalendar=*-*-* 7:0:00 Europe/Paris" in prune, prune
    assert "(Europe/Paris)" in render_crontab({"run": "0 3 * * *"}, PARIS)


def test_the_program_renders_the_zone_on_servers_and_in_the_local_container():
    v = stack_values("prod")
    v["timeZone"] = PARIS
    run = run_values(v, stack="prod")
    installs = [r for r in run.of_type("command:remote:Command") if r.name.endswith("backup-install")]
    assert installs, "no backup installer in prod"
    for r in installs:
        files = json.loads(r.plain["stdin"])["files"]
        calendars = [line for f in files.values() for line in f["content"].splitlines() if line.startswith("OnCalendar=")]
        assert calendars and all(c.endswith(" Europe/Paris") for c in calendars), f"{r.name}: {calendars}"
    access = [r for r in run.of_type("command:remote:Command") if r.name.endswith("restic-access")]
    for r in access:
        assert "Europe/Paris" in json.loads(r.plain["stdin"])["units"]["/etc/systemd/system/socle-prune.timer"]

    d = stack_values("dev")
    d["timeZone"] = PARIS
    backup = next(r for r in run_values(d, stack="dev").of_type("docker:index/container:Container")
                  if r.plain.get("name", "").endswith("-backup"))
    assert "TZ=Europe/Paris" in backup.plain.get("envs", []), backup.plain.get("envs")
    assert "tzdata" in " ".join(backup.plain["command"]), backup.plain["command"]
    crontab = next(u["content"] for u in backup.plain["uploads"] if u["file"] == "/etc/crontabs/root")
    assert "(Europe/Paris)" in crontab, crontab


@pytest.mark.parametrize("cron,zone,first", [
    ("30 2 * * *", PARIS, "2026-03-29 02:30"),
    ("*/5 2 * * *", PARIS, "2026-03-29 02:00"),        # many runs a night: still found
    ("30 2 25 * *", PARIS, "2029-03-25 02:30"),        # the 25th is the last Sunday only some years
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-04 02:15"),  # a 30-minute change, in October
    ("45 2 * * *", "Australia/Lord_Howe", None),
    ("30 2 * * *", "Australia/Sydney", "2026-10-04 02:30"),
    ("0 0 * * *", "America/Santiago", "2026-09-06 00:00"),      # a change at midnight
    ("0 3 * * *", PARIS, None),
    ("30 2 * * 1", PARIS, None),                        # the change is on a Sunday
    ("30 2 * * *", "UTC", None),
])
def test_the_skipped_hour_is_found_in_any_zone_and_year(cron, zone, first):
    from components.checks import _skipped_local_time

    assert _skipped_local_time(cron, zone) == first, (cron, zone)
