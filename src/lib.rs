//! lithos-rs: a process supervisor and containerizer for Linux servers that reads the
//! configuration format of the original lithos.
//!
//! The crate is organised around one loop: [`model`] builds the desired state from the
//! config tree, [`state`] observes what runs and keeps what cannot be observed,
//! [`reconcile`] compares the two and returns a plan, and [`exec`] carries the plan out.
#![warn(missing_docs)]

pub mod exec;
pub mod model;
pub mod reconcile;
pub mod secrets;
pub mod state;
pub mod tools;
