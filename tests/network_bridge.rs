//! End-to-end tests of the bridged network, as root. Each test body runs on a thread of
//! its own that first moves into a fresh network namespace and creates its bridge there.
//! The knots it starts inherit that namespace as their host's, so no test touches the
//! machine's interfaces or routes. The namespace dies with the thread and the knots,
//! which a guard kills on every exit path, panics included.

mod knot_support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use knot_support::{container_root, eventually, root_or_skip, spec, wait_exit};
use lithos::exec::network::veth_names;
use lithos::model::spec::{EntryKind, IdMap, LaunchSpec, NetworkSpec, TcpPortSpec};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BRIDGE: &str = "lithos-br0";
const GATEWAY: &str = "10.77.0.1";

/// Runs `body` on a new thread inside a new network namespace with `BRIDGE` up at
/// 10.77.0.1/24, and re-raises its panic.
fn in_test_network(body: impl FnOnce() + Send + 'static) {
    let thread = std::thread::spawn(move || {
        // Network namespaces are per thread, so only this thread and what it starts
        // leave the test runner's namespace.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare CLONE_NEWNET");
        for args in [
            "link set lo up".to_string(),
            format!("link add {BRIDGE} type bridge"),
            format!("addr add {GATEWAY}/24 dev {BRIDGE}"),
            format!("link set {BRIDGE} up"),
        ] {
            ip(&args);
        }
        body();
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `ip ARGS` in the calling thread's network namespace and returns its output.
fn ip(args: &str) -> String {
    let output = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip");
    assert!(
        output.status.success(),
        "ip {args} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns the names of the interfaces attached to the test bridge.
fn bridge_ports() -> Vec<String> {
    ip(&format!("-o link show master {BRIDGE}"))
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

fn interface_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Kills and reaps the knots it holds when dropped, so a failing test leaves no process
/// behind to keep its namespace alive.
#[derive(Default)]
struct Knots(Vec<i32>);

impl Knots {
    fn start(&mut self, spec: &LaunchSpec, sockets: &[(i32, i32)]) -> i32 {
        let request = lithos::exec::spawn::SpawnRequest {
            spec,
            fingerprint: "0123abcd",
            master: Path::new("/nonexistent/master.yaml"),
            knot_binary: Path::new(env!("CARGO_BIN_EXE_lithos_knot")),
            cgroups: None,
            sockets,
            extra_env: &[],
        };
        let pid = lithos::exec::spawn::spawn_knot(&request)
            .expect("spawn_knot")
            .pid;
        self.0.push(pid);
        pid
    }

    fn kill(&mut self, pid: i32) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        self.0.retain(|&p| p != pid);
    }

    fn wait(&mut self, pid: i32, limit: Duration) -> Option<i32> {
        let code = wait_exit(pid, limit);
        if code.is_some() {
            self.0.retain(|&p| p != pid);
        }
        code
    }
}

impl Drop for Knots {
    fn drop(&mut self) {
        for pid in std::mem::take(&mut self.0) {
            self.kill(pid);
        }
    }
}

/// Builds a bridged spec running `script` with `/bin/sh -c` at `address`.
fn bridged(root: &Path, name: &str, address: Option<&str>, script: &str) -> LaunchSpec {
    let mut spec = spec(root, name, "/bin/sh", &["-c", script]);
    spec.network = Some(NetworkSpec {
        bridge: BRIDGE.to_string(),
        network: "10.77.0.0/24".to_string(),
        default_gateway: Some(GATEWAY.parse().unwrap()),
        after_setup_command: Vec::new(),
        ip_address: address.map(|a| a.parse().unwrap()),
    });
    spec
}

fn port(port: u16, fd: i32, host: &str, external: bool) -> TcpPortSpec {
    TcpPortSpec {
        port,
        host: host.parse().unwrap(),
        fd,
        listen_backlog: 16,
        reuse_addr: true,
        reuse_port: false,
        set_non_block: false,
        external,
    }
}

/// Connects to `address` and returns what the server sends before it closes.
fn fetch(address: &str) -> Option<String> {
    let address: SocketAddr = address.parse().unwrap();
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Waits until a connection to `address` returns `expected`.
fn assert_serves(address: &str, expected: &str) {
    let mut last = None;
    let served = eventually(Duration::from_secs(10), || {
        last = fetch(address);
        last.as_deref().map(str::trim) == Some(expected)
    });
    assert!(served, "{address} should serve {expected:?}, got {last:?}");
}

fn log(spec: &LaunchSpec) -> String {
    let stdio = std::fs::read_to_string(&spec.stdio_log).unwrap_or_default();
    let knot = std::fs::read_to_string(&spec.log_file).unwrap_or_default();
    format!("stdio log:\n{stdio}\nknot log:\n{knot}")
}

/// Returns the pid of the knot's program, its only child.
fn program_pid(knot: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{knot}/task/{knot}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

#[test]
fn containers_reach_each_other_by_ip() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let server = bridged(
            tmp.path(),
            "net1/server.0",
            Some("10.77.0.2"),
            "exec nc -ll -p 7000 -e /bin/echo from-server",
        );
        knots.start(&server, &[]);
        let mut client = bridged(
            tmp.path(),
            "net1/client.0",
            Some("10.77.0.3"),
            "for i in $(seq 100); do out=$(nc -w 1 10.77.0.2 7000) && [ -n \"$out\" ] && \
             { echo \"client got $out\"; exit 0; }; sleep 0.1; done; exit 1",
        );
        client.entry_kind = EntryKind::Command;
        let client_pid = knots.start(&client, &[]);
        let code = knots.wait(client_pid, Duration::from_secs(30));
        assert_eq!(code, Some(0), "client knot failed\n{}", log(&client));
        assert!(
            log(&client).contains("client got from-server"),
            "{}",
            log(&client)
        );

        let ports = bridge_ports();
        let server_end = veth_names("net1/server.0").host;
        assert!(
            ports.contains(&server_end),
            "server should be on the bridge: {ports:?}"
        );
        // The client's pair went away with its namespace when the command ended.
        let client_end = veth_names("net1/client.0").host;
        assert!(
            eventually(Duration::from_secs(10), || !interface_exists(&client_end)),
            "{client_end} left over"
        );
        let record = std::fs::read_to_string(server.state_dir.join("network.json")).unwrap();
        assert!(
            record.contains(&veth_names("net1/server.0").host),
            "{record}"
        );
        assert!(record.contains("10.77.0.2/24"), "{record}");
        // The host side reaches the server too, through the bridge.
        assert_serves("10.77.0.2:7000", "from-server");
    });
}

#[test]
fn client_reaches_internal_and_external_ports() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let mut spec = bridged(
            tmp.path(),
            "net2/ports.0",
            Some("10.77.0.4"),
            "ls -l /proc/self/fd/ >&2; grep CapEff /proc/self/status >&2; exec sleep 1000",
        );
        spec.container
            .tcp_ports
            .insert(3, port(7001, 3, "0.0.0.0", false));
        spec.container
            .tcp_ports
            .insert(4, port(7002, 4, GATEWAY, true));
        // The tree's part: external ports are bound in the host's namespace.
        let external = TcpListener::bind((GATEWAY, 7002)).unwrap();
        let external_inode = std::fs::metadata(format!("/proc/self/fd/{}", external.as_raw_fd()))
            .unwrap()
            .ino();
        let knot = knots.start(&spec, &[(4, external.as_raw_fd())]);
        drop(external);

        // A connection completes on a listening socket even if no process accepts it.
        let internal: SocketAddr = "10.77.0.4:7001".parse().unwrap();
        let connected = eventually(Duration::from_secs(10), || {
            TcpStream::connect_timeout(&internal, Duration::from_secs(1)).is_ok()
        });
        assert!(connected, "internal port should accept\n{}", log(&spec));
        let outside: SocketAddr = format!("{GATEWAY}:7001").parse().unwrap();
        assert!(
            TcpStream::connect_timeout(&outside, Duration::from_secs(1)).is_err(),
            "the internal port must not be bound in the host's namespace"
        );
        // Only the program has the external socket open now that the test closed its copy.
        // The knot binds the internal port before it starts the program.
        let mut program = None;
        eventually(Duration::from_secs(10), || {
            program = program_pid(knot);
            program.is_some()
        });
        let program = program.expect("program pid");
        let held = std::fs::metadata(format!("/proc/{program}/fd/4"))
            .unwrap()
            .ino();
        assert_eq!(held, external_inode, "fd 4 should be the tree's socket");
        let link = std::fs::read_link(format!("/proc/{program}/fd/3")).unwrap();
        assert!(
            link.to_string_lossy().starts_with("socket:"),
            "fd 3 should be a socket: {link:?}"
        );
        let external: SocketAddr = format!("{GATEWAY}:7002").parse().unwrap();
        assert!(TcpStream::connect_timeout(&external, Duration::from_secs(1)).is_ok());
    });
}

#[test]
fn non_root_program_binds_low_port() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let mut spec = bridged(
            tmp.path(),
            "net3/low.0",
            Some("10.77.0.5"),
            "grep Cap /proc/self/status >&2; exec nc -ll -p 80 -e /bin/echo low-port",
        );
        spec.container.user_id = 1;
        spec.container.group_id = 1;
        knots.start(&spec, &[]);
        assert_serves("10.77.0.5:80", "low-port");
        let text = log(&spec);
        // CAP_NET_BIND_SERVICE is bit 10, and nothing else is left.
        assert!(
            text.contains("CapEff:\t0000000000000400"),
            "program should have only CAP_NET_BIND_SERVICE\n{text}"
        );
        assert!(text.contains("CapBnd:\t0000000000000000"), "{text}");
    });
}

