//! The NYSE calendar of `cachefill_core::calendar` against pandas_market_calendars' NYSE
//! calendar from the project venv: every session of the supported range, with its open and
//! close in New York time. The two must agree except on the days of [`KNOWN_DIFFERENCES`],
//! which `docs/CALENDAR.md` explains; any other difference fails the test, and so does a
//! listed difference that no longer shows.

use std::collections::BTreeMap;
use std::fmt;

use cachefill_core::calendar::{self, FIRST_SUPPORTED, LAST_SUPPORTED};
use cachefill_e2e::Tools;
use cachefill_e2e::python::run_python;
use cachefill_e2e::tools::{skipped, workspace_root};
use chrono::{NaiveDate, NaiveTime};

const TEST: &str = "calendar against pandas_market_calendars";

/// A day on which the two calendars are known to differ: what each says, `None` for no
/// session. `docs/CALENDAR.md` gives the reason for each, in a table of the same dates.
struct Known {
    date: &'static str,
    pandas: Option<(&'static str, &'static str)>,
    cachefill: Option<(&'static str, &'static str)>,
}

/// The only differences the test accepts.
const KNOWN_DIFFERENCES: [Known; 1] = [
    // Trading began at 11:00; pandas_market_calendars files the day under its 09:31 opens.
    Known {
        date: "1990-12-27",
        pandas: Some(("09:31", "16:00")),
        cachefill: Some(("11:00", "16:00")),
    },
];

/// Prints `{"version": ..., "sessions": [[date, open, close], ...]}` from `START` to `END`
/// (defined in front of it), times in New York. They are converted with `zoneinfo`, not pandas:
/// pandas 2 drops daylight saving time after 2037 when it converts.
const SCHEDULE_SCRIPT: &str = r#"
import json
import sys
from zoneinfo import ZoneInfo

import pandas_market_calendars as mcal

new_york = ZoneInfo("America/New_York")
schedule = mcal.get_calendar("NYSE").schedule(start_date=START, end_date=END)


def wall(instant):
    return instant.to_pydatetime().astimezone(new_york).strftime("%H:%M:%S")


sessions = [
    [day.strftime("%Y-%m-%d"), wall(market_open), wall(market_close)]
    for day, market_open, market_close in zip(
        schedule.index, schedule["market_open"], schedule["market_close"]
    )
]
json.dump({"version": mcal.__version__, "sessions": sessions}, sys.stdout)
"#;

const FIND_SCRIPT: &str = r#"
import importlib.util
print("present" if importlib.util.find_spec("pandas_market_calendars") else "missing")
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hours {
    open: NaiveTime,
    close: NaiveTime,
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}–{}",
            self.open.format("%H:%M"),
            self.close.format("%H:%M")
        )
    }
}

