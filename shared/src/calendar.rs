//! The NYSE trading calendar that coverage is measured against (`docs/ARCHITECTURE.md` §4).
//!
//! The calendar is rule-based for every date from [`FIRST_SUPPORTED`]
//! (1990-01-01) to [`LAST_SUPPORTED`] (2099-12-31); dates outside that range
//! are rejected with [`CalendarError::OutOfRange`] rather than guessed. A date is
//! a session when it is a weekday that is neither a regular holiday nor a
//! special closure. Every session of the range, hours included, is compared
//! with pandas_market_calendars' NYSE calendar by the end-to-end test
//! `tests/tests/calendar.rs`; `docs/CALENDAR.md` lists the days where the two
//! differ and why.
//!
//! Regular holidays (`HOLIDAYS`), each in the years given:
//!
//! | holiday | rule | years |
//! |---|---|---|
//! | New Year's Day | January 1, observed, but *not* moved from a Saturday to December 31 | all |
//! | Martin Luther King Jr. Day | 3rd Monday of January | from 1998 |
//! | Washington's Birthday | 3rd Monday of February | all |
//! | Good Friday | the Friday before Western (Gregorian) Easter Sunday | all |
//! | Memorial Day | last Monday of May | all |
//! | Juneteenth | June 19, observed | from 2022 |
//! | Independence Day | July 4, observed | all |
//! | Labor Day | 1st Monday of September | all |
//! | Thanksgiving | 4th Thursday of November | all |
//! | Christmas | December 25, observed | all |
//!
//! "Observed" is the weekend rule for fixed dates: a Saturday holiday closes the
//! preceding Friday, a Sunday holiday the following Monday. New Year's Day only
//! moves from a Sunday, so that the exchange is open on the last day of the
//! year (NYSE Rule 7.2: unusual business conditions such as the end of a yearly
//! accounting period).
//!
//! Regular hours are 09:30–16:00 New York time. Early closes (`EARLY_CLOSES`)
//! are at 13:00, and at 14:00 before 1993:
//!
//! | day | rule | years |
//! |---|---|---|
//! | day before Independence Day | July 3 on a Monday, Tuesday or Thursday | from 1995 |
//! | day before Independence Day | July 3 on a Wednesday | from 2013 |
//! | day after Independence Day | July 5 on a Friday | 1996 to 2012 |
//! | day after Thanksgiving | the Friday after the 4th Thursday of November | from 1992 |
//! | Christmas Eve | December 24 from Monday to Thursday | all |
//!
//! (A July 3 on a Friday or a December 24 on a Friday is the observed holiday itself.)
//!
//! Special days (`SPECIAL_DAYS`), one-off and listed by date. Full-day closures:
//!
//! | date | closure |
//! |---|---|
//! | 1994-04-27 | National Day of Mourning for Richard Nixon |
//! | 2001-09-11 to 2001-09-14 | September 11 |
//! | 2004-06-11 | National Day of Mourning for Ronald Reagan |
//! | 2007-01-02 | National Day of Mourning for Gerald Ford |
//! | 2012-10-29, 2012-10-30 | Hurricane Sandy |
//! | 2018-12-05 | National Day of Mourning for George H. W. Bush |
//! | 2025-01-09 | National Day of Mourning for Jimmy Carter |
//!
//! Sessions with other hours than the rules give (late opens, unscheduled early closes):
//!
//! | date | hours | why |
//! |---|---|---|
//! | 1990-12-27 | 11:00–16:00 | Con Edison transformer explosion |
//! | 1991-01-17 | 09:31–16:00 | moment of silence for troops in the Gulf |
//! | 1991-02-25 | 09:31–16:00 | moment of silence for troops in the Gulf |
//! | 1994-02-11 | 09:30–14:30 | snowstorm |
//! | 1995-12-18 | 10:30–16:00 | computer system trouble |
//! | 1996-01-08 | 11:00–14:00 | blizzard |
//! | 1997-10-27 | 09:30–15:30 | circuit breaker closed the market |
//! | 1997-12-26 | 09:30–13:00 | Friday after Christmas |
//! | 2001-09-17 | 09:33–16:00 | two minutes of silence for September 11 |
//! | 2001-10-08 | 09:31–16:00 | silence for Operation Enduring Freedom |
//! | 2002-09-11 | 12:00–16:00 | first anniversary of September 11 |
//! | 2003-03-20 | 09:32–16:00 | silence for Operation Iraqi Freedom |
//! | 2003-12-26 | 09:30–13:00 | Friday after Christmas |
//! | 2004-06-07 | 09:32–16:00 | moment of silence for Ronald Reagan |
//! | 2005-06-01 | 09:30–15:56 | systems communication problem |
//! | 2006-12-27 | 09:32–16:00 | moment of silence for Gerald Ford |
//!
//! Trading halts inside a session (a power failure or a market-wide circuit
//! breaker after which trading resumed the same day) do not change a session's
//! hours and are not modelled. Closures announced after these tables were
//! written cannot be known in advance and must be added here when they happen.

use std::ops::RangeInclusive;

use chrono::Weekday::{Fri, Mon, Thu, Tue, Wed};
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Utc, Weekday,
};

use Observance::{NearestWeekday, SundayToMonday};

/// The exchange's time zone; ThetaData timestamps are wall-clock times in it.
pub const NEW_YORK: chrono_tz::Tz = chrono_tz::America::New_York;

/// First date the calendar answers for.
pub const FIRST_SUPPORTED: NaiveDate = ymd(FIRST_YEAR, 1, 1);

