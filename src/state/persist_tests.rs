use std::time::Duration;

use blake2::{Blake2s256, Digest};
use proptest::prelude::*;

use super::*;
use crate::model::spec::InstanceName;
use crate::reconcile::testing::sample_instance;
use crate::state::{ExitRecord, ProcId};

const SEC: Duration = Duration::from_secs(1);

fn full_state() -> Persisted {
    let name = InstanceName::new("s", "web", 0);
    let instance = sample_instance(name.clone(), "abc", SEC, 2 * SEC);
    let mut state = Persisted {
        generation: 7,
        tree_restarts: 3,
        ..Persisted::default()
    };
    state.record_spawn(
        &instance,
        ProcId {
            pid: 10,
            start_time: 20,
        },
        5 * SEC,
    );
    state.record_signal(
        ProcId {
            pid: 10,
            start_time: 20,
        },
        6 * SEC,
    );
    state.record_signal(
        ProcId {
            pid: 99,
            start_time: 1,
        },
        6 * SEC,
    );
    state.remember_good("s", "web", &[instance]);
    state.record_exit_status(
        &InstanceName::new("s", "web", 1),
        ExitRecord {
            time: SEC,
            failure: true,
            code: Some(3),
            signal: None,
        },
    );
    state.set_boot_id("boot-a");
    state
}

fn saved_bytes(state: &Persisted) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.bin");
    state.save(&path).unwrap();
    std::fs::read(path).unwrap()
}

fn load_bytes(bytes: &[u8]) -> (Persisted, Option<PersistError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.bin");
    std::fs::write(&path, bytes).unwrap();
    Persisted::load(&path)
}

#[test]
fn round_trip_keeps_everything() {
    let state = full_state();
    let (loaded, error) = load_bytes(&saved_bytes(&state));
    assert!(error.is_none(), "{error:?}");
    assert_eq!(loaded, state);
    let name = InstanceName::new("s", "web", 0);
    assert_eq!(loaded.instances[&name].term_sent, Some(6 * SEC));
    assert_eq!(loaded.last_good("s", "web").unwrap()[0].fingerprint, "abc");
}

#[test]
fn missing_file_is_empty_with_error() {
    let dir = tempfile::tempdir().unwrap();
    let (state, error) = Persisted::load(&dir.path().join("state.bin"));
    assert_eq!(state, Persisted::default());
    assert!(matches!(error, Some(PersistError::Missing { .. })));
}

#[test]
fn every_truncation_is_empty_with_error() {
    let bytes = saved_bytes(&full_state());
    for length in 0..bytes.len() {
        let (state, error) = load_bytes(&bytes[..length]);
        assert_eq!(state, Persisted::default(), "length {length}");
        assert!(error.is_some(), "length {length}");
    }
}

#[test]
fn flipped_byte_is_rejected() {
    let mut bytes = saved_bytes(&full_state());
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    assert!(matches!(
        load_bytes(&bytes).1,
        Some(PersistError::Invalid { .. })
    ));
}

#[test]
fn other_version_is_rejected() {
    let mut bytes = saved_bytes(&full_state());
    bytes[8..12].copy_from_slice(&(STATE_FORMAT_VERSION + 1).to_le_bytes());
    assert!(matches!(
        load_bytes(&bytes).1,
        Some(PersistError::Version { .. })
    ));
}

/// A payload with a valid checksum whose first length prefix claims an enormous map must
/// fail to decode instead of allocating.
#[test]
fn huge_length_prefix_is_rejected() {
    let mut payload = 1u64.to_le_bytes().to_vec();
    payload.extend_from_slice(&u64::MAX.to_le_bytes());
    payload.extend_from_slice(&[0; 16]);
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&Blake2s256::digest(&payload));
    bytes.extend_from_slice(&payload);
    assert!(matches!(
        load_bytes(&bytes).1,
        Some(PersistError::Decode { .. })
    ));
}

#[test]
fn save_replaces_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.bin");
    Persisted::default().save(&path).unwrap();
    full_state().save(&path).unwrap();
    assert_eq!(Persisted::load(&path).0, full_state());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["state.bin"]);
}

#[test]
fn save_into_missing_dir_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent/state.bin");
    assert!(matches!(
        full_state().save(&path),
        Err(PersistError::Write { .. })
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn new_boot_drops_times_and_processes() {
    let mut state = full_state();
    assert!(!state.set_boot_id("boot-a"));
    assert!(state.set_boot_id("boot-b"));
    let record = &state.instances[&InstanceName::new("s", "web", 0)];
    assert_eq!(
        (record.process, record.last_start, record.term_sent),
        (None, None, None)
    );
    assert!(state.signals.is_empty());
    assert_eq!(record.starts, 1, "counters survive a reboot");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (state, error) = load_bytes(&bytes);
        prop_assert_eq!(state, Persisted::default());
        prop_assert!(error.is_some());
    }

    #[test]
    fn header_with_arbitrary_payload_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Blake2s256::digest(&payload));
        bytes.extend_from_slice(&payload);
        let _ = load_bytes(&bytes);
    }
}

#[test]
fn exit_of_unrecorded_process_keeps_record() {
    let mut state = full_state();
    let name = InstanceName::new("s", "web", 0);
    let exit = ExitRecord {
        time: 7 * SEC,
        failure: false,
        code: Some(0),
        signal: None,
    };
    state.record_process_exit(
        &name,
        ProcId {
            pid: 99,
            start_time: 1,
        },
        exit,
    );
    assert_eq!(
        state.instances[&name].process,
        Some(ProcId {
            pid: 10,
            start_time: 20
        })
    );
    let gone = ProcId {
        pid: 99,
        start_time: 1,
    };
    assert!(!state.signals.contains_key(&gone));
    assert_eq!(state.metrics.total.deaths, 2);
    state.record_process_exit(
        &name,
        ProcId {
            pid: 10,
            start_time: 20,
        },
        exit,
    );
    assert_eq!(state.instances[&name].process, None);
    assert_eq!(state.instances[&name].last_exit, Some(exit));
}