#[test]
fn after_setup_command_sees_container_ip() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let seen = tmp.path().join("after-setup.txt");
        let mut spec = bridged(tmp.path(), "net4/cmd.run.1", Some("10.77.0.6"), "exit 0");
        spec.entry_kind = EntryKind::Command;
        spec.network.as_mut().unwrap().after_setup_command = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            format!(
                "echo @{{container_ip}} > {0}; /bin/cat /proc/net/dev >> {0}; env >> {0}",
                seen.display()
            ),
        ];
        let pid = knots.start(&spec, &[]);
        assert_eq!(
            knots.wait(pid, Duration::from_secs(30)),
            Some(0),
            "{}",
            log(&spec)
        );
        let text = std::fs::read_to_string(&seen).expect("after-setup-command output");
        assert_eq!(text.lines().next(), Some("10.77.0.6"), "{text}");
        // It runs in the container's namespace: eth0 is there, the host's bridge is not.
        assert!(text.contains("eth0:"), "{text}");
        assert!(!text.contains(BRIDGE), "{text}");
        assert!(
            !text.contains("PATH="),
            "environment should be empty: {text}"
        );
    });
}

#[test]
fn after_setup_failure_or_hang_is_logged() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let cases = [
            (
                "net5/cmd.fail.1",
                "10.77.0.7",
                vec!["/bin/false"],
                "after-setup-command failed",
            ),
            (
                "net5/cmd.hang.1",
                "10.77.0.8",
                vec!["/bin/sleep", "600"],
                "timed out",
            ),
        ];
        for (name, address, command, message) in cases {
            let mut spec = bridged(tmp.path(), name, Some(address), "echo program-ran");
            spec.entry_kind = EntryKind::Command;
            spec.network.as_mut().unwrap().after_setup_command =
                command.iter().map(|s| s.to_string()).collect();
            let pid = knots.start(&spec, &[]);
            let limit = lithos::exec::network::AFTER_SETUP_TIMEOUT + Duration::from_secs(20);
            assert_eq!(knots.wait(pid, limit), Some(0), "{name}\n{}", log(&spec));
            let text = log(&spec);
            assert!(text.contains("program-ran"), "{name}\n{text}");
            assert!(text.contains(message), "{name}\n{text}");
        }
    });
}