/// Last date the calendar answers for.
pub const LAST_SUPPORTED: NaiveDate = ymd(LAST_YEAR, 12, 31);

const FIRST_YEAR: i32 = 1990;
const LAST_YEAR: i32 = 2099;

/// Opening time of a regular session, New York wall clock.
pub const REGULAR_OPEN: NaiveTime = hm(9, 30);

/// Closing time of a regular session, New York wall clock.
pub const REGULAR_CLOSE: NaiveTime = hm(16, 0);

/// Closing time of an early-close session from 1993 on, New York wall clock;
/// before 1993 early closes were at 14:00.
pub const EARLY_CLOSE: NaiveTime = hm(13, 0);

/// Closing time of an early-close session before 1993.
const EARLY_CLOSE_BEFORE_1993: NaiveTime = hm(14, 0);

/// Every year of the supported range, for rules that applied all along.
const ALL_YEARS: RangeInclusive<i32> = since(FIRST_YEAR);

/// A day of the year that a rule names.
#[derive(Debug, Clone, Copy)]
enum Day {
    /// `Fixed(month, day)`.
    Fixed(u32, u32),
    /// `Nth(month, weekday, n)`: the `n`th `weekday` of `month`.
    Nth(u32, Weekday, u8),
    /// `Last(month, weekday)`: the last `weekday` of `month`.
    Last(u32, Weekday),
    /// `Easter(days)`: Western Easter Sunday plus `days` (negative: before).
    Easter(i64),
}

/// Where a holiday that falls on a weekend is observed.
#[derive(Debug, Clone, Copy)]
enum Observance {
    /// Saturday on the Friday before, Sunday on the Monday after.
    NearestWeekday,
    /// Sunday on the Monday after; a Saturday holiday is not made up.
    SundayToMonday,
}

/// A regular holiday and the years it applies in.
#[derive(Debug)]
struct HolidayRule {
    name: &'static str,
    day: Day,
    observance: Observance,
    years: RangeInclusive<i32>,
}

const fn holiday(
    name: &'static str,
    day: Day,
    observance: Observance,
    years: RangeInclusive<i32>,
) -> HolidayRule {
    HolidayRule {
        name,
        day,
        observance,
        years,
    }
}

const THANKSGIVING: Day = Day::Nth(11, Thu, 4);

/// The regular holidays; the module docs list them in the same order.
#[rustfmt::skip]
const HOLIDAYS: [HolidayRule; 10] = [
    holiday("New Year's Day",             Day::Fixed(1, 1),     SundayToMonday, ALL_YEARS),
    holiday("Martin Luther King Jr. Day", Day::Nth(1, Mon, 3),  NearestWeekday, since(1998)),
    holiday("Washington's Birthday",      Day::Nth(2, Mon, 3),  NearestWeekday, ALL_YEARS),
    holiday("Good Friday",                Day::Easter(-2),      NearestWeekday, ALL_YEARS),
    holiday("Memorial Day",               Day::Last(5, Mon),    NearestWeekday, ALL_YEARS),
    holiday("Juneteenth",                 Day::Fixed(6, 19),    NearestWeekday, since(2022)),
    holiday("Independence Day",           Day::Fixed(7, 4),     NearestWeekday, ALL_YEARS),
    holiday("Labor Day",                  Day::Nth(9, Mon, 1),  NearestWeekday, ALL_YEARS),
    holiday("Thanksgiving",               THANKSGIVING,         NearestWeekday, ALL_YEARS),
    holiday("Christmas",                  Day::Fixed(12, 25),   NearestWeekday, ALL_YEARS),
];

/// A recurring early close: the day `days` after `day` (negative: before), when
/// that falls on one of `weekdays`, in `years`.
#[derive(Debug)]
struct EarlyCloseRule {
    day: Day,
    days: i64,
    weekdays: &'static [Weekday],
    years: RangeInclusive<i32>,
}

const fn early(
    day: Day,
    days: i64,
    weekdays: &'static [Weekday],
    years: RangeInclusive<i32>,
) -> EarlyCloseRule {
    EarlyCloseRule {
        day,
        days,
        weekdays,
        years,
    }
}

/// The recurring early closes; the module docs list them in the same order.
#[rustfmt::skip]
const EARLY_CLOSES: [EarlyCloseRule; 5] = [
    // Day before Independence Day; on a Wednesday from 2013 too (then no early close on July 5).
    early(Day::Fixed(7, 4),   -1, &[Mon, Tue, Thu],      since(1995)),
    early(Day::Fixed(7, 4),   -1, &[Wed],                since(2013)),
    // Day after Independence Day.
    early(Day::Fixed(7, 4),    1, &[Fri],                1996..=2012),
    // Day after Thanksgiving.
    early(THANKSGIVING,        1, &[Fri],                since(1992)),
    // Christmas Eve.
    early(Day::Fixed(12, 25), -1, &[Mon, Tue, Wed, Thu], ALL_YEARS),
];

/// How a special day departs from the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    /// No session, for the reason given.
    Closed(&'static str),
    /// A session with these hours instead of the ones the rules give, for the
    /// reason given.
    Hours {
        open: NaiveTime,
        close: NaiveTime,
        why: &'static str,
    },
}

const fn closed(date: NaiveDate, why: &'static str) -> (NaiveDate, Special) {
    (date, Special::Closed(why))
}

const fn hours(
    date: NaiveDate,
    open: NaiveTime,
    close: NaiveTime,
    why: &'static str,
) -> (NaiveDate, Special) {
    (date, Special::Hours { open, close, why })
}

