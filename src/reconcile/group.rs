//! Attribution of live processes to instances, built once per pass.
//!
//! A pass over 10,000 instances must stay within a few milliseconds, so names are compared
//! as rarely as possible. A process is first matched to the record whose `process` contains
//! its pid and start time (an integer lookup). Only processes that no record claims are
//! grouped by name.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::model::spec::InstanceName;
use crate::state::{InstanceRecord, Observed, ObservedProcess, Persisted, ProcId, ProcessKind};

/// A live process attributed to an instance.
#[derive(Clone, Copy, Debug)]
pub(super) struct Live<'a> {
    pub id: ProcId,
    /// The knot's fingerprint; `None` for a child that has not called exec yet.
    pub fingerprint: Option<&'a str>,
}

/// A live process a record claims by pid and start time.
#[derive(Clone, Copy)]
struct Claimed<'a> {
    /// The name in the knot's command line; `None` for a forking child.
    owner: Option<&'a InstanceName>,
    live: Live<'a>,
}

/// Live processes of one pass, attributed to instances.
pub(super) struct Grouped<'a> {
    /// Per record, in the map's order, the live process its `process` names.
    claimed: std::vec::IntoIter<Option<Claimed<'a>>>,
    /// A record claimed a knot that names another instance; set by [`Grouped::take`] when
    /// names were not checked up front, and the pass must then be redone with
    /// `check_names`.
    pub misattributed: bool,
    /// Live knots no record claims, by the name in their command line.
    by_name: FastMap<&'a InstanceName, Vec<Live<'a>>>,
    /// Children that are neither knots of the master nor forking, in observed order.
    pub unknown: Vec<ProcId>,
    /// Forking children no record claims, in observed order.
    pub unattributed_forks: Vec<ProcId>,
}

impl<'a> Grouped<'a> {
    /// Attributes every live process of `observed`. A knot belongs to the instance named in
    /// its command line, and a forking child to the instance whose record contains its pid
    /// and start time.
    ///
    /// With `check_names`, a knot is claimed only by a record of its own name. Without, the
    /// names are compared later in [`Grouped::take`], against names whose bytes the merge
    /// has just read: a pass over 10,000 instances is bound by cache misses on name bytes.
    pub fn new(observed: &'a Observed, persisted: &'a Persisted, check_names: bool) -> Self {
        let processes = &observed.processes;
        let mut index: FastMap<ProcId, usize> =
            FastMap::with_capacity_and_hasher(processes.len(), Default::default());
        for (position, process) in processes.iter().enumerate() {
            if process.is_live() {
                index.insert(process.id, position);
            }
        }
        let mut is_claimed = vec![false; processes.len()];
        let claimed = persisted
            .instances
            .iter()
            .map(|(name, record)| {
                let position = *index.get(&record.process?)?;
                let process = &processes[position];
                let (owner, fingerprint) = knot_parts(process)?;
                // A knot names its instance itself. A record of another instance with the
                // same pid and start time is stale, so it does not move the knot.
                let wrong_owner = check_names && owner.is_some_and(|own| own != name);
                if is_claimed[position] || wrong_owner {
                    return None;
                }
                is_claimed[position] = true;
                let live = Live {
                    id: process.id,
                    fingerprint,
                };
                Some(Claimed { owner, live })
            })
            .collect::<Vec<_>>()
            .into_iter();
        let mut grouped = Grouped {
            claimed,
            misattributed: false,
            by_name: FastMap::default(),
            unknown: Vec::new(),
            unattributed_forks: Vec::new(),
        };
        let unclaimed = processes
            .iter()
            .zip(is_claimed)
            .filter(|(p, claimed)| p.is_live() && !claimed);
        for (process, _) in unclaimed {
            grouped.file_unclaimed(process);
        }
        grouped
    }

    fn file_unclaimed(&mut self, process: &'a ObservedProcess) {
        let id = process.id;
        match &process.kind {
            ProcessKind::Knot { name, fingerprint } => {
                let live = Live {
                    id,
                    fingerprint: Some(fingerprint),
                };
                self.by_name.entry(name).or_default().push(live);
            }
            ProcessKind::Forking => self.unattributed_forks.push(id),
            ProcessKind::Unknown => self.unknown.push(id),
        }
    }

    /// Moves the live processes of `name` into `out` (cleared first). Must be called for
    /// every name in order, with the record when there is one, as [`merge`] yields them.
    pub fn take(
        &mut self,
        name: &InstanceName,
        record: Option<&InstanceRecord>,
        out: &mut Vec<Live<'a>>,
    ) {
        out.clear();
        if record.is_some() {
            if let Some(claimed) = self.claimed.next().flatten() {
                match claimed.owner {
                    Some(owner) if owner != name => self.misattributed = true,
                    Some(_) | None => out.push(claimed.live),
                }
            }
        }
        if !self.by_name.is_empty() {
            if let Some(more) = self.by_name.remove(name) {
                out.extend(more);
            }
        }
    }

    /// Returns the processes of instances neither desired nor recorded, sorted by name.
    pub fn leftovers(self) -> Vec<(&'a InstanceName, Vec<Live<'a>>)> {
        let mut rest: Vec<_> = self.by_name.into_iter().collect();
        rest.sort_unstable_by(|a, b| a.0.cmp(b.0));
        rest
    }
}

/// Returns a knot's name and fingerprint, `(None, None)` for a forking child, and `None`
/// for an unknown child, which no record can claim.
fn knot_parts(process: &ObservedProcess) -> Option<(Option<&InstanceName>, Option<&str>)> {
    match &process.kind {
        ProcessKind::Knot { name, fingerprint } => Some((Some(name), Some(fingerprint))),
        ProcessKind::Forking => Some((None, None)),
        ProcessKind::Unknown => None,
    }
}

/// Walks two maps keyed by instance name in key order, pairing equal keys, so no name is
/// looked up in a map.
pub(super) fn merge<'a, A, B>(
    left: &'a BTreeMap<InstanceName, A>,
    right: &'a BTreeMap<InstanceName, B>,
) -> impl Iterator<Item = (&'a InstanceName, Option<&'a A>, Option<&'a B>)> {
    let mut left = left.iter().peekable();
    let mut right = right.iter().peekable();
    std::iter::from_fn(move || {
        let order = match (left.peek(), right.peek()) {
            (Some(a), Some(b)) => a.0.cmp(b.0),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return None,
        };
        match order {
            Ordering::Less => left.next().map(|(name, a)| (name, Some(a), None)),
            Ordering::Greater => right.next().map(|(name, b)| (name, None, Some(b))),
            Ordering::Equal => {
                let (name, a) = left.next()?;
                let (_, b) = right.next()?;
                Some((name, Some(a), Some(b)))
            }
        }
    })
}

/// FNV-1a: pids and instance names are not chosen by an attacker, so SipHash's resistance
/// to hash flooding buys nothing here, and it cost a fifth of a pass.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;