#[test]
fn restart_after_kill_reuses_address() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let name = "net6/web.0";
        let host_end = veth_names(name).host;
        // A pair of the same name left by an unclean exit must not block the start.
        ip(&format!(
            "link add {host_end} type veth peer name stale-peer"
        ));
        let spec = bridged(
            tmp.path(),
            name,
            Some("10.77.0.9"),
            "exec nc -ll -p 7000 -e /bin/echo web",
        );
        let first = knots.start(&spec, &[]);
        assert_serves("10.77.0.9:7000", "web");
        assert!(
            !interface_exists("stale-peer"),
            "the stale pair was not replaced"
        );
        // The tree starts the instance again as soon as the knot is gone, without waiting
        // for the kernel to destroy the old namespace.
        knots.kill(first);
        let second = knots.start(&spec, &[]);
        assert_serves("10.77.0.9:7000", "web");
        assert_eq!(bridge_ports(), vec![host_end.clone()]);

        knots.kill(second);
        // The kernel destroys the namespace, and the pair with it, asynchronously.
        let gone = eventually(Duration::from_secs(10), || !interface_exists(&host_end));
        assert!(gone, "{host_end} left over after the kill");
        assert!(bridge_ports().is_empty(), "{:?}", bridge_ports());
        assert!(fetch("10.77.0.9:7000").is_none());
    });
}