/// One-off closures and sessions with unusual hours, sorted by date; the
/// module docs list them.
#[rustfmt::skip]
const SPECIAL_DAYS: [(NaiveDate, Special); 27] = [
    hours(ymd(1990, 12, 27), hm(11, 0), hm(16, 0), "Con Edison transformer explosion"),
    hours(ymd(1991, 1, 17), hm(9, 31), hm(16, 0), "moment of silence for troops in the Gulf"),
    hours(ymd(1991, 2, 25), hm(9, 31), hm(16, 0), "moment of silence for troops in the Gulf"),
    hours(ymd(1994, 2, 11), hm(9, 30), hm(14, 30), "snowstorm"),
    closed(ymd(1994, 4, 27), "National Day of Mourning for Richard Nixon"),
    hours(ymd(1995, 12, 18), hm(10, 30), hm(16, 0), "computer system trouble"),
    hours(ymd(1996, 1, 8), hm(11, 0), hm(14, 0), "blizzard"),
    hours(ymd(1997, 10, 27), hm(9, 30), hm(15, 30), "circuit breaker closed the market"),
    hours(ymd(1997, 12, 26), hm(9, 30), hm(13, 0), "Friday after Christmas"),
    closed(ymd(2001, 9, 11), "September 11"),
    closed(ymd(2001, 9, 12), "September 11"),
    closed(ymd(2001, 9, 13), "September 11"),
    closed(ymd(2001, 9, 14), "September 11"),
    hours(ymd(2001, 9, 17), hm(9, 33), hm(16, 0), "two minutes of silence for September 11"),
    hours(ymd(2001, 10, 8), hm(9, 31), hm(16, 0), "silence for Operation Enduring Freedom"),
    hours(ymd(2002, 9, 11), hm(12, 0), hm(16, 0), "first anniversary of September 11"),
    hours(ymd(2003, 3, 20), hm(9, 32), hm(16, 0), "silence for Operation Iraqi Freedom"),
    hours(ymd(2003, 12, 26), hm(9, 30), hm(13, 0), "Friday after Christmas"),
    hours(ymd(2004, 6, 7), hm(9, 32), hm(16, 0), "moment of silence for Ronald Reagan"),
    closed(ymd(2004, 6, 11), "National Day of Mourning for Ronald Reagan"),
    hours(ymd(2005, 6, 1), hm(9, 30), hm(15, 56), "systems communication problem"),
    hours(ymd(2006, 12, 27), hm(9, 32), hm(16, 0), "moment of silence for Gerald Ford"),
    closed(ymd(2007, 1, 2), "National Day of Mourning for Gerald Ford"),
    closed(ymd(2012, 10, 29), "Hurricane Sandy"),
    closed(ymd(2012, 10, 30), "Hurricane Sandy"),
    closed(ymd(2018, 12, 5), "National Day of Mourning for George H. W. Bush"),
    closed(ymd(2025, 1, 9), "National Day of Mourning for Jimmy Carter"),
];

/// A date the calendar cannot answer for.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CalendarError {
    #[error(
        "date {date} is outside the supported NYSE calendar range {first} to {last}",
        first = FIRST_SUPPORTED,
        last = LAST_SUPPORTED
    )]
    OutOfRange { date: NaiveDate },
}

/// Opening and closing time of one session, New York wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHours {
    pub open: NaiveTime,
    pub close: NaiveTime,
}

/// Whether the exchange trades on `date`.
pub fn is_session(date: NaiveDate) -> Result<bool, CalendarError> {
    check_range(date)?;
    Ok(is_weekday(date) && closure_name(date).is_none())
}

/// Every session from `start` to `end`, both inclusive, in order; empty when
/// `start > end`.
pub fn sessions_between(start: NaiveDate, end: NaiveDate) -> Result<Vec<NaiveDate>, CalendarError> {
    if start > end {
        return Ok(Vec::new());
    }
    check_range(start)?;
    check_range(end)?;
    let days = (end - start).num_days() + 1;
    let mut sessions = Vec::with_capacity(usize::try_from(days).unwrap_or(0) * 5 / 7 + 2);
    // The closures of a year are worked out once for all its days.
    for year in start.year()..=end.year() {
        let closures = closures_in(year);
        let first = start.max(ymd(year, 1, 1));
        let last = end.min(ymd(year, 12, 31));
        sessions.extend(
            first
                .iter_days()
                .take_while(|day| *day <= last)
                .filter(|day| is_weekday(*day) && !closures.contains(day)),
        );
    }
    Ok(sessions)
}

/// Why the exchange is closed on a weekday: the holiday or special closure that
/// falls on `date` (on the observed date for weekend holidays).
///
/// `None` for sessions, for Saturdays and Sundays (even when a holiday's own
/// date falls on them) and for dates outside the supported range, so it is
/// `Some` exactly for the weekdays that are not sessions.
pub fn holiday_name(date: NaiveDate) -> Option<&'static str> {
    if check_range(date).is_err() || !is_weekday(date) {
        return None;
    }
    closure_name(date)
}

/// Trading hours of `date`; `None` when it is not a session.
pub fn session_hours(date: NaiveDate) -> Result<Option<SessionHours>, CalendarError> {
    if !is_session(date)? {
        return Ok(None);
    }
    if let Some(Special::Hours { open, close, .. }) = special_day(date) {
        return Ok(Some(SessionHours { open, close }));
    }
    let close = if is_early_close(date) {
        early_close(date.year())
    } else {
        REGULAR_CLOSE
    };
    Ok(Some(SessionHours {
        open: REGULAR_OPEN,
        close,
    }))
}

