//! The `gossip-node` binary as a process: joining and failure detection, the stdin commands, key
//! handling and what it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const BIN: &str = env!("CARGO_BIN_EXE_gossip-node");

struct Node {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    seen: std::cell::RefCell<Vec<serde_json::Value>>,
    id: String,
    seed: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(name: &str, join: Option<&str>) -> Node {
    spawn_with(name, join, Some(KEY), Stdio::null())
}

fn spawn_with(name: &str, join: Option<&str>, key: Option<&str>, stderr: Stdio) -> Node {
    spawn_args(name, join, key, stderr, &[])
}

fn spawn_args(
    name: &str,
    join: Option<&str>,
    key: Option<&str>,
    stderr: Stdio,
    extra: &[&str],
) -> Node {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--name",
        name,
        "--bind",
        "127.0.0.1:0",
        "--config",
        "local",
        "--json",
    ])
    .env_remove("GOSSIP_KEY")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(stderr);
    if let Some(key) = key {
        cmd.env("GOSSIP_KEY", key);
    }
    if let Some(seed) = join {
        cmd.args(["--join", seed]);
    }
    cmd.args(extra);
    let mut child = cmd.spawn().expect("gossip-node starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let ready = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("a ready line");
    assert_eq!(ready["event"], "ready", "{ready}");
    let seed = ready["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("tcp://"))
        .next()
        .expect("a tcp address")
        .to_owned();
    Node {
        child,
        lines,
        seen: Default::default(),
        id: ready["id"].as_str().unwrap().to_owned(),
        seed,
    }
}

impl Node {
    /// Writes one command line to the node's stdin.
    fn say(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
    }

    /// Waits for (and takes) the first output line that `matches`.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut seen = self.seen.borrow_mut();
        if let Some(at) = seen.iter().position(&matches) {
            return seen.remove(at);
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) if matches(&v) => return v,
                Ok(v) => seen.push(v),
                Err(_) => break,
            }
        }
        panic!("no {what} within {timeout:?}; saw {seen:#?}");
    }
}

/// Asks `node` for its members until `id` is listed alive (the `members` command, end to end).
fn wait_alive(node: &mut Node, id: &str) {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        node.say("members");
        let listed = node.wait("members", T, |v| v["event"] == "member");
        let mut found = listed["id"] == id && listed["state"] == "alive";
        // The rest of this listing: lines that arrive before the next poll.
        while !found && let Ok(v) = node.lines.recv_timeout(Duration::from_millis(200)) {
            if v["event"] == "member" {
                found = v["id"] == id && v["state"] == "alive";
            } else {
                node.seen.borrow_mut().push(v);
            }
        }
        if found {
            return;
        }
    }
    panic!("{id} not listed alive within {T:?}");
}

/// Waits for a line with `event` about `id`.
/// The child's stderr, line by line, read on a thread of its own.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn expect(node: &Node, event: &str, id: &str, timeout: Duration) {
    node.wait(&format!("{event} event for {id}"), timeout, |v| {
        v["event"] == event && v["id"] == id
    });
}