#[test]
fn commands_share_no_address() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let first = bridged(
            tmp.path(),
            "net7/cmd.job.100",
            Some("10.77.0.10"),
            "exec sleep 60",
        );
        let first_pid = knots.start(&first, &[]);
        let holder = first.state_dir.parent().unwrap().join("ip-10.77.0.10.lock");
        assert!(
            eventually(Duration::from_secs(10), || std::fs::read_to_string(&holder)
                .is_ok_and(|t| t.contains("net7/cmd.job.100"))),
            "{}",
            log(&first)
        );
        let mut second = bridged(tmp.path(), "net7/cmd.job.200", Some("10.77.0.10"), "exit 0");
        second.entry_kind = EntryKind::Command;
        let pid = knots.start(&second, &[]);
        let code = knots.wait(pid, Duration::from_secs(30));
        assert_eq!(code, Some(lithos::exec::knot::exit_codes::SETUP_FAILED));
        let text = log(&second);
        assert!(
            text.contains("address 10.77.0.10 is in use by net7/cmd.job.100"),
            "{text}"
        );
        // The address is free again once the first command is gone.
        knots.kill(first_pid);
        let third_pid = knots.start(&second, &[]);
        assert_eq!(
            knots.wait(third_pid, Duration::from_secs(30)),
            Some(0),
            "{}",
            log(&second)
        );
    });
}

#[test]
fn command_without_address_has_loopback_only() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let mut spec = bridged(
            tmp.path(),
            "net8/cmd.local.1",
            None,
            "cat /proc/net/dev; ip -o addr show lo; exit 0",
        );
        spec.entry_kind = EntryKind::Command;
        let pid = knots.start(&spec, &[]);
        assert_eq!(
            knots.wait(pid, Duration::from_secs(30)),
            Some(0),
            "{}",
            log(&spec)
        );
        let text = log(&spec);
        assert!(
            text.contains("127.0.0.1/8"),
            "loopback should be up\n{text}"
        );
        assert!(!text.contains("eth0"), "{text}");
        assert!(bridge_ports().is_empty());
    });
}

#[test]
fn default_route_and_user_namespace() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let mut spec = bridged(
            tmp.path(),
            "net9/cmd.routes.1",
            Some("10.77.0.11"),
            "ip route; cat /proc/net/dev; cat /proc/self/uid_map; exit 0",
        );
        spec.entry_kind = EntryKind::Command;
        // The program joins the namespace before it creates its user namespace.
        let map = IdMap {
            inside: 0,
            outside: 100_000,
            count: 65_536,
        };
        spec.container.uid_map = vec![map];
        spec.container.gid_map = vec![map];
        let pid = knots.start(&spec, &[]);
        let code = knots.wait(pid, Duration::from_secs(30));
        let text = log(&spec);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("default via 10.77.0.1 dev eth0"), "{text}");
        assert!(text.contains("eth0:"), "{text}");
        assert!(
            text.contains("100000"),
            "program should be in its user namespace\n{text}"
        );
    });
}