/// The first session strictly after `after`.
pub fn next_session(after: NaiveDate) -> Result<NaiveDate, CalendarError> {
    check_range(after)?;
    let mut day = after;
    loop {
        day = following_day(day)?;
        if is_session(day)? {
            return Ok(day);
        }
    }
}

/// The last session strictly before `before`.
pub fn previous_session(before: NaiveDate) -> Result<NaiveDate, CalendarError> {
    check_range(before)?;
    let mut day = before;
    loop {
        day = preceding_day(day)?;
        if is_session(day)? {
            return Ok(day);
        }
    }
}

/// 16:00 New York time on `date`, as UTC.
///
/// Day bars and placeholder rows are stamped with this instant whatever the
/// session's actual close, so it ignores early closes.
pub fn session_close_utc(date: NaiveDate) -> DateTime<Utc> {
    ny_wall_to_utc(date, REGULAR_CLOSE)
}

/// The UTC instant of a New York wall-clock time.
///
/// An ambiguous time (the repeated hour when clocks fall back) resolves to its
/// earlier instant. A time that does not exist (skipped when clocks spring
/// forward) resolves to the first instant after the gap, i.e. the moment the
/// clocks jump.
pub fn ny_wall_to_utc(date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let local = date.and_time(time);
    match NEW_YORK.from_local_datetime(&local) {
        LocalResult::Single(instant) => instant.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => first_instant_after_gap(local),
    }
}

/// The New York calendar date of `instant`.
pub fn ny_date(instant: DateTime<Utc>) -> NaiveDate {
    instant.with_timezone(&NEW_YORK).date_naive()
}

/// Maps UTC instants to New York session dates quickly: the offset is constant within a
/// UTC hour (DST switches on the hour), so one conversion per hour of data suffices, and
/// the date of the last day asked is kept (rows come in time order).
#[derive(Debug)]
pub struct NyDates {
    hour: i64,
    offset_ns: i64,
    day: i64,
    date: NaiveDate,
}

impl Default for NyDates {
    fn default() -> Self {
        NyDates::new()
    }
}

impl NyDates {
    const HOUR_NS: i64 = 3_600_000_000_000;
    const DAY_NS: i64 = 86_400_000_000_000;

    pub fn new() -> Self {
        NyDates {
            hour: i64::MIN,
            offset_ns: 0,
            day: i64::MIN,
            date: NaiveDate::MIN,
        }
    }

    pub fn date_of(&mut self, utc_ns: i64) -> NaiveDate {
        let hour = utc_ns.div_euclid(Self::HOUR_NS);
        if hour != self.hour {
            let instant = DateTime::from_timestamp_nanos(utc_ns);
            let local = instant.with_timezone(&NEW_YORK).naive_local();
            self.offset_ns = (local - instant.naive_utc())
                .num_nanoseconds()
                .expect("offset fits");
            self.hour = hour;
        }
        let Some(local_ns) = utc_ns.checked_add(self.offset_ns) else {
            // Within hours of the ends of i64 nanoseconds (years 1677 and 2262): the plain
            // conversion, which cannot overflow.
            return ny_date(DateTime::from_timestamp_nanos(utc_ns));
        };
        let day = local_ns.div_euclid(Self::DAY_NS);
        if day != self.day {
            self.date =
                NaiveDate::from_num_days_from_ce_opt(day as i32 + 719_163).expect("date in range");
            self.day = day;
        }
        self.date
    }
}

const fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("invalid calendar date constant"),
    }
}

const fn hm(hour: u32, minute: u32) -> NaiveTime {
    match NaiveTime::from_hms_opt(hour, minute, 0) {
        Some(time) => time,
        None => panic!("invalid calendar time constant"),
    }
}

/// The years from `year` to the end of the supported range.
const fn since(year: i32) -> RangeInclusive<i32> {
    RangeInclusive::new(year, LAST_YEAR)
}

fn check_range(date: NaiveDate) -> Result<(), CalendarError> {
    if (FIRST_SUPPORTED..=LAST_SUPPORTED).contains(&date) {
        Ok(())
    } else {
        Err(CalendarError::OutOfRange { date })
    }
}

fn following_day(day: NaiveDate) -> Result<NaiveDate, CalendarError> {
    let next = day
        .succ_opt()
        .ok_or(CalendarError::OutOfRange { date: day })?;
    check_range(next)?;
    Ok(next)
}

fn preceding_day(day: NaiveDate) -> Result<NaiveDate, CalendarError> {
    let previous = day
        .pred_opt()
        .ok_or(CalendarError::OutOfRange { date: day })?;
    check_range(previous)?;
    Ok(previous)
}

fn is_weekday(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The special day on `date`, if it is one.
fn special_day(date: NaiveDate) -> Option<Special> {
    SPECIAL_DAYS
        .binary_search_by_key(&date, |(day, _)| *day)
        .ok()
        .map(|index| SPECIAL_DAYS[index].1)
}

/// The closure on a weekday `date`, regular or special.
fn closure_name(date: NaiveDate) -> Option<&'static str> {
    if let Some(Special::Closed(name)) = special_day(date) {
        return Some(name);
    }
    HOLIDAYS
        .iter()
        .find(|rule| rule.observed_in(date.year()) == Some(date))
        .map(|rule| rule.name)
}

