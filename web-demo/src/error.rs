//! What can go wrong in the demo, and how the control endpoints report it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A failure of the demo binary or of one of its control requests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// No native member has this name.
    #[error("no member named {0:?}")]
    UnknownMember(String),
    /// Kill asked for a member that is not running.
    #[error("{0} is not running")]
    NotRunning(String),
    /// A control endpoint other than `kill` or `restart`.
    #[error("no action {0:?} (kill or restart)")]
    UnknownAction(String),
    /// Restart asked for a member that is running.
    #[error("{0} is already running")]
    AlreadyRunning(String),
    /// `--bind` was 0.0.0.0 or `::`: members advertise their listen address, so it must be one
    /// that others can dial.
    #[error(
        "--bind {0} is not an address others can dial: give 127.0.0.1 or one of this host's addresses"
    )]
    UnspecifiedBind(std::net::IpAddr),
    /// A native member could not start.
    #[error("cannot start a member: {0}")]
    Start(#[from] gossip_server::StartError),
    /// The OS random generator failed.
    #[error("OS random generator: {0}")]
    Random(String),
    /// The wasm package is missing or unreadable.
    #[error("the gossip-wasm package in {dir}: {reason} (build it with `cargo xtask wasm`)")]
    Package {
        /// Where it was looked for.
        dir: String,
        /// What is wrong.
        reason: String,
    },
    /// The dashboard's listener failed.
    #[error("dashboard listener on {addr}: {source} (choose another port with --port)")]
    Listen {
        /// Where.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

impl IntoResponse for DemoError {
    fn into_response(self) -> Response {
        let status = match self {
            DemoError::UnknownMember(_) | DemoError::UnknownAction(_) => StatusCode::NOT_FOUND,
            DemoError::NotRunning(_) | DemoError::AlreadyRunning(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = serde_json::json!({ "error": self.to_string() });
        (status, Json(body)).into_response()
    }
}
