//! The `gossip-node` binary as a process: start three, join, kill one, see it dead.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gossip-node"));
    cmd.args([
        "--name",
        name,
        "--bind",
        "127.0.0.1:0",
        "--config",
        "local",
        "--json",
    ])
    .env("GOSSIP_KEY", KEY)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(seed) = join {
        cmd.args(["--join", seed]);
    }
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

/// Waits for a line with `event` about `id`.
fn expect(node: &Node, event: &str, id: &str, timeout: Duration) {
    let matches = |v: &serde_json::Value| v["event"] == event && v["id"] == id;
    if node.seen.borrow().iter().any(matches) {
        return;
    }
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match node.lines.recv_timeout(left) {
            Ok(v) if matches(&v) => return,
            Ok(v) => node.seen.borrow_mut().push(v),
            Err(_) => break,
        }
    }
    panic!("no {event} event for {id} within {timeout:?}");
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
    {
        use std::io::Write;
        let stdin = b.child.stdin.as_mut().unwrap();
        writeln!(stdin, "leave").unwrap();
    }
    expect(&a, "left", &b.id, t);
    let status = b.child.wait().unwrap();
    assert!(status.success(), "{status}");
}