/// Every weekday of `year` that is not a session: the observed regular
/// holidays and the special closures.
fn closures_in(year: i32) -> Vec<NaiveDate> {
    let specials = SPECIAL_DAYS
        .iter()
        .filter(|(day, special)| day.year() == year && matches!(special, Special::Closed(_)))
        .map(|(day, _)| *day);
    HOLIDAYS
        .iter()
        .filter_map(|rule| rule.observed_in(year))
        .chain(specials)
        .collect()
}

fn is_early_close(date: NaiveDate) -> bool {
    EARLY_CLOSES.iter().any(|rule| rule.falls_on(date))
}

/// When the early closes of `year` end.
fn early_close(year: i32) -> NaiveTime {
    if year < 1993 {
        EARLY_CLOSE_BEFORE_1993
    } else {
        EARLY_CLOSE
    }
}

impl Day {
    fn in_year(self, year: i32) -> NaiveDate {
        match self {
            Day::Fixed(month, day) => ymd(year, month, day),
            Day::Nth(month, weekday, n) => nth_weekday(year, month, weekday, n),
            Day::Last(month, weekday) => last_weekday(year, month, weekday),
            Day::Easter(days) => easter_sunday(year) + Duration::days(days),
        }
    }
}

impl HolidayRule {
    /// The weekday the exchange closes for this holiday in `year`, if any.
    ///
    /// Always a date of `year` itself: the only holiday that a weekend could
    /// move across a year boundary is a Saturday New Year's Day, which is not
    /// made up.
    fn observed_in(&self, year: i32) -> Option<NaiveDate> {
        if !self.years.contains(&year) {
            return None;
        }
        let date = self.day.in_year(year);
        match (date.weekday(), self.observance) {
            (Weekday::Sat, NearestWeekday) => Some(date - Duration::days(1)),
            (Weekday::Sat, SundayToMonday) => None,
            (Weekday::Sun, _) => Some(date + Duration::days(1)),
            _ => Some(date),
        }
    }
}

impl EarlyCloseRule {
    fn falls_on(&self, date: NaiveDate) -> bool {
        self.years.contains(&date.year())
            && self.weekdays.contains(&date.weekday())
            && self.day.in_year(date.year()) + Duration::days(self.days) == date
    }
}

fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u8) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n)
        .expect("the first four weekdays of a month always exist")
}

fn last_weekday(year: i32, month: u32, weekday: Weekday) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, 5)
        .unwrap_or_else(|| nth_weekday(year, month, weekday, 4))
}

/// Western Easter Sunday by the anonymous Gregorian algorithm.
fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    ymd(year, month as u32, day as u32)
}

