//! Recurring schedules: a job enqueued at every due time of a fixed interval or a cron
//! expression, once per due time across every process sharing the store.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use durable_jobs_store::{JobId, NewJob, RetryPolicy, ScheduleRecord, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{names, Error, JobOptions, Queue};

/// The longest interval of [`Schedule::every`].
const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);

/// When a recurring schedule is due: a fixed interval, or a cron expression in UTC or a named
/// time zone.
///
/// ```
/// use std::time::Duration;
/// use durable_jobs::Schedule;
///
/// let every = Schedule::every(Duration::from_secs(300));
/// let weekdays = Schedule::cron("0 9 * * 1-5")?.in_time_zone("Europe/Paris")?;
/// let with_seconds = Schedule::cron("*/10 * * * * *")?;
/// # let _ = (every, weekdays, with_seconds);
/// # Ok::<(), durable_jobs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Every(Duration),
    Cron { expr: String, cron: Box<Cron>, zone: Option<chrono_tz::Tz> },
}

impl Schedule {
    /// Due at every multiple of `interval` since the Unix epoch (so every process computes the
    /// same due times): `every(5 min)` fires at :00, :05, :10… Between 1 ms and 366 days.
    pub fn every(interval: Duration) -> Schedule {
        Schedule { kind: Kind::Every(interval) }
    }

    /// Due at the times of a cron expression, in UTC unless [`in_time_zone`](Self::in_time_zone)
    /// says otherwise: five fields (minute hour day-of-month month day-of-week, Sunday being 0
    /// or 7, as POSIX cron) or six (seconds first). Names (`MON`, `JAN`), ranges, steps, lists,
    /// and `L`, `W`, `#` are accepted.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] (`schedule`) naming what is wrong with the expression.
    pub fn cron(expression: &str) -> Result<Schedule, Error> {
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(expression).map_err(|e| invalid(format!("cron expression {expression:?}: {e}")))?;
        Ok(Schedule { kind: Kind::Cron { expr: expression.trim().to_owned(), cron: Box::new(cron), zone: None } })
    }

    /// Reads the cron expression's fields in time zone `zone` (an IANA name such as
    /// `America/New_York`), following its daylight-saving changes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] (`schedule`) for an unknown zone, or for an interval schedule.
    pub fn in_time_zone(self, zone: &str) -> Result<Schedule, Error> {
        let tz = chrono_tz::Tz::from_str(zone).map_err(|_| invalid(format!("unknown time zone {zone:?}")))?;
        match self.kind {
            Kind::Cron { expr, cron, .. } => Ok(Schedule { kind: Kind::Cron { expr, cron, zone: Some(tz) } }),
            Kind::Every(_) => Err(invalid("a time zone applies to cron schedules only".into())),
        }
    }

    /// The first due time strictly after `t`, or `None` if there is none.
    pub(crate) fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(interval) => {
                let step = i64::try_from(interval.as_micros()).ok().filter(|s| *s > 0)?;
                t.0.div_euclid(step).checked_add(1)?.checked_mul(step).map(Timestamp)
            }
            Kind::Cron { cron, zone, .. } => {
                let utc = DateTime::<Utc>::from_timestamp_micros(t.0)?;
                let next = match zone {
                    Some(tz) => cron.find_next_occurrence(&utc.with_timezone(tz), false).ok()?.with_timezone(&Utc),
                    None => cron.find_next_occurrence(&utc, false).ok()?,
                };
                Some(Timestamp(next.timestamp_micros()))
            }
        }
    }

    /// How it is stored: `every <µs>us`, or `cron <expression>[ @ <zone>]`.
    fn spec(&self) -> String {
        match &self.kind {
            Kind::Every(interval) => format!("every {}us", interval.as_micros()),
            Kind::Cron { expr, zone: None, .. } => format!("cron {expr}"),
            Kind::Cron { expr, zone: Some(tz), .. } => format!("cron {expr} @ {}", tz.name()),
        }
    }

    /// Reads back what [`spec`](Self::spec) wrote.
    fn from_spec(spec: &str) -> Result<Schedule, Error> {
        if let Some(micros) = spec.strip_prefix("every ").and_then(|s| s.strip_suffix("us")) {
            let micros: u64 = micros.parse().map_err(|_| invalid(format!("stored schedule {spec:?}")))?;
            return Ok(Schedule::every(Duration::from_micros(micros)));
        }
        let Some(cron) = spec.strip_prefix("cron ") else { return Err(invalid(format!("stored schedule {spec:?}"))) };
        match cron.split_once(" @ ") {
            Some((expr, zone)) => Schedule::cron(expr)?.in_time_zone(zone),
            None => Schedule::cron(cron),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        match self.kind {
            Kind::Every(i) if i < Duration::from_millis(1) || i > MAX_INTERVAL => {
                Err(invalid("the interval must be between 1 ms and 366 days".into()))
            }
            _ => Ok(()),
        }
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidOption { option: "schedule", reason }
}

/// The job a schedule enqueues, as stored in its template.
#[derive(Debug, Serialize, Deserialize)]
struct Template {
    name: String,
    queue: String,
    args: String,
    priority: i32,
    max_attempts: u32,
    unique_key: Option<String>,
    unique_window_us: Option<u64>,
    timeout_us: Option<u64>,
    backoff_us: Option<(u64, u64)>,
    concurrency_key: Option<String>,
}

impl Template {
    fn of(job: &NewJob) -> Result<Template, Error> {
        let args = String::from_utf8(job.args.clone()).map_err(|_| invalid("arguments are not UTF-8 JSON".into()))?;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Ok(Template {
            name: job.name.clone(),
            queue: job.queue.clone(),
            args,
            priority: job.priority,
            max_attempts: job.max_attempts,
            unique_key: job.unique_key.clone(),
            unique_window_us: job.unique_window.map(micros),
            timeout_us: job.timeout.map(micros),
            backoff_us: job.retry_policy.map(|p| (micros(p.base), micros(p.max))),
            concurrency_key: job.concurrency_key.clone(),
        })
    }

    /// The job of the fire due at `due`, enqueued at `now`.
    fn job(&self, due: Timestamp, now: Timestamp) -> NewJob {
        let mut job = NewJob::new(self.queue.clone(), self.name.clone(), self.args.clone().into_bytes(), now)
            .priority(self.priority)
            .run_at(due.min(now))
            .max_attempts(self.max_attempts);
        job.unique_key.clone_from(&self.unique_key);
        job.unique_window = self.unique_window_us.map(Duration::from_micros);
        job.timeout = self.timeout_us.map(Duration::from_micros);
        job.retry_policy =
            self.backoff_us.map(|(b, m)| RetryPolicy { base: Duration::from_micros(b), max: Duration::from_micros(m) });
        job.concurrency_key.clone_from(&self.concurrency_key);
        job
    }
}

/// A recurring schedule as stored, from [`Queue::schedules`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// Its name.
    pub name: String,
    /// How it recurs: `every <µs>us`, or `cron <expression>[ @ <zone>]`.
    pub spec: String,
    /// The handler name of the jobs it enqueues.
    pub job: String,
    /// Their queue.
    pub queue: String,
    /// When it is due next.
    pub next_fire: SystemTime,
    /// When its last fire was due, if it fired.
    pub last_fire: Option<SystemTime>,
    /// The job its last fire enqueued (`None` if that fire found the job's unique key held).
    pub last_job: Option<JobId>,
}

