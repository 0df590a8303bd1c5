//! A chat between browser tabs and this server, all members of one gossip cluster:
//!
//! ```text
//! cargo xtask chat                                   # builds the wasm package if missing, then this
//! cargo run -p gossip-server --example chat          # when gossip-wasm/pkg is built
//! cargo run -p gossip-server --example chat -- --port 0 --bind 127.0.0.1 --pkg-dir DIR
//! ```
//!
//! It prints `chat: http://ADDR/`; open that page in several tabs. Each tab joins as an admitted
//! member (no cluster key) and chats by broadcast on the topic `chat`. The server prints every
//! line, announces who joins and leaves, and says what you type on its stdin (or what is posted
//! to `POST /api/say`). Ctrl-C (or SIGTERM): the server leaves and exits. How it works:
//! `app.rs`; docs: the README's "Chat between browser tabs and a server".

mod app;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use std::io::BufRead;

use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc};

const USAGE: &str = "usage: chat [--port P (default 8090, 0: any)] [--bind IP (default 127.0.0.1)] [--pkg-dir DIR (default gossip-wasm/pkg)]";

fn parse_args() -> Result<app::Options, String> {
    let mut options = app::Options {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 8090,
        pkg_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../gossip-wasm/pkg")),
        core: timings(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--port" => options.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--bind" => options.bind = value()?.parse().map_err(|e| format!("--bind: {e}"))?,
            "--pkg-dir" => options.pkg_dir = PathBuf::from(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    // Tabs dial the address the server advertises: it must be one they can reach.
    if options.bind.is_unspecified() {
        return Err(format!(
            "--bind {} cannot be advertised: give the address tabs reach",
            options.bind
        ));
    }
    Ok(options)
}

/// Loopback timings, with suspicions that end sooner: tabs are admitted members and may not
/// accuse anyone, so the server's suspicion of a tab that went without a goodbye never gets the
/// second opinions that shorten it, and would run its full length (18 s with `Config::local`).
/// With this a closed tab shows as left within about 8 s; a tab that was only slow refutes.
fn timings() -> gossip_server::gossip_core::Config {
    let mut core = gossip_server::gossip_core::Config::local();
    core.suspicion_max_timeout_mult = 2;
    core
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = parse_args()?;
    let chat = app::Chat::start(options).await?;
    tracing::info!(id = %chat.gossip().id(), "chat server started");
    let mut stdout = tokio::io::stdout();
    // The one line a user (or a test) looks for first.
    let url = format!("chat: http://{}/\n", chat.addr());
    stdout.write_all(url.as_bytes()).await?;
    stdout.flush().await?;
    let printer = tokio::spawn(print_lines(chat.lines()));
    let mut stdin = read_stdin();
    let mut reading = true;
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            line = stdin.recv(), if reading => match line {
                Some(line) if line.trim().is_empty() => {}
                Some(line) => {
                    if let Err(e) = chat.say(&line).await {
                        eprintln!("not said: {e}");
                    }
                }
                // No more input (or none, under a supervisor): chat on with the tabs.
                None => reading = false,
            },
            () = &mut stop => break,
        }
    }
    chat.shutdown().await;
    printer.abort();
    Ok(())
}

/// Lines of stdin, read on a thread of their own: a read blocked in tokio's blocking pool would
/// keep the runtime (and the process) from ending after Ctrl-C until the next line came.
fn read_stdin() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) => {
                    if tx.blocking_send(line).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    eprintln!("stdin: {e}");
                    return;
                }
            }
        }
    });
    rx
}

/// Prints every chat line on stdout as it comes.
async fn print_lines(mut lines: broadcast::Receiver<String>) {
    let mut stdout = tokio::io::stdout();
    loop {
        let line = match lines.recv().await {
            Ok(line) => line,
            Err(broadcast::error::RecvError::Lagged(n)) => format!("({n} lines missed)"),
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let written = stdout.write_all(format!("{line}\n").as_bytes()).await;
        if written.is_err() || stdout.flush().await.is_err() {
            break;
        }
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
