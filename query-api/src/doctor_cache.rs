//! Per-doctor values that the directory and the slot list derive from a `doctor_profiles`
//! row: the parsed `DoctorSchedule` and the last next-free-slot result. An entry is keyed
//! by doctor id and compared with the row's schedule columns (time zone, weekly
//! availability, time off) on every read, so a profile change replaces it at once.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use lru::LruCache;
use medflow_domain::availability::{BookingPolicy, DoctorSchedule, Slot, TimeRange};
use medflow_infra::web::ApiError;
use uuid::Uuid;

use crate::routes::doctor_views::{next_available_slot, ScheduleColumns};

/// Doctors kept; a directory larger than this still works, with more recomputation.
const CAPACITY: usize = 4096;

pub struct DoctorCache {
    entries: Mutex<LruCache<Uuid, Arc<CachedDoctor>>>,
}

impl Default for DoctorCache {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(CAPACITY).expect("non-zero capacity");
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }
}

impl DoctorCache {
    /// Returns the cached entry for the doctor, or parses `columns` into a new entry when
    /// there is none or its columns differ from `columns`.
    pub fn get(
        &self,
        doctor_id: Uuid,
        columns: &ScheduleColumns,
    ) -> Result<Arc<CachedDoctor>, ApiError> {
        if let Some(entry) = self.lock().get(&doctor_id) {
            if entry.columns == *columns {
                return Ok(Arc::clone(entry));
            }
        }
        let entry = Arc::new(CachedDoctor {
            columns: columns.clone(),
            schedule: columns.schedule()?,
            next_slot: Mutex::new(None),
        });
        self.lock().put(doctor_id, Arc::clone(&entry));
        Ok(entry)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Uuid, Arc<CachedDoctor>>> {
        // The guarded map stays consistent even if a holder panicked, so a poisoned lock
        // is used as it is.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One doctor's schedule as parsed from the row whose columns it keeps for comparison.
pub struct CachedDoctor {
    columns: ScheduleColumns,
    pub schedule: DoctorSchedule,
    next_slot: Mutex<Option<NextSlot>>,
}

/// A next free slot and the inputs it was computed from. `booked` keeps only the
/// intervals that start before the slot ends, because later ones cannot change it.
struct NextSlot {
    computed_at: DateTime<Utc>,
    booked: Vec<TimeRange>,
    policy: BookingPolicy,
    slot: Slot,
}

impl NextSlot {
    /// Whether the passage of time from `computed_at` to `now` alone leaves the slot the
    /// result (see `CachedDoctor::next_available_slot`).
    fn holds_at(&self, now: DateTime<Utc>, policy: &BookingPolicy) -> bool {
        self.policy == *policy
            && now >= self.computed_at
            && self.slot.start >= now + policy.minimum_notice()
    }
}

/// Outcome of a next-free-slot lookup.
pub enum NextSlotLookup {
    Found(Option<Slot>),
    /// The booked intervals given end too early to decide; call again with every
    /// interval up to the booking horizon.
    NeedsWholeHorizon,
}

impl CachedDoctor {
    /// Returns how far ahead the booked intervals must be loaded for
    /// `next_available_slot`: to the end of the kept slot while it can still be the
    /// result, otherwise `None`, meaning the whole booking horizon.
    pub fn booked_needed_until(
        &self,
        now: DateTime<Utc>,
        policy: &BookingPolicy,
    ) -> Option<DateTime<Utc>> {
        self.memo()
            .as_ref()
            .filter(|kept| kept.holds_at(now, policy))
            .map(|kept| kept.slot.end)
    }

    /// Returns the first bookable slot within the booking horizon at `now`, the same
    /// value as `next_available_slot` on this schedule. `booked` must hold every
    /// booked interval that ends after `now` and starts before `booked_until`; with
    /// `booked_until` at the horizon's end that is all of them.
    ///
    /// A slot S found at an earlier instant t0 is still the result at `now` when the
    /// booked intervals that start before S ends are the same, `now` is not before t0
    /// and S still starts after `now` plus the minimum notice. Every earlier start was
    /// rejected at t0 for being before t0, inside the notice, outside the windows, in
    /// time off or booked, and none of those rejections lifts as time moves forward.
    /// S stays within the horizon, which only moves later. "No slot" is not kept,
    /// because the moving horizon can bring a new slot into range.
    pub fn next_available_slot(
        &self,
        booked: &[TimeRange],
        booked_until: DateTime<Utc>,
        now: DateTime<Utc>,
        policy: &BookingPolicy,
    ) -> Result<NextSlotLookup, ApiError> {
        let mut memo = self.memo();
        if let Some(kept) = memo.as_ref().filter(|kept| kept.holds_at(now, policy)) {
            if kept.slot.end <= booked_until {
                let current = sorted(booked.iter().filter(|range| range.start() < kept.slot.end));
                let before = sorted(kept.booked.iter().filter(|range| range.end() > now));
                if current == before {
                    return Ok(NextSlotLookup::Found(Some(kept.slot)));
                }
            }
        }
        if booked_until < now + policy.horizon() {
            return Ok(NextSlotLookup::NeedsWholeHorizon);
        }
        let slot = next_available_slot(&self.schedule, booked, now, policy)?;
        *memo = slot.map(|slot| NextSlot {
            computed_at: now,
            booked: booked
                .iter()
                .filter(|range| range.start() < slot.end)
                .copied()
                .collect(),
            policy: *policy,
            slot,
        });
        Ok(NextSlotLookup::Found(slot))
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, Option<NextSlot>> {
        self.next_slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn sorted<'a>(ranges: impl Iterator<Item = &'a TimeRange>) -> Vec<TimeRange> {
    let mut ranges: Vec<TimeRange> = ranges.copied().collect();
    ranges.sort_unstable();
    ranges
}