/// What one calendar says about a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Day(Option<Hours>);

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(hours) => write!(f, "session {hours}"),
            None => f.write_str("no session"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Difference {
    date: NaiveDate,
    pandas: Day,
    cachefill: Day,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: pandas_market_calendars {}, cachefill {}",
            self.date, self.pandas, self.cachefill
        )?;
        if let Some(name) = calendar::holiday_name(self.date) {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

fn date(text: &str) -> NaiveDate {
    text.parse()
        .unwrap_or_else(|e| panic!("date {text:?}: {e}"))
}

fn time(text: &str) -> NaiveTime {
    NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .unwrap_or_else(|e| panic!("time {text:?}: {e}"))
}

fn hours((open, close): (&str, &str)) -> Hours {
    Hours {
        open: time(open),
        close: time(close),
    }
}

fn known_differences() -> Vec<Difference> {
    KNOWN_DIFFERENCES
        .iter()
        .map(|known| Difference {
            date: date(known.date),
            pandas: Day(known.pandas.map(hours)),
            cachefill: Day(known.cachefill.map(hours)),
        })
        .collect()
}

/// pandas_market_calendars' sessions from the script's output, and its version.
fn parse_schedule(output: &str) -> (String, BTreeMap<NaiveDate, Hours>) {
    let json: serde_json::Value = serde_json::from_str(output)
        .unwrap_or_else(|e| panic!("the schedule script printed no JSON ({e}): {output:.500}"));
    let version = json["version"].as_str().unwrap_or("?").to_string();
    let rows = json["sessions"].as_array().expect("a list of sessions");
    let sessions = rows
        .iter()
        .map(|row| {
            let field = |i: usize| row[i].as_str().unwrap_or_else(|| panic!("row {row}"));
            let hours = Hours {
                open: time(field(1)),
                close: time(field(2)),
            };
            (date(field(0)), hours)
        })
        .collect();
    (version, sessions)
}

/// cachefill's sessions and hours from `start` to `end`.
fn cachefill_schedule(start: NaiveDate, end: NaiveDate) -> BTreeMap<NaiveDate, Hours> {
    calendar::sessions_between(start, end)
        .expect("the supported range")
        .into_iter()
        .map(|session| {
            let hours = calendar::session_hours(session)
                .expect("in range")
                .expect("a session has hours");
            (
                session,
                Hours {
                    open: hours.open,
                    close: hours.close,
                },
            )
        })
        .collect()
}

/// Every date on which the two schedules disagree, in order.
fn differences(
    pandas: &BTreeMap<NaiveDate, Hours>,
    cachefill: &BTreeMap<NaiveDate, Hours>,
) -> Vec<Difference> {
    let mut dates: Vec<NaiveDate> = pandas.keys().chain(cachefill.keys()).copied().collect();
    dates.sort();
    dates.dedup();
    dates
        .into_iter()
        .map(|date| Difference {
            date,
            pandas: Day(pandas.get(&date).copied()),
            cachefill: Day(cachefill.get(&date).copied()),
        })
        .filter(|d| d.pandas != d.cachefill)
        .collect()
}

#[tokio::test]
async fn every_session_matches_pandas_market_calendars_but_the_listed_differences()
-> anyhow::Result<()> {
    if skipped(TEST) {
        return Ok(());
    }
    let tools = Tools::locate()?;
    if run_python(&tools, FIND_SCRIPT, &[]).await?.trim() != "present" {
        let venv = tools.bin_dir().parent().unwrap_or(tools.bin_dir());
        println!(
            "SKIPPED {TEST}: pandas_market_calendars is not installed in {} (scripts/setup-venv \
             installs it from scripts/requirements-dev.txt)",
            venv.display()
        );
        return Ok(());
    }
    let script =
        format!("START, END = \"{FIRST_SUPPORTED}\", \"{LAST_SUPPORTED}\"\n{SCHEDULE_SCRIPT}");
    let output = run_python(&tools, &script, &[]).await?;
    let (version, pandas) = parse_schedule(&output);
    let cachefill = cachefill_schedule(FIRST_SUPPORTED, LAST_SUPPORTED);
    assert!(
        pandas.len() > 27_000,
        "pandas_market_calendars {version} gave only {} sessions",
        pandas.len()
    );

    let found = differences(&pandas, &cachefill);
    let known = known_differences();
    let unexpected: Vec<String> = found
        .iter()
        .filter(|d| !known.contains(d))
        .map(|d| format!("  {d}"))
        .collect();
    let gone: Vec<String> = known
        .iter()
        .filter(|d| !found.contains(d))
        .map(|d| format!("  {d}"))
        .collect();
    assert!(
        unexpected.is_empty() && gone.is_empty(),
        "cachefill's NYSE calendar against pandas_market_calendars {version}, {FIRST_SUPPORTED} \
         to {LAST_SUPPORTED}:\n{} differences not in KNOWN_DIFFERENCES:\n{}\n{} listed \
         differences no longer seen:\n{}\n(fix the calendar, or list and justify the difference \
         in KNOWN_DIFFERENCES and docs/CALENDAR.md)",
        unexpected.len(),
        unexpected.join("\n"),
        gone.len(),
        gone.join("\n"),
    );
    println!(
        "{TEST}: {} sessions from {FIRST_SUPPORTED} to {LAST_SUPPORTED} agree with \
         pandas_market_calendars {version}, hours included, but for the {} listed differences",
        cachefill.len(),
        known.len()
    );
    Ok(())
}

/// The dates of the differences table in `docs/CALENDAR.md`: the first cell of each row of the
/// section headed "Differences", when it is a date.
fn documented_dates(markdown: &str) -> Vec<NaiveDate> {
    let section = markdown
        .split("\n## ")
        .find(|section| section.starts_with("Differences"))
        .expect("docs/CALENDAR.md has a section headed \"Differences\"");
    section
        .lines()
        .filter_map(|line| line.strip_prefix('|'))
        .filter_map(|row| row.split('|').next())
        .filter_map(|cell| cell.trim().parse().ok())
        .collect()
}

#[test]
fn the_known_differences_are_the_ones_docs_calendar_md_explains() {
    let path = workspace_root().join("docs/CALENDAR.md");
    let markdown = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let listed: Vec<NaiveDate> = known_differences().iter().map(|d| d.date).collect();
    assert_eq!(documented_dates(&markdown), listed);
}

#[test]
fn differences_name_both_sides() {
    let pandas = BTreeMap::from([
        (date("2024-07-03"), hours(("09:30", "13:00"))),
        (date("2024-07-04"), hours(("09:30", "16:00"))),
    ]);
    let cachefill = BTreeMap::from([
        (date("2024-07-03"), hours(("09:30", "13:00"))),
        (date("2024-07-05"), hours(("09:30", "16:00"))),
    ]);
    let found: Vec<String> = differences(&pandas, &cachefill)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "2024-07-04: pandas_market_calendars session 09:30–16:00, cachefill no session \
             (Independence Day)",
            "2024-07-05: pandas_market_calendars no session, cachefill session 09:30–16:00",
        ]
    );
}
