//! The ordering rules of a workspace's lane, as plain data: no actix, no IO.
//!
//! A lane appends each command to the log as it arrives and may apply
//! it only once its record is durable, in log order. Durability is reported
//! per record and may arrive in any order (one fsync settles a whole batch;
//! tests and failures reorder). [`Sequencer`] holds the commands between
//! append and apply and says, each time a record settles, which commands
//! are now due — always a prefix of the queue, in position order — and
//! which failed.
//!
//! [`admit`] is the other rule: which commands need no log record at all.

use std::collections::VecDeque;

use crate::model::Change;

/// A command's fate once its record settled.
#[derive(Debug, PartialEq)]
pub enum Settled<T, E> {
    /// Durable at `position`: apply it now.
    Apply { position: u64, item: T },
    /// The log could not take it: answer the error, apply nothing.
    Failed { item: T, error: E },
}

struct Slot<T, E> {
    seq: u64,
    position: u64,
    item: T,
    logged: Option<Result<(), E>>,
}

/// Commands appended to the log and not yet applied, in append order.
pub struct Sequencer<T, E> {
    next_seq: u64,
    waiting: VecDeque<Slot<T, E>>,
}

impl<T, E> Default for Sequencer<T, E> {
    fn default() -> Self {
        Sequencer::new()
    }
}

impl<T, E> Sequencer<T, E> {
    pub fn new() -> Self {
        Sequencer {
            next_seq: 0,
            waiting: VecDeque::new(),
        }
    }

    /// Queues a command whose record was appended at `position`; returns
    /// the ticket to settle it with.
    pub fn push(&mut self, position: u64, item: T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiting.push_back(Slot {
            seq,
            position,
            item,
            logged: None,
        });
        seq
    }

    /// Records the outcome of ticket `seq`'s log write, and returns every
    /// command that is now settled at the front of the queue, in order.
    /// An unknown or already settled ticket changes nothing.
    pub fn settle(&mut self, seq: u64, result: Result<(), E>) -> Vec<Settled<T, E>> {
        let Some(front) = self.waiting.front().map(|w| w.seq) else {
            return Vec::new();
        };
        if let Some(slot) = seq
            .checked_sub(front)
            .and_then(|i| self.waiting.get_mut(i as usize))
        {
            if slot.logged.is_none() {
                slot.logged = Some(result);
            }
        }
        let mut due = Vec::new();
        while self.waiting.front().is_some_and(|w| w.logged.is_some()) {
            let slot = self.waiting.pop_front().expect("front exists");
            due.push(match slot.logged.expect("settled") {
                Ok(()) => Settled::Apply {
                    position: slot.position,
                    item: slot.item,
                },
                Err(error) => Settled::Failed {
                    item: slot.item,
                    error,
                },
            });
        }
        due
    }

    /// No command is waiting for the log: the state is the log's.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// How a command enters the sequence.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Log it, apply it once durable.
    Log,
    /// It cannot change anything whatever the state: apply it now without
    /// a record (a delta with no identifier, Segment's connection test).
    ApplyUnlogged,
    /// It would change nothing in the current state: answer success
    /// without a record.
    AlreadyDone,
}

/// A delta without identifiers changes nothing, whatever the state
/// (Segment's connection test sends one): no record.
pub fn admit_delta(changes: &[Change]) -> Admission {
    if changes.iter().all(|c| c.ids.is_empty()) {
        Admission::ApplyUnlogged
    } else {
        Admission::Log
    }
}

/// A name call that repeats the cohort's current name (Segment sends one
/// before every delta) is already done, but only when no command is
/// waiting for the log (`idle`): only then is the current state the state
/// in log order. `current` is the cohort's `(named, name)`, if it exists.
pub fn admit_name(name: &str, idle: bool, current: Option<(bool, &str)>) -> Admission {
    match current {
        Some((true, current)) if idle && current == name => Admission::AlreadyDone,
        _ => Admission::Log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Identifier;

    type Seq = Sequencer<&'static str, &'static str>;

    fn applied(due: &[Settled<&'static str, &'static str>]) -> Vec<&'static str> {
        due.iter()
            .map(|s| match s {
                Settled::Apply { item, .. } => *item,
                Settled::Failed { item, .. } => item,
            })
            .collect()
    }

    #[test]
    fn records_settling_out_of_order_apply_in_log_order() {
        let mut s = Seq::new();
        let a = s.push(11, "a");
        let b = s.push(12, "b");
        let c = s.push(13, "c");
        assert!(s.settle(c, Ok(())).is_empty(), "c waits for a and b");
        assert!(s.settle(b, Ok(())).is_empty());
        let due = s.settle(a, Ok(()));
        assert_eq!(applied(&due), vec!["a", "b", "c"]);
        assert_eq!(
            due[1],
            Settled::Apply {
                position: 12,
                item: "b"
            }
        );
        assert!(s.is_idle());
    }

    #[test]
    fn a_failed_record_is_answered_in_order_and_never_checkpointed() {
        let mut s = Seq::new();
        let a = s.push(1, "a");
        let b = s.push(2, "b");
        // The log reuses a failed position: the next append is 2 again.
        let c = s.push(2, "c");
        assert!(s.settle(b, Err("disk full")).is_empty());
        let due = s.settle(a, Ok(()));
        assert_eq!(
            due,
            vec![
                Settled::Apply {
                    position: 1,
                    item: "a"
                },
                Settled::Failed {
                    item: "b",
                    error: "disk full"
                }
            ]
        );
        assert!(!s.is_idle());
        assert_eq!(applied(&s.settle(c, Ok(()))), vec!["c"]);
    }

    #[test]
    fn unknown_and_repeated_tickets_change_nothing() {
        let mut s = Seq::new();
        assert!(s.settle(7, Ok(())).is_empty());
        let a = s.push(1, "a");
        let b = s.push(2, "b");
        assert!(s.settle(b, Err("first")).is_empty());
        assert!(s.settle(b, Ok(())).is_empty(), "the first outcome stands");
        assert!(s.settle(99, Ok(())).is_empty());
        let due = s.settle(a, Ok(()));
        assert!(matches!(due[1], Settled::Failed { error: "first", .. }));
        assert!(s.settle(a, Ok(())).is_empty(), "already applied");
    }

    #[test]
    fn deltas_without_identifiers_need_no_record() {
        let empty = Change {
            remove: false,
            ids: Vec::new(),
        };
        assert_eq!(admit_delta(&[]), Admission::ApplyUnlogged);
        assert_eq!(
            admit_delta(&[empty.clone(), empty.clone()]),
            Admission::ApplyUnlogged
        );
        let one = Change {
            remove: true,
            ids: vec![Identifier::External("u".into())],
        };
        assert_eq!(admit_delta(&[empty, one]), Admission::Log);
    }

    #[test]
    fn a_repeated_name_is_done_only_when_the_state_is_the_logs() {
        assert_eq!(
            admit_name("A", true, Some((true, "A"))),
            Admission::AlreadyDone
        );
        assert_eq!(admit_name("A", false, Some((true, "A"))), Admission::Log);
        assert_eq!(admit_name("B", true, Some((true, "A"))), Admission::Log);
        // Named after its id by a delta, never by a name call: the first
        // name call sets created_at, so it is logged even with that name.
        assert_eq!(admit_name("A", true, Some((false, "A"))), Admission::Log);
        assert_eq!(admit_name("A", true, None), Admission::Log);
    }
}