#[test]
fn ipv6_address_and_gateway() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        // No duplicate address detection, so the bridge's address is usable at once.
        ip(&format!("addr add fd77::1/64 dev {BRIDGE} nodad"));
        let tmp = container_root();
        let mut knots = Knots::default();
        let mut spec = bridged(
            tmp.path(),
            "net10/web.0",
            Some("fd77::2"),
            "ip -6 route >&2; exec nc -ll -p 7000 -e /bin/echo over-ipv6",
        );
        let network = spec.network.as_mut().unwrap();
        network.network = "fd77::/64".to_string();
        network.default_gateway = Some("fd77::1".parse().unwrap());
        knots.start(&spec, &[]);
        assert_serves("[fd77::2]:7000", "over-ipv6");
        let text = log(&spec);
        assert!(text.contains("default via fd77::1 dev eth0"), "{text}");
    });
}

#[test]
fn invalid_settings_fail_the_start() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        let mut spec = bridged(tmp.path(), "net11/web.0", Some("fd77::5"), "exit 0");
        spec.network.as_mut().unwrap().default_gateway = None;
        let pid = knots.start(&spec, &[]);
        let code = knots.wait(pid, Duration::from_secs(30));
        assert_eq!(code, Some(lithos::exec::knot::exit_codes::SETUP_FAILED));
        let text = log(&spec);
        assert!(
            text.contains("address fd77::5 does not fit bridged network 10.77.0.0/24"),
            "{text}"
        );
        let mut spec = bridged(tmp.path(), "net11/web.1", Some("10.77.0.12"), "exit 0");
        spec.network.as_mut().unwrap().bridge = "missing-br".to_string();
        let pid = knots.start(&spec, &[]);
        let code = knots.wait(pid, Duration::from_secs(30));
        assert_eq!(code, Some(lithos::exec::knot::exit_codes::SETUP_FAILED));
        assert!(
            log(&spec).contains("bridge missing-br not found"),
            "{}",
            log(&spec)
        );

        let mut spec = bridged(tmp.path(), "net11/web.2", Some("10.77.0.14"), "exit 0");
        spec.container
            .tcp_ports
            .insert(2, port(7000, 2, "0.0.0.0", false));
        let pid = knots.start(&spec, &[]);
        let code = knots.wait(pid, Duration::from_secs(30));
        assert_eq!(code, Some(lithos::exec::knot::exit_codes::SETUP_FAILED));
        assert!(
            log(&spec).contains("failed to place tcp port 7000 at fd 2"),
            "{}",
            log(&spec)
        );
        assert!(bridge_ports().is_empty(), "{:?}", bridge_ports());
    });
}

#[test]
fn unbridged_program_keeps_no_capability() {
    if !root_or_skip("knots") {
        return;
    }
    let tmp = container_root();
    let mut knots = Knots::default();
    let mut spec = spec(
        tmp.path(),
        "net12/cmd.caps.1",
        "/bin/sh",
        &["-c", "grep CapEff /proc/self/status"],
    );
    spec.entry_kind = EntryKind::Command;
    spec.container.user_id = 1;
    spec.container.group_id = 1;
    let pid = knots.start(&spec, &[]);
    assert_eq!(
        knots.wait(pid, Duration::from_secs(30)),
        Some(0),
        "{}",
        log(&spec)
    );
    let text = log(&spec);
    assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
}

#[test]
fn restart_in_place_keeps_network() {
    if !root_or_skip("network namespaces, veth pairs and knots") {
        return;
    }
    in_test_network(|| {
        let tmp = container_root();
        let mut knots = Knots::default();
        // nc without -ll serves one connection and exits, so every fetch ends one run.
        let mut spec = bridged(
            tmp.path(),
            "net13/once.0",
            Some("10.77.0.13"),
            "exec nc -l -p 7000 -e /bin/echo once",
        );
        spec.container.restart_process_only = true;
        spec.container.restart_timeout = Duration::from_millis(100);
        knots.start(&spec, &[]);
        for run in 0..3 {
            let mut last = None;
            let served = eventually(Duration::from_secs(10), || {
                last = fetch("10.77.0.13:7000");
                last.as_deref().map(str::trim) == Some("once")
            });
            assert!(served, "run {run}: got {last:?}\n{}", log(&spec));
        }
        assert_eq!(bridge_ports(), vec![veth_names("net13/once.0").host]);
    });
}