/// A stored schedule, read back to fire it: `None` (with the reason) if this version cannot.
pub(crate) struct Due {
    pub(crate) name: String,
    pub(crate) at: Timestamp,
    schedule: Schedule,
    template: Template,
}

impl Due {
    pub(crate) fn read(record: &ScheduleRecord) -> Result<Due, Error> {
        let schedule = Schedule::from_spec(&record.spec)?;
        let template = serde_json::from_slice(&record.template)
            .map_err(|e| invalid(format!("stored job of schedule {:?}: {e}", record.name)))?;
        Ok(Due { name: record.name.clone(), at: record.next_fire, schedule, template })
    }

    /// The job to enqueue now, and the next due time: the first after both the due time and
    /// `now`, so that a schedule late by several periods (after downtime) fires once, not once
    /// per missed time.
    pub(crate) fn fire(&self, now: Timestamp) -> (NewJob, Timestamp) {
        let next = self.schedule.next_after(self.at.max(now)).unwrap_or(Timestamp(i64::MAX));
        (self.template.job(self.at, now), next)
    }
}

impl Queue {
    /// Enqueues `job` with `args` and `options` at every due time of `schedule`, under the
    /// name `name` (replacing a schedule of that name; it keeps its last fire). Stored in the
    /// store: every worker of every process sharing it fires due schedules, and each due time
    /// fires once (the fire is claimed and the job inserted in one transaction). After
    /// downtime, a schedule fires once for the missed times, not once per missed time. The job
    /// is enqueued with `run_at` set to its due time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use durable_jobs::{JobContext, JobOptions, MemoryStore, Queue, Schedule};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("report", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(()))?;
    /// queue.schedule("nightly-report", Schedule::cron("0 3 * * *")?, "report", &(), JobOptions::new())?;
    /// let listed = queue.schedules()?;
    /// assert_eq!((listed[0].name.as_str(), listed[0].job.as_str()), ("nightly-report", "report"));
    /// assert!(queue.unschedule("nightly-report")?);
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] if no handler is registered under `job`; [`Error::InvalidName`]
    /// for a bad schedule or job name; [`Error::InvalidOption`] for a schedule out of range,
    /// bad options, or a delay or run time (a schedule decides when); [`Error::Encode`] or
    /// [`Error::PayloadTooLarge`] for the arguments; [`Error::Store`] if the store fails.
    pub fn schedule<A: Serialize + ?Sized>(
        &self,
        name: &str,
        schedule: Schedule,
        job: &str,
        args: &A,
        options: JobOptions,
    ) -> Result<(), Error> {
        names::validate("schedule", name)?;
        self.check_registered(job)?;
        schedule.validate()?;
        if options.schedule.is_some() {
            let reason = "a scheduled job runs at its due time: remove delay and run_at".to_owned();
            return Err(Error::InvalidOption { option: "schedule", reason });
        }
        let now = self.inner.now();
        options.validate(now)?;
        let args = self.encode_checked(job, "arguments", args)?;
        let template = Template::of(&options.new_job(job, args, now, now))?;
        let template = serde_json::to_vec(&template).map_err(|source| Error::Encode {
            name: job.to_owned(),
            what: "schedule",
            source,
        })?;
        let Some(next) = schedule.next_after(now) else {
            return Err(invalid("the schedule is never due after now".into()));
        };
        self.inner.store.put_schedule(&ScheduleRecord::new(name, schedule.spec(), template, next, now))?;
        self.inner.schedules_changed();
        Ok(())
    }

    /// Removes schedule `name`; `true` if it existed. Jobs it enqueued are left alone.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn unschedule(&self, name: &str) -> Result<bool, Error> {
        Ok(self.inner.store.remove_schedule(name)?)
    }

    /// Every schedule, by name, with its next and last fire.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails; [`Error::InvalidOption`] for a schedule this
    /// version cannot read (written by a newer one).
    pub fn schedules(&self) -> Result<Vec<ScheduleInfo>, Error> {
        let records = self.inner.store.schedules()?;
        records
            .into_iter()
            .map(|r| {
                let due = Due::read(&r)?;
                Ok(ScheduleInfo {
                    name: r.name,
                    spec: r.spec,
                    job: due.template.name,
                    queue: due.template.queue,
                    next_fire: r.next_fire.to_system_time(),
                    last_fire: r.last_fire.map(Timestamp::to_system_time),
                    last_job: r.last_job,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp(DateTime::parse_from_rfc3339(rfc3339).map(|t| t.timestamp_micros()).unwrap_or_default())
    }

    #[test]
    fn intervals_are_aligned_on_the_epoch() {
        let every = Schedule::every(Duration::from_millis(200));
        assert_eq!(every.next_after(Timestamp(1_000_000)), Some(Timestamp(1_200_000)));
        assert_eq!(every.next_after(Timestamp(1_199_999)), Some(Timestamp(1_200_000)));
        assert_eq!(every.next_after(Timestamp(-1)), Some(Timestamp(0)));
    }

    #[test]
    fn cron_reads_five_and_six_fields_with_posix_weekdays_and_zones() {
        // 2026-11-29 is a Sunday.
        let monday_nine = Schedule::cron("0 9 * * 1").unwrap();
        assert_eq!(monday_nine.next_after(at("2026-11-29T12:00:00Z")), Some(at("2026-11-30T09:00:00Z")));
        let sunday = Schedule::cron("0 9 * * 0").unwrap();
        assert_eq!(sunday.next_after(at("2026-11-28T12:00:00Z")), Some(at("2026-11-29T09:00:00Z")));
        let seconds = Schedule::cron("*/10 * * * * *").unwrap();
        assert_eq!(seconds.next_after(at("2026-11-29T12:00:01Z")), Some(at("2026-11-29T12:00:10Z")));
        let paris = Schedule::cron("0 9 * * 1").unwrap().in_time_zone("Europe/Paris").unwrap();
        assert_eq!(paris.next_after(at("2026-11-29T12:00:00Z")), Some(at("2026-11-30T08:00:00Z")), "UTC+1 in winter");
        for bad in ["", "61 * * * *", "* * * *", "0 0 0 * * * 2030", "nonsense"] {
            assert!(Schedule::cron(bad).is_err(), "{bad:?}");
        }
        assert!(Schedule::cron("* * * * *").unwrap().in_time_zone("Mars/Olympus").is_err());
        assert!(Schedule::every(Duration::from_secs(1)).in_time_zone("UTC").is_err());
    }

    #[test]
    fn specs_round_trip() {
        let schedules = [
            Schedule::every(Duration::from_millis(1500)),
            Schedule::cron("0 9 * * MON-FRI").unwrap(),
            Schedule::cron("0 9 * * 1").unwrap().in_time_zone("America/New_York").unwrap(),
        ];
        for s in schedules {
            let back = Schedule::from_spec(&s.spec()).unwrap();
            assert_eq!(back.spec(), s.spec());
            assert_eq!(back.next_after(Timestamp(0)), s.next_after(Timestamp(0)));
        }
        assert!(Schedule::from_spec("hourly").is_err());
    }

    #[test]
    fn a_late_schedule_fires_once_then_moves_past_now() {
        let record = ScheduleRecord::new("s", "every 1000000us", br#"{"name":"j","queue":"default","args":"1","priority":0,"max_attempts":3,"unique_key":null,"unique_window_us":null,"timeout_us":null,"backoff_us":null,"concurrency_key":null}"#.to_vec(), Timestamp(5_000_000), Timestamp(0));
        let due = Due::read(&record).unwrap();
        let (job, next) = due.fire(Timestamp(9_500_000));
        assert_eq!(
            (job.run_at, job.created_at, next),
            (Timestamp(5_000_000), Timestamp(9_500_000), Timestamp(10_000_000))
        );
        assert_eq!(job.args, b"1");
    }
}
