//! End-to-end tests of TCP ports and of containers outliving the tree: a port served
//! through `tcp-ports` never refuses a connection across reloads, a SIGKILL of the tree and
//! the adoption of its containers by the next tree.

mod tree_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tree_support::{
    client_loop, entry, eventually, exists, first_child, free_port, httpd_binary, root_or_skip,
    ClientCounts, Fixture,
};

fn httpd_config(port: u16, extra: &str) -> String {
    format!(
        "kind: Daemon\nuser-id: 1\ngroup-id: 1\nrestart-timeout: 1\nkill-timeout: 3\n\
         executable: /bin/httpd\nenviron:\n  LISTEN_FD: \"3\"\n{extra}\
         tcp-ports:\n  {port}:\n    fd: 3\n    host: 127.0.0.1\n"
    )
}

fn httpd_fixture(tag: &str, instances: u32) -> (Fixture, u16) {
    let port = free_port();
    let fixture = Fixture::new(tag);
    fixture.write_sandbox("sb", &format!("allow-tcp-ports: [{port}]\n"));
    fixture.install(&httpd_binary(), "/bin/httpd");
    fixture.write_container("httpd", &httpd_config(port, ""));
    fixture.write_processes("sb", &entry("httpd", "httpd", instances));
    (fixture, port)
}

/// Runs a client loop against `port` in a thread until the returned flag is set.
fn start_clients(port: u16) -> (Arc<AtomicBool>, thread::JoinHandle<ClientCounts>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = thread::spawn(move || client_loop(port, &flag, 5_000));
    (stop, handle)
}

fn stop_clients(clients: (Arc<AtomicBool>, thread::JoinHandle<ClientCounts>)) -> ClientCounts {
    clients.0.store(true, Ordering::SeqCst);
    clients.1.join().unwrap()
}

#[test]
fn port_answers_through_reloads() {
    if !root_or_skip("containers and ports") {
        return;
    }
    let (mut fixture, port) = httpd_fixture("portreload", 2);
    fixture.start_tree();
    let before = fixture.wait_running(2, Duration::from_secs(30));
    let clients = start_clients(port);
    for _ in 0..3 {
        let generation = fixture.status().unwrap().generation;
        fixture.signal_tree(Signal::SIGQUIT);
        fixture.wait_generation_above(generation, Duration::from_secs(20));
        thread::sleep(Duration::from_millis(300));
    }
    // A config change restarts both servers while the tree keeps the socket.
    fixture.write_container("httpd", &httpd_config(port, "workdir: /tmp\n"));
    fixture.signal_tree(Signal::SIGHUP);
    let replaced = eventually(Duration::from_secs(30), || {
        let now = fixture.running();
        now.len() == 2 && before.iter().all(|(name, pid)| now.get(name) != Some(pid))
    });
    assert!(replaced, "{}", fixture.log());
    thread::sleep(Duration::from_millis(500));
    let counts = stop_clients(clients);
    // A request that a server accepted just before its SIGTERM may be cut off, because the
    // demo server does not drain; only refusals mean the port was closed.
    assert_eq!(counts.refused, 0, "{counts:?}");
    assert!(counts.ok > 0, "{counts:?}");
    let log = fixture.log();
    assert!(log.contains("kept listening socket across reload"), "{log}");
    assert!(!log.contains("took listening socket"), "{log}");
}

#[test]
fn killed_tree_is_adopted_without_restarts() {
    if !root_or_skip("containers and ports") {
        return;
    }
    let (mut fixture, port) = httpd_fixture("adopt", 5);
    fixture.start_tree();
    let before = fixture.wait_running(5, Duration::from_secs(30));
    let clients = start_clients(port);
    thread::sleep(Duration::from_millis(300));

    fixture.kill_tree();
    thread::sleep(Duration::from_millis(500));
    for pid in before.values() {
        assert!(exists(*pid), "container {pid} died with the tree");
    }
    fixture.start_tree();
    fixture.wait_own_status(Duration::from_secs(20));
    let after = fixture.wait_running(5, Duration::from_secs(30));
    assert_eq!(after, before, "containers were restarted");
    assert!(
        fixture.log().contains("took listening socket"),
        "{}",
        fixture.log()
    );

    // A program killed under an adopted knot is restarted with the failure recorded.
    let victim = before["sb/httpd.2"];
    let program = first_child(victim).expect("the knot runs a program");
    kill(Pid::from_raw(program), Signal::SIGKILL).unwrap();
    let restarted = eventually(Duration::from_secs(20), || {
        fixture
            .running()
            .get("sb/httpd.2")
            .is_some_and(|pid| *pid != victim)
    });
    assert!(restarted, "{}", fixture.log());
    let log = fixture.log();
    let exit_line = log
        .lines()
        .find(|line| line.contains("container exited") && line.contains(&victim.to_string()))
        .unwrap_or_default();
    assert!(exit_line.contains("failure: true"), "{log}");
    assert!(exit_line.contains("signal 9"), "{log}");

    thread::sleep(Duration::from_millis(300));
    let counts = stop_clients(clients);
    assert_eq!(counts.refused, 0, "{counts:?}");
    assert!(counts.ok > 0, "{counts:?}");
}

