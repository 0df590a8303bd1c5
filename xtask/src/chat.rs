//! `cargo xtask chat` runs the chat example (`gossip-server/examples/chat`); `cargo xtask
//! chat-e2e` (part of `cargo xtask test`) drives it in headless Chromium with two tabs.
//!
//! Both build the `gossip-wasm` npm package the page loads when it is missing (`cargo xtask
//! wasm` rebuilds it). The end-to-end test also installs, only when missing, Chromium (apt) and
//! its Node dependencies (npm, pinned by `examples/chat/e2e/package-lock.json`).

use std::process::Command;

use crate::Result;
use crate::demo::{build_wasm_package, root};

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
    crate::e2e::E2e {
        dir: "gossip-server/examples/chat/e2e",
        script: "chat.mjs",
        env: "CHAT_CMD",
        bin: "debug/examples/chat",
        what: "the chat",
    }
    .run(|| {
        if build_package {
            ensure_package()?;
        }
        Ok(())
    })
}