/// The instant the clocks jump over `local`, found by bisection because
/// chrono-tz does not expose its transition times.
fn first_instant_after_gap(local: NaiveDateTime) -> DateTime<Utc> {
    let day = Duration::days(1);
    let offset_before = NEW_YORK.offset_from_utc_datetime(&(local - day)).fix();
    let offset_after = NEW_YORK.offset_from_utc_datetime(&(local + day)).fix();
    let as_before = (local - offset_before).and_utc().timestamp();
    let as_after = (local - offset_after).and_utc().timestamp();
    // Wall-clock time only moves forward inside a spring-forward window, so the
    // first instant whose wall clock has reached `local` is the end of the gap.
    let (mut low, mut high) = (as_before.min(as_after), as_before.max(as_after));
    while low < high {
        let middle = low + (high - low) / 2;
        let wall = DateTime::from_timestamp(middle, 0)
            .expect("timestamps near a supported date are representable")
            .with_timezone(&NEW_YORK)
            .naive_local();
        if wall >= local {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    DateTime::from_timestamp(low, 0).expect("timestamps near a supported date are representable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ny_dates_cross_midnight_and_dst() {
        let mut m = NyDates::new();
        // 2024-03-10 06:59Z is 01:59 EST; 07:00Z is 03:00 EDT; both on the 10th.
        assert_eq!(m.date_of(1_710_053_940_000_000_000), d("2024-03-10"));
        assert_eq!(m.date_of(1_710_054_000_000_000_000), d("2024-03-10"));
        // 2024-01-05 00:30Z is 19:30 New York on the 4th.
        assert_eq!(m.date_of(1_704_414_600_000_000_000), d("2024-01-04"));
    }

    #[test]
    fn ny_dates_at_the_ends_of_i64_nanoseconds_do_not_overflow() {
        // Found by the polygon_response fuzz target: t = -9223372036854 ms.
        for ns in [i64::MIN, -9_223_372_036_854_000_000, i64::MAX] {
            let mut m = NyDates::new();
            assert_eq!(
                m.date_of(ns),
                ny_date(DateTime::from_timestamp_nanos(ns)),
                "{ns}"
            );
        }
    }

    fn d(text: &str) -> NaiveDate {
        text.parse().expect("test date")
    }

    fn t(text: &str) -> NaiveTime {
        text.parse().expect("test time")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().expect("test instant")
    }

    fn full_year(year: i32) -> usize {
        sessions_between(ymd(year, 1, 1), ymd(year, 12, 31))
            .expect("year in range")
            .len()
    }

    #[test]
    fn special_closures_are_closed_and_named() {
        let expected = [
            ("1994-04-27", "National Day of Mourning for Richard Nixon"),
            ("2001-09-11", "September 11"),
            ("2001-09-12", "September 11"),
            ("2001-09-13", "September 11"),
            ("2001-09-14", "September 11"),
            ("2004-06-11", "National Day of Mourning for Ronald Reagan"),
            ("2007-01-02", "National Day of Mourning for Gerald Ford"),
            ("2012-10-29", "Hurricane Sandy"),
            ("2012-10-30", "Hurricane Sandy"),
            (
                "2018-12-05",
                "National Day of Mourning for George H. W. Bush",
            ),
            ("2025-01-09", "National Day of Mourning for Jimmy Carter"),
        ];
        for (date, name) in expected {
            assert_eq!(is_session(d(date)), Ok(false), "{date}");
            assert_eq!(holiday_name(d(date)), Some(name), "{date}");
            assert_eq!(session_hours(d(date)), Ok(None), "{date}");
        }
        // The trading days around the closures are unaffected.
        for date in [
            "1994-04-26",
            "1994-04-28",
            "2001-09-10",
            "2001-09-17",
            "2012-10-26",
            "2012-10-31",
            "2025-01-08",
            "2025-01-10",
        ] {
            assert_eq!(is_session(d(date)), Ok(true), "{date}");
        }
    }

    #[test]
    fn good_friday_follows_easter() {
        for date in [
            "2024-03-29",
            "2025-04-18",
            "2000-04-21",
            "2019-04-19",
            "2038-04-23",
            "2008-03-21",
            "1990-04-13",
            "1991-03-29",
        ] {
            assert_eq!(is_session(d(date)), Ok(false), "{date}");
            assert_eq!(holiday_name(d(date)), Some("Good Friday"), "{date}");
        }
        // The Thursday before and the Monday after Easter trade.
        assert_eq!(is_session(d("2024-03-28")), Ok(true));
        assert_eq!(is_session(d("2024-04-01")), Ok(true));
    }

    #[test]
    fn juneteenth_is_observed_from_2022_only() {
        assert_eq!(holiday_name(d("2022-06-20")), Some("Juneteenth"));
        assert_eq!(is_session(d("2022-06-20")), Ok(false));
        assert_eq!(is_session(d("2023-06-19")), Ok(false));
        assert_eq!(
            is_session(d("2027-06-18")),
            Ok(false),
            "Saturday holiday observed Friday"
        );
        assert_eq!(is_session(d("2021-06-18")), Ok(true));
        assert_eq!(is_session(d("2021-06-21")), Ok(true));
        assert_eq!(holiday_name(d("2021-06-18")), None);
    }

    #[test]
    fn martin_luther_king_day_is_observed_from_1998_only() {
        assert_eq!(is_session(d("1997-01-20")), Ok(true), "3rd Monday of 1997");
        assert_eq!(holiday_name(d("1997-01-20")), None);
        assert_eq!(is_session(d("1990-01-15")), Ok(true), "3rd Monday of 1990");
        assert_eq!(is_session(d("1998-01-19")), Ok(false));
        assert_eq!(
            holiday_name(d("1998-01-19")),
            Some("Martin Luther King Jr. Day")
        );
        assert_eq!(full_year(1997), 253);
        assert_eq!(full_year(1998), 252);
    }

    #[test]
    fn saturday_new_year_is_not_observed_on_the_friday_before() {
        assert_eq!(is_session(d("1993-12-31")), Ok(true));
        assert_eq!(is_session(d("1999-12-31")), Ok(true));
        assert_eq!(is_session(d("2021-12-31")), Ok(true));
        assert_eq!(holiday_name(d("2021-12-31")), None);
        assert_eq!(is_session(d("2022-01-03")), Ok(true));
        assert_eq!(holiday_name(d("2022-01-01")), None, "plain Saturday");
    }

    #[test]
    fn sunday_new_year_is_observed_on_monday() {
        assert_eq!(is_session(d("2023-01-02")), Ok(false));
        assert_eq!(holiday_name(d("2023-01-02")), Some("New Year's Day"));
        assert_eq!(is_session(d("2023-01-03")), Ok(true));
    }

    #[test]
    fn saturday_christmas_is_observed_on_friday() {
        assert_eq!(is_session(d("2021-12-24")), Ok(false));
        assert_eq!(holiday_name(d("2021-12-24")), Some("Christmas"));
        assert_eq!(is_session(d("2021-12-27")), Ok(true));
        assert_eq!(holiday_name(d("1993-12-24")), Some("Christmas"));
        assert_eq!(holiday_name(d("1999-12-24")), Some("Christmas"));
        assert_eq!(
            is_session(d("2022-12-26")),
            Ok(false),
            "Sunday Christmas observed Monday"
        );
    }

    #[test]
    fn rule_holidays_of_2024_are_named() {
        let expected = [
            ("2024-01-01", "New Year's Day"),
            ("2024-01-15", "Martin Luther King Jr. Day"),
            ("2024-02-19", "Washington's Birthday"),
            ("2024-03-29", "Good Friday"),
            ("2024-05-27", "Memorial Day"),
            ("2024-06-19", "Juneteenth"),
            ("2024-07-04", "Independence Day"),
            ("2024-09-02", "Labor Day"),
            ("2024-11-28", "Thanksgiving"),
            ("2024-12-25", "Christmas"),
        ];
        for (date, name) in expected {
            assert_eq!(holiday_name(d(date)), Some(name), "{date}");
            assert_eq!(is_session(d(date)), Ok(false), "{date}");
        }
        assert_eq!(
            holiday_name(d("2024-07-05")),
            None,
            "a session has no holiday name"
        );
        assert_eq!(
            holiday_name(d("2024-07-06")),
            None,
            "a plain weekend has no holiday name"
        );
    }

    #[test]
    fn early_closes_end_at_one_pm() {
        let early = SessionHours {
            open: t("09:30"),
            close: t("13:00"),
        };
        for date in [
            "2024-07-03",
            "2024-11-29",
            "2024-12-24",
            "2025-07-03",
            "2023-07-03",
            "2002-07-05",
            "2003-12-26",
            "2013-07-03",
            "2008-07-03",
            "1995-07-03",
            "1996-07-05",
            "1993-11-26",
            "1997-12-26",
        ] {
            assert_eq!(session_hours(d(date)), Ok(Some(early)), "{date}");
        }
        let regular = SessionHours {
            open: t("09:30"),
            close: t("16:00"),
        };
        for date in [
            "2024-07-02",
            "2024-07-05",
            "2024-12-23",
            "2024-12-26",
            "2002-07-03",
            "2024-06-03",
            "2013-07-05",
            "1990-07-03",
            "1994-07-01",
            "1991-07-05",
            "1991-11-29",
            "2008-12-26",
        ] {
            assert_eq!(session_hours(d(date)), Ok(Some(regular)), "{date}");
        }
        // Dec 24 on a Friday is the observed Christmas, not an early close.
        assert_eq!(session_hours(d("2021-12-24")), Ok(None));
        assert_eq!(session_hours(d("2024-07-06")), Ok(None));
    }

    #[test]
    fn early_closes_before_1993_end_at_two_pm() {
        let early = SessionHours {
            open: t("09:30"),
            close: t("14:00"),
        };
        for date in ["1990-12-24", "1991-12-24", "1992-11-27", "1992-12-24"] {
            assert_eq!(session_hours(d(date)), Ok(Some(early)), "{date}");
        }
        assert_eq!(early_close(1992), t("14:00"));
        assert_eq!(early_close(1993), EARLY_CLOSE);
    }

    #[test]
    fn special_hours_are_reported() {
        for (date, open, close) in [
            ("1990-12-27", "11:00", "16:00"),
            ("1991-01-17", "09:31", "16:00"),
            ("1994-02-11", "09:30", "14:30"),
            ("1995-12-18", "10:30", "16:00"),
            ("1996-01-08", "11:00", "14:00"),
            ("1997-10-27", "09:30", "15:30"),
            ("2001-09-17", "09:33", "16:00"),
            ("2005-06-01", "09:30", "15:56"),
            ("2006-12-27", "09:32", "16:00"),
        ] {
            let hours = SessionHours {
                open: t(open),
                close: t(close),
            };
            assert_eq!(session_hours(d(date)), Ok(Some(hours)), "{date}");
        }
    }

    #[test]
    fn special_days_are_sorted_weekdays_that_the_rules_do_not_give() {
        for pair in SPECIAL_DAYS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (date, special) in SPECIAL_DAYS {
            assert!(check_range(date).is_ok() && is_weekday(date), "{date}");
            let holiday = HOLIDAYS
                .iter()
                .find(|rule| rule.observed_in(date.year()) == Some(date));
            assert!(holiday.is_none(), "{date} is also {holiday:?}");
            if let Special::Hours { open, close, .. } = special {
                assert!(open < close, "{date}");
                assert_ne!(
                    (open, close),
                    (REGULAR_OPEN, REGULAR_CLOSE),
                    "{date} has regular hours"
                );
            }
        }
    }

    #[test]
    fn rules_stay_inside_the_supported_range() {
        assert_eq!(ALL_YEARS, FIRST_SUPPORTED.year()..=LAST_SUPPORTED.year());
        for year in ALL_YEARS {
            for rule in &HOLIDAYS {
                if let Some(date) = rule.observed_in(year) {
                    assert_eq!(date.year(), year, "{} {year}", rule.name);
                    assert!(is_weekday(date), "{} {year}", rule.name);
                }
            }
        }
        for rule in &EARLY_CLOSES {
            assert!(
                ALL_YEARS.contains(rule.years.start()) && ALL_YEARS.contains(rule.years.end()),
                "{rule:?}"
            );
        }
    }

    #[test]
    fn sessions_between_agrees_with_is_session_day_by_day() {
        let all = sessions_between(FIRST_SUPPORTED, LAST_SUPPORTED).expect("in range");
        let one_by_one: Vec<NaiveDate> = FIRST_SUPPORTED
            .iter_days()
            .take_while(|day| *day <= LAST_SUPPORTED)
            .filter(|day| is_session(*day) == Ok(true))
            .collect();
        assert_eq!(all, one_by_one);
        // A range inside one year and one across a year boundary.
        assert_eq!(
            sessions_between(d("1999-12-30"), d("2000-01-04")),
            Ok(vec![
                d("1999-12-30"),
                d("1999-12-31"),
                d("2000-01-03"),
                d("2000-01-04")
            ])
        );
    }

    #[test]
    fn scheduled_late_open_is_reported() {
        let hours = session_hours(d("2002-09-11"))
            .expect("in range")
            .expect("a session");
        assert_eq!(
            hours,
            SessionHours {
                open: t("12:00"),
                close: t("16:00")
            }
        );
    }

    #[test]
    fn full_year_session_counts_match_the_exchange() {
        assert_eq!(full_year(2023), 250);
        assert_eq!(full_year(2024), 252);
        assert_eq!(full_year(2022), 251);
        assert_eq!(full_year(2019), 252);
        assert_eq!(full_year(2012), 250);
        assert_eq!(full_year(2001), 248);
        assert_eq!(full_year(1990), 253);
        assert_eq!(full_year(1992), 254);
        assert_eq!(full_year(1994), 252);
    }

    #[test]
    fn sessions_between_skips_weekends_and_is_inclusive() {
        let sessions = sessions_between(d("2024-06-14"), d("2024-06-18")).expect("in range");
        assert_eq!(
            sessions,
            vec![d("2024-06-14"), d("2024-06-17"), d("2024-06-18")]
        );
        assert_eq!(
            sessions_between(d("2024-06-15"), d("2024-06-16")),
            Ok(vec![])
        );
        assert_eq!(
            sessions_between(d("2024-06-18"), d("2024-06-14")),
            Ok(vec![])
        );
        assert_eq!(
            sessions_between(d("2024-06-17"), d("2024-06-17")),
            Ok(vec![d("2024-06-17")])
        );
    }

    #[test]
    fn next_and_previous_session_are_strict_and_skip_closures() {
        assert_eq!(next_session(d("2024-06-14")), Ok(d("2024-06-17")));
        assert_eq!(next_session(d("2024-06-17")), Ok(d("2024-06-18")));
        assert_eq!(
            next_session(d("2024-06-18")),
            Ok(d("2024-06-20")),
            "skips Juneteenth"
        );
        assert_eq!(previous_session(d("2024-06-17")), Ok(d("2024-06-14")));
        assert_eq!(
            previous_session(d("2024-04-01")),
            Ok(d("2024-03-28")),
            "skips Good Friday"
        );
        assert_eq!(
            previous_session(d("2012-10-31")),
            Ok(d("2012-10-26")),
            "skips Sandy"
        );
    }

    #[test]
    fn session_close_is_four_pm_new_york_in_utc() {
        assert_eq!(
            session_close_utc(d("2024-07-03")),
            utc("2024-07-03T20:00:00Z"),
            "EDT"
        );
        assert_eq!(
            session_close_utc(d("2024-01-16")),
            utc("2024-01-16T21:00:00Z"),
            "EST"
        );
        assert_eq!(
            session_close_utc(d("2024-03-11")),
            utc("2024-03-11T20:00:00Z"),
            "day after spring forward"
        );
        assert_eq!(
            session_close_utc(d("2024-11-04")),
            utc("2024-11-04T21:00:00Z"),
            "day after fall back"
        );
    }

    #[test]
    fn wall_clock_conversion_handles_dst_transitions() {
        assert_eq!(
            ny_wall_to_utc(d("2024-09-16"), t("09:30")),
            utc("2024-09-16T13:30:00Z")
        );
        // 01:30 happens twice on 2024-11-03; the EDT one comes first.
        assert_eq!(
            ny_wall_to_utc(d("2024-11-03"), t("01:30")),
            utc("2024-11-03T05:30:00Z")
        );
        // 02:30 never happens on 2024-03-10; clocks jump from 02:00 EST to 03:00 EDT.
        assert_eq!(
            ny_wall_to_utc(d("2024-03-10"), t("02:30")),
            utc("2024-03-10T07:00:00Z")
        );
        assert_eq!(
            ny_wall_to_utc(d("2024-03-10"), t("03:00")),
            utc("2024-03-10T07:00:00Z")
        );
    }

    #[test]
    fn new_york_date_of_an_instant() {
        assert_eq!(ny_date(utc("2024-07-04T03:59:59Z")), d("2024-07-03"));
        assert_eq!(ny_date(utc("2024-07-04T04:00:00Z")), d("2024-07-04"));
        assert_eq!(ny_date(utc("2024-01-05T04:59:59Z")), d("2024-01-04"));
        assert_eq!(ny_date(session_close_utc(d("2024-12-31"))), d("2024-12-31"));
    }

    #[test]
    fn out_of_range_dates_are_rejected_naming_the_date() {
        let early = d("1989-12-31");
        let late = d("2100-01-01");
        assert_eq!(
            is_session(early),
            Err(CalendarError::OutOfRange { date: early })
        );
        assert_eq!(
            session_hours(late),
            Err(CalendarError::OutOfRange { date: late })
        );
        assert_eq!(
            sessions_between(early, d("1990-01-10")),
            Err(CalendarError::OutOfRange { date: early })
        );
        assert_eq!(
            sessions_between(d("2099-12-01"), late),
            Err(CalendarError::OutOfRange { date: late })
        );
        assert_eq!(
            next_session(d("2099-12-31")),
            Err(CalendarError::OutOfRange { date: late })
        );
        assert_eq!(
            previous_session(d("1990-01-02")),
            Err(CalendarError::OutOfRange { date: early })
        );
        assert_eq!(holiday_name(early), None);
        let message = CalendarError::OutOfRange { date: late }.to_string();
        assert!(message.contains("2100-01-01"), "{message}");
        assert!(
            message.contains("1990-01-01") && message.contains("2099-12-31"),
            "{message}"
        );
    }

    #[test]
    fn range_edges_are_answered() {
        assert_eq!(
            next_session(d("1989-12-31")),
            Err(CalendarError::OutOfRange {
                date: d("1989-12-31")
            })
        );
        assert_eq!(holiday_name(FIRST_SUPPORTED), Some("New Year's Day"));
        assert_eq!(next_session(FIRST_SUPPORTED), Ok(d("1990-01-02")));
        assert_eq!(previous_session(LAST_SUPPORTED), Ok(d("2099-12-30")));
        assert_eq!(is_session(LAST_SUPPORTED), Ok(true));
    }
}
