//! `cargo xtask <command>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! `test` is the one command that checks everything, on a developer's machine and in CI alike.
//! It installs what it needs on a fresh machine before it runs anything.

mod chat;
mod demo;
mod e2e;
mod wasm;

use std::process::{Command, ExitCode};
use std::time::Instant;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("soak") => soak(&args[1..]),
        Some("setup") => setup(),
        Some("demo") => demo::demo(&args[1..]),
        Some("e2e") => demo::e2e(true),
        Some("chat") => chat::chat(&args[1..]),
        Some("chat-e2e") => chat::e2e(true),
        Some("kv-e2e") => demo::kv_e2e(true),
        Some("wasm-node") => wasm::node(flavour(&args[1..])),
        Some("wasm-test") => wasm::test(),
        Some("wasm-admitted") => wasm::admitted(),
        Some("wasm") => wasm::package_flavour(flavour(&args[1..])).and_then(|p| {
            wasm::check(&p)?;
            wasm::check_types(&p)
        }),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|soak|setup|demo|e2e|chat|chat-e2e|kv-e2e|wasm|wasm-node|wasm-test|wasm-admitted>"
            );
            eprintln!(
                "  test   install what is missing, then run fmt, clippy, the wasm32 build and every test"
            );
            eprintln!(
                "  soak [ROUNDS]  build once, then run every test on a real clock ROUNDS times in a row (default 10); stops at the first failure"
            );
            eprintln!("  setup  only install what is missing (wasm32 target)");
            eprintln!(
                "  demo   build and run the live dashboard (web-demo) on http://127.0.0.1:8080"
            );
            eprintln!("  e2e    run the dashboard's end-to-end test in headless Chromium");
            eprintln!(
                "  chat   run the chat example (browser tabs and a server) on http://127.0.0.1:8090"
            );
            eprintln!("  chat-e2e  run the chat example's end-to-end test in headless Chromium");
            eprintln!(
                "  kv-e2e run the kv example's page end to end in headless Chromium (builds gossip-wasm/pkg-full/)"
            );
            eprintln!(
                "  wasm   build the npm package of gossip-wasm into gossip-wasm/pkg/, check its size and its TypeScript types"
            );
            eprintln!(
                "         --full: the larger flavour with replicated state, key ownership and named endpoints, into gossip-wasm/pkg-full/"
            );
            eprintln!(
                "  wasm-node [--full]  build that package and run its Node.js tests against a native cluster"
            );
            eprintln!(
                "  wasm-test  the gossip-wasm part of `test` alone: clippy, package, types, browser and Node.js tests, size budget"
            );
            eprintln!(
                "  wasm-admitted  only the browser test of least privilege (a tab without the cluster key) against a native cluster"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

/// `--full` among `args`: the package flavour with replicated state, key ownership and named
/// endpoints.
fn flavour(args: &[String]) -> wasm::Flavour {
    if args.iter().any(|a| a == "--full") {
        wasm::Flavour::Full
    } else {
        wasm::Flavour::Default
    }
}

fn setup() -> Result {
    let installed = output("rustup", &["target", "list", "--installed"])?;
    if !installed.lines().any(|l| l.trim() == WASM_TARGET) {
        run("rustup", &["target", "add", WASM_TARGET])?;
    }
    Ok(())
}

fn test() -> Result {
    let started = Instant::now();
    setup()?;
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The core must stay sans-IO and portable: it has to build for the browser.
    run(
        "cargo",
        &[
            "build",
            "--locked",
            "-p",
            "gossip-core",
            "--target",
            WASM_TARGET,
        ],
    )?;
    run("cargo", &["test", "--workspace", "--locked"])?;
    // The browser driver: npm package, size budget, headless Chromium and Node.js tests.
    wasm::test()?;
    // The dashboard end to end in headless Chromium (the package was just built).
    demo::e2e(false)?;
    // The chat example end to end, on the same package and test build.
    chat::e2e(false)?;
    // The kv example's page, on the full package (built by the wasm step).
    demo::kv_e2e(false)?;
    eprintln!("xtask: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// `cargo xtask soak [ROUNDS]`: the part of `test` whose outcome could depend on timing, run
/// `ROUNDS` times in a row, to show that a loaded machine does not make it flaky. That part is
/// every test on a real clock: the native driver's sockets and processes (`gossip-server`,
/// `web-demo`, `xtask`), the browser and Node.js tests against native clusters, and the three
/// end-to-end pages. The rest of `test` (the engine's and the simulator's tests, which read no
/// clock but a virtual one, the lints, the package budgets) cannot be made to fail by load, so
/// one pass of `test` covers it.
fn soak(args: &[String]) -> Result {
    let rounds: u32 = match args.first() {
        None => 10,
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("soak: ROUNDS must be a positive number, not {n:?}"))?,
    };
    let started = Instant::now();
    setup()?;
    let pkg = wasm::package()?;
    let full = wasm::package_flavour(wasm::Flavour::Full)?;
    let harness = wasm::build_harness()?;
    for round in 1..=rounds {
        let began = Instant::now();
        let result = (|| {
            run(
                "cargo",
                &[
                    "test",
                    "--locked",
                    "-p",
                    "gossip-server",
                    "-p",
                    "web-demo",
                    "-p",
                    "xtask",
                ],
            )?;
            wasm::live_tests(&pkg, &full, &harness)?;
            demo::e2e(false)?;
            chat::e2e(false)?;
            demo::kv_e2e(false)
        })();
        match result {
            Ok(()) => eprintln!(
                "xtask: soak round {round} of {rounds} passed in {:.0?}",
                began.elapsed()
            ),
            Err(e) => {
                return Err(format!(
                    "soak round {round} of {rounds} failed after {} passed: {e}",
                    round - 1
                ));
            }
        }
    }
    eprintln!(
        "xtask: {rounds} soak rounds in a row passed in {:.0?}",
        started.elapsed()
    );
    Ok(())
}

fn run(program: &str, args: &[&str]) -> Result {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({})",
            args.join(" "),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
