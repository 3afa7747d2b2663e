//! Recurring schedules in the `schedules` tree (name → [`codec::encode_schedule`]), which is
//! in every transaction so that a fire enqueues its job and moves the schedule atomically.

use durable_jobs_store::{Enqueued, FireOutcome, NewJob, ScheduleRecord, StoreError, Timestamp};

use crate::codec;
use crate::error::store_error;
use crate::store::SledStore;
use crate::tx::{abort, Tx, TxError};

impl SledStore {
    /// Stores `schedule`, keeping the `created_at`, `last_fire` and `last_job` of the one it
    /// replaces.
    pub(crate) fn put_schedule_record(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        self.write("put schedule", |tx| {
            let mut new = schedule.clone();
            if let Some(old) = tx.schedule(&schedule.name)? {
                (new.created_at, new.last_fire, new.last_job) = (old.created_at, old.last_fire, old.last_job);
            }
            tx.put_schedule(&new)
        })
    }

    /// Every schedule, sorted by name (the tree's order: names are compared as bytes).
    pub(crate) fn all_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in &self.trees().schedules {
            let (name, value) = entry.map_err(|e| store_error("read schedules", e))?;
            out.push(codec::decode_schedule(&name, &value)?);
        }
        Ok(out)
    }

    pub(crate) fn remove_schedule_named(&self, name: &str) -> Result<bool, StoreError> {
        self.write("remove schedule", |tx| Ok(tx.schedules.remove(name.as_bytes())?.is_some()))
    }

    /// Fires `name` for `due` if it is still due then: enqueues `job` and moves the schedule
    /// in one transaction.
    pub(crate) fn fire_schedule(
        &self,
        name: &str,
        due: Timestamp,
        next: Timestamp,
        job: &NewJob,
        now: Timestamp,
    ) -> Result<FireOutcome, StoreError> {
        self.locked(|s| {
            let Some(schedule) =
                s.trees().schedules.get(name.as_bytes()).map_err(|e| store_error("read schedule", e))?
            else {
                return Ok(FireOutcome::NotFound);
            };
            if codec::decode_schedule(name.as_bytes(), &schedule)?.next_fire != due {
                return Ok(FireOutcome::Moved);
            }
            let jobs = std::slice::from_ref(job);
            let planned = s.plan_enqueue(jobs)?;
            let Some(&enqueued) = planned.first() else {
                return Err(StoreError::new(durable_jobs_store::StoreErrorKind::Other, "sled: fire planned no job"));
            };
            s.transact("fire", |tx| {
                let Some(mut schedule) = tx.schedule(name)?.filter(|s| s.next_fire == due) else {
                    return Err(abort(StoreError::new(
                        durable_jobs_store::StoreErrorKind::Other,
                        format!("sled: schedule {name:?} changed under the write lock"),
                    )));
                };
                tx.insert(jobs, &planned)?;
                schedule.last_fire = Some(due);
                schedule.last_job = match enqueued {
                    Enqueued::New(id) => Some(id),
                    _ => None,
                };
                schedule.next_fire = next;
                schedule.updated_at = now;
                tx.put_schedule(&schedule)?;
                Ok(FireOutcome::Fired(enqueued))
            })
        })
    }
}

impl Tx<'_> {
    fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, TxError> {
        match self.schedules.get(name.as_bytes())? {
            Some(bytes) => codec::decode_schedule(name.as_bytes(), &bytes).map(Some).map_err(abort),
            None => Ok(None),
        }
    }

    fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), TxError> {
        self.schedules.insert(schedule.name.as_bytes(), codec::encode_schedule(schedule).map_err(abort)?)?;
        Ok(())
    }
}