#[test]
fn container_exited_without_tree_is_restarted() {
    if !root_or_skip("containers") {
        return;
    }
    let (mut fixture, _port) = httpd_fixture("orphanexit", 2);
    fixture.start_tree();
    let before = fixture.wait_running(2, Duration::from_secs(30));
    fixture.kill_tree();
    let victim = before["sb/httpd.0"];
    let program = first_child(victim).expect("the knot runs a program");
    kill(Pid::from_raw(program), Signal::SIGKILL).unwrap();
    assert!(eventually(Duration::from_secs(10), || !exists(victim)));
    fixture.start_tree();
    fixture.wait_own_status(Duration::from_secs(20));
    let after = fixture.wait_running(2, Duration::from_secs(30));
    assert_eq!(after.get("sb/httpd.1"), before.get("sb/httpd.1"));
    assert_ne!(after.get("sb/httpd.0"), Some(&victim));
}

#[test]
fn kill_during_reload_leaves_no_duplicate() {
    if !root_or_skip("containers") {
        return;
    }
    let (mut fixture, _port) = httpd_fixture("killreload", 3);
    fixture.start_tree();
    let before = fixture.wait_running(3, Duration::from_secs(30));
    fixture.write_processes("sb", &entry("httpd", "httpd", 4));
    fixture.signal_tree(Signal::SIGQUIT);
    thread::sleep(Duration::from_millis(30));
    fixture.kill_tree();
    fixture.start_tree();
    fixture.wait_own_status(Duration::from_secs(20));
    let after = fixture.wait_running(4, Duration::from_secs(30));
    for (name, pid) in &before {
        assert_eq!(after.get(name), Some(pid), "{name} was restarted");
    }
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fixture.knots().len(),
        4,
        "duplicate knots: {:?}",
        fixture.knots()
    );
}

#[test]
fn other_master_config_is_never_touched() {
    if !root_or_skip("containers") {
        return;
    }
    let sleep = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 1\n\
                 kill-timeout: 3\nexecutable: /bin/sleep\narguments: [\"3600\"]\n";
    let mut other = Fixture::new("neighbour");
    other.write_container("sleep", sleep);
    other.write_processes("sb", &entry("sleep", "sleep", 2));
    other.start_tree();
    let neighbours = other.wait_running(2, Duration::from_secs(30));

    let mut fixture = Fixture::new("mine");
    fixture.write_container("sleep", sleep);
    fixture.write_processes("sb", &entry("sleep", "sleep", 2));
    fixture.start_tree();
    fixture.wait_running(2, Duration::from_secs(30));
    fixture.kill_tree();
    fixture.start_tree();
    fixture.wait_own_status(Duration::from_secs(20));
    fixture.wait_running(2, Duration::from_secs(30));
    fixture.write_processes("sb", "");
    fixture.signal_tree(Signal::SIGQUIT);
    assert!(eventually(Duration::from_secs(20), || fixture
        .knots()
        .is_empty()));
    fixture.signal_tree(Signal::SIGTERM);
    assert_eq!(fixture.wait_tree(Duration::from_secs(20)), Some(0));

    assert_eq!(other.wait_running(2, Duration::from_secs(5)), neighbours);
    assert_eq!(other.knots().len(), 2);
}

#[test]
fn port_stays_open_during_restart_backoff() {
    if !root_or_skip("containers and ports") {
        return;
    }
    let port = free_port();
    let mut fixture = Fixture::new("backoff");
    fixture.write_sandbox("sb", &format!("allow-tcp-ports: [{port}]\n"));
    fixture.install(&httpd_binary(), "/bin/httpd");
    let config = httpd_config(port, "").replace("restart-timeout: 1", "restart-timeout: 4");
    fixture.write_container("httpd", &config);
    fixture.write_processes("sb", &entry("httpd", "httpd", 1));
    fixture.start_tree();
    let knot = fixture.wait_running(1, Duration::from_secs(30))["sb/httpd.0"];
    let program = first_child(knot).expect("the knot runs a program");
    kill(Pid::from_raw(program), Signal::SIGKILL).unwrap();
    assert!(eventually(Duration::from_secs(10), || !exists(knot)));
    // Nobody serves now, but the tree keeps the socket, so the connection is queued and
    // answered by the next start.
    let stop = AtomicBool::new(false);
    let counts = client_loop(port, &stop, 1);
    assert_eq!(counts.refused, 0, "{counts:?}");
    assert_eq!(counts.ok, 1, "{counts:?}\n{}", fixture.log());
    assert!(
        !fixture.log().contains("failed to bind"),
        "{}",
        fixture.log()
    );
}

#[test]
fn port_closes_when_no_process_names_it() {
    if !root_or_skip("containers and ports") {
        return;
    }
    let (mut fixture, port) = httpd_fixture("portclose", 1);
    fixture.start_tree();
    fixture.wait_running(1, Duration::from_secs(30));
    fixture.write_processes("sb", "");
    fixture.signal_tree(Signal::SIGQUIT);
    let closed = eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
    assert!(closed, "{}", fixture.log());
    assert!(
        fixture.log().contains("closed listening socket"),
        "{}",
        fixture.log()
    );
}