#[test]
fn three_processes_join_and_see_a_killed_one_dead() {
    let a = spawn("cli-a", None);
    let b = spawn("cli-b", Some(&a.seed));
    let mut c = spawn("cli-c", Some(&a.seed));
    let t = Duration::from_secs(30);
    for (n, others) in [(&a, [&b, &c]), (&b, [&a, &c]), (&c, [&a, &b])] {
        for o in others {
            expect(n, "joined", &o.id, t);
        }
    }
    c.child.kill().unwrap();
    let _ = c.child.wait();
    expect(&a, "dead", &c.id, Duration::from_secs(60));
    expect(&b, "dead", &c.id, Duration::from_secs(60));
    // `leave` on stdin: a clean exit, seen as left by the others.
    let mut b = b;
    b.say("leave");
    expect(&a, "left", &b.id, t);
    let status = b.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

const T: Duration = Duration::from_secs(30);

#[test]
fn members_are_addressed_by_name_or_id_prefix_and_requests_answered_by_number() {
    let mut a = spawn("cli-a", None);
    let mut b = spawn("cli-b", Some(&a.seed));
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    wait_alive(&mut a, &b_id);
    wait_alive(&mut b, &a_id);

    // `members` prints the short id, which `send` accepts as a prefix.
    a.say("members");
    let listed = a.wait("b in members", T, |v| {
        v["event"] == "member" && v["id"] == b.id
    });
    let short = listed["short"].as_str().unwrap().to_owned();
    assert!(b.id.starts_with(&short), "{listed}");

    a.say("send cli-b greet hello by name");
    let ack = a.wait("send ack", T, |v| {
        v["event"] == "sent" && v["command"] == "send"
    });
    assert_eq!(ack["to"], b.id.as_str(), "{ack}");
    let got = b.wait("direct by name", T, |v| v["event"] == "direct");
    assert_eq!(
        (&got["from"], &got["topic"], &got["data"], &got["encoding"]),
        (
            &a.id.as_str().into(),
            &"greet".into(),
            &"hello by name".into(),
            &"utf8".into()
        ),
        "{got}"
    );
    a.say(&format!("send {short} greet hello by prefix"));
    let got = b.wait("direct by prefix", T, |v| v["event"] == "direct");
    assert_eq!(got["data"], "hello by prefix", "{got}");

    a.say("request cli-b ask ping");
    a.wait("request ack", T, |v| {
        v["event"] == "sent" && v["command"] == "request"
    });
    let req = b.wait("request", T, |v| v["event"] == "request");
    assert_eq!(req["data"], "ping", "{req}");
    let number = req["request"].as_u64().expect("a request number");
    b.say(&format!("respond {number} pong"));
    b.wait("respond ack", T, |v| {
        v["event"] == "sent" && v["command"] == "respond"
    });
    let answer = a.wait("response", T, |v| v["event"] == "response");
    assert_eq!(
        (&answer["from"], &answer["data"]),
        (&b.id.as_str().into(), &"pong".into())
    );
    // A request is answered once.
    b.say(&format!("respond {number} again"));
    let err = b.wait("error", T, |v| v["event"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("no open request"),
        "{err}"
    );

    a.say("send nobody greet hello");
    let err = a.wait("error", T, |v| v["event"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("\"nobody\""),
        "{err}"
    );

    // Both members name the same owners of a key, and both of them for two owners.
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["owners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    a.say("owners 2 orders/1");
    let on_a = a.wait("owners", T, |v| v["event"] == "owners");
    b.say("owners 2 orders/1");
    let on_b = b.wait("owners", T, |v| v["event"] == "owners");
    assert_eq!(ids(&on_a), ids(&on_b), "{on_a} {on_b}");
    let mut both = ids(&on_a);
    both.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(both, want, "{on_a}");
    b.say("owner orders/1");
    let one = b.wait("owner", T, |v| v["event"] == "owners");
    assert_eq!(ids(&one), ids(&on_a)[..1], "{one}");
    a.say("owners x orders/1");
    let err = a.wait("usage error", T, |v| v["event"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("owners N KEY"),
        "{err}"
    );
}

#[test]
fn keygen_prints_a_key_that_nodes_start_with() {
    let out = Command::new(BIN).arg("keygen").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(key.len(), 64, "{key}");
    assert!(
        key.parse::<gossip_server::gossip_core::ClusterKey>()
            .is_ok()
    );
    let again = Command::new(BIN).arg("keygen").output().unwrap();
    assert_ne!(String::from_utf8(again.stdout).unwrap().trim(), key);

    let mut a = spawn_with("cli-key-a", None, Some(&key), Stdio::null());
    let b = spawn_with("cli-key-b", Some(&a.seed), Some(&key), Stdio::null());
    wait_alive(&mut a, &b.id);
}

/// Runs the binary to its exit with no stdin; returns its stderr.
fn fails_with(args: &[&str], env_key: Option<&str>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("GOSSIP_KEY").stdin(Stdio::null());
    if let Some(k) = env_key {
        cmd.env("GOSSIP_KEY", k);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_bad_key_names_where_it_came_from_and_the_expected_format() {
    let bind = ["--bind", "127.0.0.1:0"];
    let format = "64 hex digits or base64 of 32 bytes";

    let env = fails_with(&bind, Some("not-a-key"));
    assert!(env.contains("GOSSIP_KEY") && env.contains(format), "{env}");
    assert!(!env.contains("--key"), "{env}");

    let flag = fails_with(&[&bind[..], &["--key", "abcd"]].concat(), None);
    assert!(flag.contains("--key:") && flag.contains(format), "{flag}");

    let dir = std::env::temp_dir().join(format!("gossip-cli-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.key");
    std::fs::write(&bad, "short\n").unwrap();
    let bad = bad.to_str().unwrap();
    let file = fails_with(&[&bind[..], &["--key-file", bad]].concat(), None);
    assert!(file.contains(bad) && file.contains(format), "{file}");

    let missing = dir.join("missing.key");
    let missing = missing.to_str().unwrap();
    let file = fails_with(&[&bind[..], &["--key-file", missing]].concat(), None);
    assert!(file.contains(missing), "{file}");
    std::fs::remove_dir_all(&dir).unwrap();

    // Nothing prints the error twice or as a Debug value.
    assert_eq!(env.matches("GOSSIP_KEY").count(), 1, "{env}");
    assert!(!env.contains("Parse"), "{env}");
}

#[test]
fn without_a_key_it_warns_once_and_without_colour_off_a_terminal() {
    let mut a = spawn_with("cli-plain", None, None, Stdio::piped());
    a.say("leave");
    a.wait("stopped", T, |v| v["event"] == "stopped");
    let mut stderr = String::new();
    std::io::Read::read_to_string(a.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(stderr.matches("plain text").count(), 1, "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}

#[test]
fn help_lists_the_stdin_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for line in [
        "members",
        "send MEMBER TOPIC TEXT",
        "respond N TEXT",
        "keygen",
    ] {
        assert!(help.contains(line), "{line} missing from {help}");
    }
    let mut a = spawn("cli-help", None);
    a.say("help");
    let v = a.wait("help", T, |v| v["event"] == "help");
    assert!(
        v["text"].as_str().unwrap().contains("respond N TEXT"),
        "{v}"
    );
}

#[test]
fn a_join_with_another_cluster_key_says_so() {
    let seed = spawn("cli-seed", None);
    let other = "ff".repeat(32);
    let mut node = spawn_with("cli-lost", Some(&seed.seed), Some(&other), Stdio::piped());
    let rx = stderr_lines(&mut node.child);
    // `joined` gives up after 10 s; the warning follows at once.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut said = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("cluster keys differ") => return,
            Ok(line) => said.push(line),
            Err(_) => break,
        }
    }
    panic!(
        "no warning naming the cluster key; stderr was:\n{}",
        said.join("\n")
    );
}

#[test]
fn a_member_restarted_with_its_identity_file_comes_back_as_itself() {
    let dir = std::env::temp_dir().join(format!("gossip-cli-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("b.identity");
    let id_args = ["--identity", file.to_str().unwrap()];
    let mut a = spawn("cli-id-a", None);
    let b = spawn_args(
        "cli-id-b",
        Some(&a.seed),
        Some(KEY),
        Stdio::null(),
        &id_args,
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "created private");
    }
    let first = b.id.clone();
    wait_alive(&mut a, &first);
    drop(b); // SIGKILL: no leave, the others must find out themselves
    expect(&a, "dead", &first, Duration::from_secs(60));

    let b = spawn_args(
        "cli-id-b",
        Some(&a.seed),
        Some(KEY),
        Stdio::null(),
        &id_args,
    );
    assert_eq!(b.id, first, "the restarted member has the id in its file");
    wait_alive(&mut a, &first);
    // Without the file, a start is a new member.
    let c = spawn_args("cli-id-c", Some(&a.seed), Some(KEY), Stdio::null(), &[]);
    assert_ne!(c.id, first);

    // A file others may read is refused, not used.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        drop(b);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let said = fails_with(
            &["--bind", "127.0.0.1:0", id_args[0], id_args[1]],
            Some(KEY),
        );
        assert!(
            said.contains(id_args[1]) && said.contains("chmod 600"),
            "{said}"
        );
    }
    let junk = dir.join("junk");
    std::fs::write(&junk, "not an identity\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let said = fails_with(
        &[
            "--bind",
            "127.0.0.1:0",
            "--identity",
            junk.to_str().unwrap(),
        ],
        Some(KEY),
    );
    assert!(said.contains("not an identity"), "{said}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Waits until `node` printed the metadata `step` of member `id`.
fn sees_step(node: &Node, id: &str, step: &str) {
    node.wait(&format!("step {step} of {id}"), T, |v| {
        v["event"] == "metadata" && v["id"] == id && v["metadata"]["step"] == step
    });
}

#[test]
fn a_key_rotation_by_sighup_and_stdin_loses_no_member() {
    let dir = std::env::temp_dir().join(format!("gossip-cli-rotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let new = "99".repeat(32);
    let files = [dir.join("a.keys"), dir.join("b.keys")];
    for f in &files {
        std::fs::write(f, format!("{KEY}\n")).unwrap();
    }
    let file_args = |i: usize| {
        [
            "--key-file".to_owned(),
            files[i].to_str().unwrap().to_owned(),
        ]
    };
    let fa = file_args(0);
    let fa: Vec<&str> = fa.iter().map(String::as_str).collect();
    let a = spawn_args("rot-a", None, None, Stdio::null(), &fa);
    let fb = file_args(1);
    let fb: Vec<&str> = fb.iter().map(String::as_str).collect();
    let b = spawn_args("rot-b", Some(&a.seed), None, Stdio::null(), &fb);
    let mut c = spawn("rot-c", Some(&a.seed));
    for (n, others) in [(&a, [&b, &c]), (&b, [&a, &c]), (&c, [&a, &b])] {
        for o in others {
            expect(n, "joined", &o.id, T);
        }
    }
    let hup = |n: &Node| {
        let ok = Command::new("kill")
            .args(["-HUP", &n.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let v = n.wait("key reload", T, |v| v["command"] == "reload");
        v["keys"].as_u64().unwrap_or_else(|| panic!("{v}"))
    };
    // Each step on every member (files and SIGHUP for a and b, stdin for c), then news from
    // each member reaches the others before the next step.
    let steps: [(&str, String, &str); 3] = [
        ("added", format!("{KEY}\n{new}\n"), "add"),
        ("primary", format!("# rotating\n{new}\n{KEY}\n"), "use"),
        ("removed", format!("{new}\n"), "remove"),
    ];
    let mut nodes = [a, b];
    for (step, body, verb) in steps {
        for (n, f) in nodes.iter().zip(&files) {
            std::fs::write(f, &body).unwrap();
            let want = if step == "removed" { 1 } else { 2 };
            assert_eq!(hup(n), want, "{step}");
        }
        let key = if verb == "remove" { KEY } else { &new };
        c.say(&format!("key {verb} {key}"));
        c.wait("key command", T, |v| {
            v["event"] == "keys" && v["command"] == verb
        });
        for n in nodes.iter_mut().chain([&mut c]) {
            n.say(&format!("meta step {step}"));
        }
        let all = [&nodes[0], &nodes[1], &c];
        for n in all {
            for o in all.iter().filter(|o| o.id != n.id) {
                sees_step(n, &o.id, step);
            }
        }
    }
    for n in nodes.iter().chain([&c]) {
        while let Ok(v) = n.lines.try_recv() {
            n.seen.borrow_mut().push(v);
        }
        let lost: Vec<_> = n
            .seen
            .borrow()
            .iter()
            .filter(|v| {
                ["suspect", "dead", "left", "error"].contains(&v["event"].as_str().unwrap_or(""))
            })
            .cloned()
            .collect();
        assert!(lost.is_empty(), "{} saw {lost:?}", n.id);
    }
    // The old key alone is refused by stdin too: the primary cannot be removed.
    c.say(&format!("key remove {new}"));
    let e = c.wait("error", T, |v| v["event"] == "error");
    assert!(e["error"].as_str().unwrap().contains("primary"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_join_outside_the_seeds_app_versions_says_so_and_bad_ranges_are_refused() {
    let seed = spawn_args(
        "cli-v-seed",
        None,
        Some(KEY),
        Stdio::null(),
        &["--app-versions", "2-3"],
    );
    let mut node = spawn_args(
        "cli-v-new",
        Some(&seed.seed),
        Some(KEY),
        Stdio::piped(),
        &["--app-versions", "5"],
    );
    let rx = stderr_lines(&mut node.child);
    // `joined` gives up after 10 s; the warning follows at once.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut said = Vec::new();
    let mut found = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("no common version") && line.contains("app 2-3") => {
                found = true;
                break;
            }
            Ok(line) => said.push(line),
            Err(_) => break,
        }
    }
    assert!(
        found,
        "no warning naming the versions; stderr was:\n{}",
        said.join("\n")
    );
    for bad in ["3-2", "x", "70000", "1-"] {
        let e = fails_with(&["--bind", "127.0.0.1:0", "--app-versions", bad], Some(KEY));
        assert!(e.contains("--app-versions"), "{bad}: {e}");
    }
}

/// Polls `resolve NAME` on `node` until its holders are exactly `ids`.
fn wait_holders(node: &mut Node, name: &str, ids: &[&str]) {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        node.say(&format!("resolve {name}"));
        let got = node.wait("resolved", T, |v| v["event"] == "resolved");
        let holders: Vec<&str> = got["holders"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["id"].as_str())
            .collect();
        if holders == ids {
            return;
        }
        // Paces the polls on the node's output rather than a sleep: anything it prints is kept.
        if let Ok(v) = node.lines.recv_timeout(Duration::from_millis(100)) {
            node.seen.borrow_mut().push(v);
        }
    }
    panic!("{name} not held by {ids:?} within {T:?}");
}

#[test]
fn an_endpoint_flag_registers_a_name_the_other_node_resolves_and_unregister_removes_it() {
    let mut a = spawn("cli-ep-a", None);
    let seed = a.seed.clone();
    let mut b = spawn_args(
        "cli-ep-b",
        Some(&seed),
        Some(KEY),
        Stdio::null(),
        &["--endpoint", "orders"],
    );
    let b_id = b.id.clone();
    wait_alive(&mut a, &b_id);
    wait_holders(&mut a, "orders", &[&b_id]);
    a.say("endpoints");
    let listed = a.wait("endpoints", T, |v| v["event"] == "endpoints");
    assert_eq!(listed["endpoints"]["orders"], 1, "{listed}");

    b.say("unregister orders");
    let ack = b.wait("unregister ack", T, |v| {
        v["event"] == "ok" && v["command"] == "unregister"
    });
    assert_eq!(ack["changed"], true, "{ack}");
    wait_holders(&mut a, "orders", &[]);

    a.say("register bad name");
    let err = a.wait("error", T, |v| v["event"] == "error");
    assert!(err["error"].as_str().unwrap().contains("' '"), "{err}");
}
