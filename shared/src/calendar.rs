//! The NYSE trading calendar that coverage is measured against (DESIGN §5).
//!
//! The calendar is rule-based for every date from [`FIRST_SUPPORTED`]
//! (2000-01-01) to [`LAST_SUPPORTED`] (2099-12-31); dates outside that range
//! are rejected with [`CalendarError::OutOfRange`] rather than guessed. A date is
//! a session when it is a weekday that is neither a regular holiday nor a
//! special closure.
//!
//! Regular holidays, with weekend observance (Saturday → the preceding Friday,
//! Sunday → the following Monday):
//!
//! | holiday | rule |
//! |---|---|
//! | New Year's Day | January 1; on a Saturday it is *not* moved to Friday December 31 |
//! | Martin Luther King Jr. Day | 3rd Monday of January (since 1998) |
//! | Washington's Birthday | 3rd Monday of February |
//! | Good Friday | the Friday before Western (Gregorian) Easter Sunday |
//! | Memorial Day | last Monday of May |
//! | Juneteenth | June 19, observed, from 2022 |
//! | Independence Day | July 4, observed |
//! | Labor Day | 1st Monday of September |
//! | Thanksgiving | 4th Thursday of November |
//! | Christmas | December 25, observed |
//!
//! Special full-day closures (one-off, listed by date): 2001-09-11 to 2001-09-14
//! (September 11), 2004-06-11 (Ronald Reagan), 2007-01-02 (Gerald Ford),
//! 2012-10-29 and 2012-10-30 (Hurricane Sandy), 2018-12-05 (George H. W. Bush),
//! 2025-01-09 (Jimmy Carter). Closures announced after this table was written
//! cannot be known in advance and must be added here when they happen.
//!
//! Regular hours are 09:30–16:00 New York time. Early closes at 13:00:
//! July 3 when July 4 falls on a Tuesday, Wednesday or Friday, and also on a
//! Thursday from 2013 (before 2013 a Thursday July 4 moved the early close to
//! Friday July 5); the day after Thanksgiving; December 24 from Monday to
//! Thursday; and the one-off 2003-12-26. The scheduled late open of 2002-09-11
//! (12:00) is listed as well; unscheduled minute-level delays are not modelled.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Utc, Weekday,
};

/// The exchange's time zone; ThetaData timestamps are wall-clock times in it.
pub const NEW_YORK: chrono_tz::Tz = chrono_tz::America::New_York;

/// First date the calendar answers for.
pub const FIRST_SUPPORTED: NaiveDate = ymd(2000, 1, 1);

/// Last date the calendar answers for.
pub const LAST_SUPPORTED: NaiveDate = ymd(2099, 12, 31);

/// Opening time of a regular session, New York wall clock.
pub const REGULAR_OPEN: NaiveTime = hm(9, 30);

/// Closing time of a regular session, New York wall clock.
pub const REGULAR_CLOSE: NaiveTime = hm(16, 0);

/// Closing time of an early-close session, New York wall clock.
pub const EARLY_CLOSE: NaiveTime = hm(13, 0);

/// Full-day closures that no recurring rule produces.
const SPECIAL_CLOSURES: [(NaiveDate, &str); 10] = [
    (ymd(2001, 9, 11), "September 11"),
    (ymd(2001, 9, 12), "September 11"),
    (ymd(2001, 9, 13), "September 11"),
    (ymd(2001, 9, 14), "September 11"),
    (
        ymd(2004, 6, 11),
        "National Day of Mourning for Ronald Reagan",
    ),
    (ymd(2007, 1, 2), "National Day of Mourning for Gerald Ford"),
    (ymd(2012, 10, 29), "Hurricane Sandy"),
    (ymd(2012, 10, 30), "Hurricane Sandy"),
    (
        ymd(2018, 12, 5),
        "National Day of Mourning for George H. W. Bush",
    ),
    (ymd(2025, 1, 9), "National Day of Mourning for Jimmy Carter"),
];

/// Early closes (13:00) that no recurring rule produces.
const SPECIAL_EARLY_CLOSES: [NaiveDate; 1] = [ymd(2003, 12, 26)];

/// Scheduled late opens.
const SPECIAL_LATE_OPENS: [(NaiveDate, NaiveTime); 1] = [(ymd(2002, 9, 11), hm(12, 0))];

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
    Ok(start
        .iter_days()
        .take_while(|day| *day <= end)
        .filter(|day| is_weekday(*day) && closure_name(*day).is_none())
        .collect())
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
    let open = SPECIAL_LATE_OPENS
        .iter()
        .find(|(day, _)| *day == date)
        .map_or(REGULAR_OPEN, |(_, open)| *open);
    let close = if is_early_close(date) {
        EARLY_CLOSE
    } else {
        REGULAR_CLOSE
    };
    Ok(Some(SessionHours { open, close }))
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

