//! `cargo xtask chat` runs the chat example (`gossip-server/examples/chat`); `cargo xtask
//! chat-e2e` (part of `cargo xtask test`) drives it in headless Chromium with two tabs.
//!
//! Both build the `gossip-wasm` npm package the page loads when it is missing (`cargo xtask
//! wasm` rebuilds it). The end-to-end test also installs, only when missing, Chromium (apt) and
//! its Node dependencies (npm, pinned by `examples/chat/e2e/package-lock.json`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;
use crate::demo::{build_wasm_package, ensure_chromium, ensure_node, root, run_in, target_dir};

/// The example's folder.
fn example_dir() -> PathBuf {
    root().join("gossip-server/examples/chat")
}

/// Builds the wasm package unless `gossip-wasm/pkg` already holds one.
fn ensure_package() -> Result {
    let pkg = root().join("gossip-wasm/pkg");
    let built = ["package.json", "index.js", "web/gossip_wasm_bg.wasm"]
        .iter()
        .all(|f| pkg.join(f).exists());
    if built {
        eprintln!(
            "xtask: using the wasm package in {} (`cargo xtask wasm` rebuilds it)",
            pkg.display()
        );
        Ok(())
    } else {
        build_wasm_package()
    }
}

/// Builds what is missing, then becomes the chat server: Ctrl-C reaches it directly and it
/// leaves the cluster before exiting. `args` go to the example (`--port P`, `--bind IP`,
/// `--pkg-dir DIR`).
pub fn chat(args: &[String]) -> Result {
    ensure_package()?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args([
            "run",
            "--locked",
            "-p",
            "gossip-server",
            "--example",
            "chat",
            "--",
        ])
        .args(args);
    eprintln!(
        "xtask: $ cargo run --locked -p gossip-server --example chat -- {}",
        args.join(" ")
    );
    eprintln!(
        "xtask: the chat's URL follows once the server is up; type a line to say it, Ctrl-C stops it"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replace this process, so no parent is left to race the server's graceful stop.
        let err = cmd.exec();
        Err(format!("cannot start cargo: {err}"))
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .map_err(|e| format!("cannot start cargo: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the chat example failed ({status})"))
        }
    }
}

/// Installs what is missing, builds, and runs `examples/chat/e2e/chat.mjs`, which starts the
/// example on a free port, drives two tabs in headless Chromium and stops the server (also on
/// failure). `build_package`: build the wasm package when it is missing (`cargo xtask test` has
/// just built it).
pub fn e2e(build_package: bool) -> Result {
    ensure_chromium()?;
    ensure_node()?;
    let dir = example_dir().join("e2e");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        run_in(&dir, "npm", &["ci", "--no-audit", "--no-fund"])?;
    }
    if build_package {
        ensure_package()?;
    }
    // The workspace test build compiles every example: after `cargo test --workspace` this is a
    // no-op, where `cargo build --example chat` would unify features differently and compile
    // gossip-server's dependencies a second time.
    run_in(
        &root(),
        "cargo",
        &["test", "--workspace", "--locked", "--no-run"],
    )?;
    // The test starts the binary just built (not `cargo run`, which could rebuild meanwhile).
    let bin = example_bin()?;
    let bin = bin
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    eprintln!("xtask: $ (cd {}) node chat.mjs", dir.display());
    let status = Command::new("node")
        .arg("chat.mjs")
        .current_dir(&dir)
        .env("CHAT_CMD", format!("[\"{bin}\"]"))
        .status()
        .map_err(|e| format!("cannot start node: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the chat's end-to-end test failed ({status})"))
    }
}

/// The example binary the workspace test build made.
fn example_bin() -> Result<PathBuf> {
    let bin = target_dir()?
        .join("debug/examples")
        .join(format!("chat{}", std::env::consts::EXE_SUFFIX));
    if Path::new(&bin).exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing after `cargo test --workspace --no-run`",
            bin.display()
        ))
    }
}