/// The closure on a weekday `date`, regular or special.
fn closure_name(date: NaiveDate) -> Option<&'static str> {
    regular_holidays(date.year())
        .into_iter()
        .chain(SPECIAL_CLOSURES)
        .find(|(day, _)| *day == date)
        .map(|(_, name)| name)
}

/// The dates the exchange observes its regular holidays on in `year`.
fn regular_holidays(year: i32) -> Vec<(NaiveDate, &'static str)> {
    let mut holidays = Vec::with_capacity(10);
    // A Saturday New Year's Day would move into the previous year, which NYSE does not do.
    if ymd(year, 1, 1).weekday() != Weekday::Sat {
        holidays.push((observed(ymd(year, 1, 1)), "New Year's Day"));
    }
    if year >= 1998 {
        holidays.push((
            nth_weekday(year, 1, Weekday::Mon, 3),
            "Martin Luther King Jr. Day",
        ));
    }
    holidays.push((
        nth_weekday(year, 2, Weekday::Mon, 3),
        "Washington's Birthday",
    ));
    holidays.push((easter_sunday(year) - Duration::days(2), "Good Friday"));
    holidays.push((last_weekday(year, 5, Weekday::Mon), "Memorial Day"));
    if year >= 2022 {
        holidays.push((observed(ymd(year, 6, 19)), "Juneteenth"));
    }
    holidays.push((observed(ymd(year, 7, 4)), "Independence Day"));
    holidays.push((nth_weekday(year, 9, Weekday::Mon, 1), "Labor Day"));
    holidays.push((thanksgiving(year), "Thanksgiving"));
    holidays.push((observed(ymd(year, 12, 25)), "Christmas"));
    holidays
}

fn is_early_close(date: NaiveDate) -> bool {
    let year = date.year();
    let weekday = date.weekday();
    match (date.month(), date.day()) {
        (7, 3) => {
            matches!(weekday, Weekday::Mon | Weekday::Tue | Weekday::Thu)
                || (weekday == Weekday::Wed && year >= 2013)
        }
        (7, 5) => weekday == Weekday::Fri && year < 2013,
        (12, 24) => matches!(
            weekday,
            Weekday::Mon | Weekday::Tue | Weekday::Wed | Weekday::Thu
        ),
        _ => date == thanksgiving(year) + Duration::days(1) || SPECIAL_EARLY_CLOSES.contains(&date),
    }
}

/// The weekday a fixed-date holiday is observed on.
fn observed(date: NaiveDate) -> NaiveDate {
    match date.weekday() {
        Weekday::Sat => date - Duration::days(1),
        Weekday::Sun => date + Duration::days(1),
        _ => date,
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

fn thanksgiving(year: i32) -> NaiveDate {
    nth_weekday(year, 11, Weekday::Thu, 4)
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
    fn saturday_new_year_is_not_observed_on_the_friday_before() {
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
        ] {
            assert_eq!(session_hours(d(date)), Ok(Some(regular)), "{date}");
        }
        // Dec 24 on a Friday is the observed Christmas, not an early close.
        assert_eq!(session_hours(d("2021-12-24")), Ok(None));
        assert_eq!(session_hours(d("2024-07-06")), Ok(None));
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
        let early = d("1999-12-31");
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
            sessions_between(early, d("2000-01-10")),
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
            previous_session(d("2000-01-03")),
            Err(CalendarError::OutOfRange { date: early })
        );
        assert_eq!(holiday_name(early), None);
        let message = CalendarError::OutOfRange { date: late }.to_string();
        assert!(message.contains("2100-01-01"), "{message}");
        assert!(
            message.contains("2000-01-01") && message.contains("2099-12-31"),
            "{message}"
        );
    }

    #[test]
    fn range_edges_are_answered() {
        assert_eq!(
            next_session(d("1999-12-31")),
            Err(CalendarError::OutOfRange {
                date: d("1999-12-31")
            })
        );
        assert_eq!(next_session(FIRST_SUPPORTED), Ok(d("2000-01-03")));
        assert_eq!(previous_session(LAST_SUPPORTED), Ok(d("2099-12-30")));
        assert_eq!(is_session(LAST_SUPPORTED), Ok(true));
    }
}
