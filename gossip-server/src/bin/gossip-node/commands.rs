//! The commands `gossip-node` reads on stdin, one per line.

use std::collections::VecDeque;
use std::time::Duration;

use gossip_core::{NodeId, RequestId};
use gossip_server::Gossip;
use serde_json::json;

use crate::Printer;
use crate::members::{Candidate, resolve};
use crate::payload::{clean, show};

/// The list `help` and `--help` print.
pub const HELP: &str = "\
Commands, one per line on stdin:
  members                    list the members: state, name, id, addresses
  meta KEY VALUE             set a metadata entry of this node
  unmeta KEY                 remove a metadata entry of this node
  broadcast TOPIC TEXT       send TEXT to every member
  send MEMBER TOPIC TEXT     send TEXT to one member
  request MEMBER TOPIC TEXT  ask one member and print its answer (5 s timeout)
  respond N TEXT             answer request #N (printed when it arrived)
  owner KEY                  print the member that owns KEY (rendezvous hashing over the
                             live members, the same answer on every member with this view)
  owners N KEY               print the N owners of KEY, best first
  register NAME              hold endpoint NAME (requests by name arrive as requests)
  unregister NAME            stop holding endpoint NAME
  resolve NAME               list the live holders of endpoint NAME
  endpoints                  list every endpoint name and its number of holders
  keys                       print how many cluster keys this node holds
  key add|use|remove KEY     accept a cluster key / encrypt with it / stop accepting it
                             (a rotation: add everywhere, then use everywhere, then remove
                             the old key everywhere; SIGHUP re-reads --key-file instead)
  help                       print this list
  leave                      leave the cluster and exit (as Ctrl-C or SIGTERM do)
MEMBER is a name, an id or a unique prefix of one, as `members` prints them.";

/// How long `request` waits for the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests received and not answered yet, numbered for `respond N`.
///
/// Bounded: a peer can send requests faster than anyone types, so the oldest are forgotten.
#[derive(Debug, Default)]
pub struct Inbox {
    next: u64,
    open: VecDeque<Open>,
}

/// A request waiting for `respond`: its number, requester (id and name) and correlation id.
type Open = (u64, NodeId, String, RequestId);

impl Inbox {
    const MAX_OPEN: usize = 1024;

    /// Files a request; returns its number.
    pub fn add(&mut self, from: NodeId, name: String, id: RequestId) -> u64 {
        self.next = self.next.wrapping_add(1);
        if self.open.len() >= Self::MAX_OPEN {
            self.open.pop_front();
        }
        self.open.push_back((self.next, from, name, id));
        self.next
    }

    fn take(&mut self, n: u64) -> Option<(NodeId, String, RequestId)> {
        let at = self.open.iter().position(|(k, ..)| *k == n)?;
        self.open
            .remove(at)
            .map(|(_, from, name, id)| (from, name, id))
    }
}

/// What the loop does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Leave,
}

/// Runs one stdin command.
pub async fn run(gossip: &Gossip, out: Printer, inbox: &mut Inbox, line: &str) -> Next {
    let line = line.trim();
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    let result = match verb {
        "" => Ok(()),
        "leave" | "quit" | "exit" => return Next::Leave,
        "help" | "?" => {
            out.line(json!({"event": "help", "text": HELP}), HELP.into());
            Ok(())
        }
        "members" => members(gossip, out).await,
        "register" | "unregister" | "resolve" | "endpoints" => {
            endpoint(gossip, out, verb, rest).await
        }
        "key" | "keys" => crate::key::command(gossip, out, verb, rest).await,
        "owner" if !rest.is_empty() => owners(gossip, out, 1, rest).await,
        "owners" => match split2(rest).map(|(n, key)| (n.parse::<usize>(), key)) {
            Some((Ok(n), key)) if n > 0 && !key.is_empty() => owners(gossip, out, n, key).await,
            _ => Err("usage: owners N KEY (N at least 1)".into()),
        },
        "owner" => Err("usage: owner KEY".into()),
        "meta" => match split2(rest) {
            Some((k, v)) => gossip
                .set_metadata(k, v)
                .await
                .map(|()| {
                    out.line(
                        json!({"event": "ok", "command": "meta", "key": k, "value": v}),
                        format!("ok: metadata {k}={v}"),
                    )
                })
                .map_err(|e| e.to_string()),
            None => Err("usage: meta KEY VALUE".into()),
        },
        "unmeta" if !rest.is_empty() => gossip
            .remove_metadata(rest)
            .await
            .map(|()| {
                out.line(
                    json!({"event": "ok", "command": "unmeta", "key": rest}),
                    format!("ok: metadata {rest} removed"),
                )
            })
            .map_err(|e| e.to_string()),
        "unmeta" => Err("usage: unmeta KEY".into()),
        "broadcast" => match split2(rest) {
            Some((topic, text)) => gossip
                .broadcast(topic, text)
                .await
                .map(|()| {
                    out.line(
                        json!({"event": "sent", "command": "broadcast", "topic": topic}),
                        format!("ok: broadcast [{topic}] sent"),
                    )
                })
                .map_err(|e| e.to_string()),
            None => Err("usage: broadcast TOPIC TEXT".into()),
        },
        "send" | "request" => match split3(rest) {
            Some((who, topic, text)) => match find(gossip, who).await {
                Ok((to, name)) if verb == "send" => gossip
                    .send(to, topic, text)
                    .await
                    .map(|()| {
                        out.line(
                            json!({"event": "sent", "command": "send", "to": to.to_string(), "name": name, "topic": topic}),
                            format!("ok: sent to {} ({}) [{topic}]", clean(&name), to.short()),
                        )
                    })
                    .map_err(|e| e.to_string()),
                Ok((to, name)) => {
                    request(gossip, out, to, name, topic.into(), text.into());
                    Ok(())
                }
                Err(e) => Err(e),
            },
            None => Err(format!("usage: {verb} MEMBER TOPIC TEXT")),
        },
        "respond" => match split2(rest) {
            Some((n, text)) => match n.trim_start_matches('#').parse::<u64>() {
                Ok(n) => match inbox.take(n) {
                    Some((from, name, id)) => gossip
                        .respond(from, id, text)
                        .await
                        .map(|()| {
                            out.line(
                                json!({"event": "sent", "command": "respond", "request": n, "to": from.to_string()}),
                                format!("ok: answered request #{n} from {} ({})", clean(&name), from.short()),
                            )
                        })
                        .map_err(|e| e.to_string()),
                    None => Err(format!(
                        "no open request #{n} (each is answered once; see the request lines)"
                    )),
                },
                Err(_) => Err(format!("{n:?} is not a request number; usage: respond N TEXT")),
            },
            None => Err("usage: respond N TEXT".into()),
        },
        other => Err(format!(
            "unknown command {:?}; `help` lists the commands",
            clean(other)
        )),
    };
    if let Err(e) = result {
        out.line(json!({"event": "error", "error": e}), format!("error: {e}"));
    }
    Next::Continue
}

fn split2(s: &str) -> Option<(&str, &str)> {
    s.split_once(' ').map(|(a, b)| (a, b.trim()))
}

fn split3(s: &str) -> Option<(&str, &str, &str)> {
    let (a, r) = split2(s)?;
    let (b, c) = split2(r)?;
    Some((a, b, c))
}

/// The member a command names, and its name.
async fn find(gossip: &Gossip, word: &str) -> Result<(NodeId, String), String> {
    let status = gossip.status().await.map_err(|e| e.to_string())?;
    let candidates: Vec<Candidate<'_>> = status.members.iter().map(Candidate::from).collect();
    let id = resolve(&candidates, word)?;
    let name = status
        .members
        .iter()
        .find(|m| m.id == id.to_string())
        .map(|m| m.name.clone())
        .unwrap_or_default();
    Ok((id, name))
}

async fn members(gossip: &Gossip, out: Printer) -> Result<(), String> {
    let status = gossip.status().await.map_err(|e| e.to_string())?;
    for m in &status.members {
        let me = m.id == status.id;
        out.line(
            json!({"event": "member", "id": m.id, "short": m.short, "name": m.name, "state": m.state, "self": me, "addrs": m.addrs, "metadata": m.metadata}),
            format!(
                "{:>8} {:<16} {} {}{}",
                m.state,
                clean(&m.name),
                m.short,
                m.addrs.join(" "),
                if me { " (this node)" } else { "" }
            ),
        );
    }
    Ok(())
}

/// Prints the `n` owners of `key` (its UTF-8 bytes), best first, with their names.
async fn owners(gossip: &Gossip, out: Printer, n: usize, key: &str) -> Result<(), String> {
    let owners = gossip.owners(key, n).await.map_err(|e| e.to_string())?;
    let status = gossip.status().await.map_err(|e| e.to_string())?;
    let named: Vec<(String, String, String)> = owners
        .iter()
        .map(|id| {
            let full = id.to_string();
            let name = status
                .members
                .iter()
                .find(|m| m.id == full)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            (full, id.short(), name)
        })
        .collect();
    let list: Vec<serde_json::Value> = named
        .iter()
        .map(|(id, short, name)| json!({"id": id, "short": short, "name": name}))
        .collect();
    let text: Vec<String> = named
        .iter()
        .map(|(_, short, name)| format!("{} ({short})", clean(name)))
        .collect();
    out.line(
        json!({"event": "owners", "key": key, "owners": list}),
        format!("owners of {}: {}", clean(key), text.join(", ")),
    );
    Ok(())
}

/// Sends a request and prints the answer when it comes, without holding up other commands.
fn request(gossip: &Gossip, out: Printer, to: NodeId, name: String, topic: String, text: String) {
    out.line(
        json!({"event": "sent", "command": "request", "to": to.to_string(), "name": name, "topic": topic}),
        format!(
            "ok: request sent to {} ({}) [{topic}], waiting up to {} s",
            clean(&name),
            to.short(),
            REQUEST_TIMEOUT.as_secs()
        ),
    );
    let gossip = gossip.clone();
    tokio::spawn(async move {
        match gossip.request(to, topic, text, REQUEST_TIMEOUT).await {
            Ok(data) => {
                let (encoding, shown) = show(&data);
                out.line(
                    json!({"event": "response", "from": to.to_string(), "name": name, "data": shown, "encoding": encoding.as_str()}),
                    format!("response from {} ({}): {}", clean(&name), to.short(), clean(&shown)),
                );
            }
            Err(e) => out.line(
                json!({"event": "error", "error": format!("request to {name}: {e}")}),
                format!("error: request to {} ({}): {e}", clean(&name), to.short()),
            ),
        }
    });
}

/// The endpoint commands: register, unregister, resolve, endpoints.
async fn endpoint(gossip: &Gossip, out: Printer, verb: &str, name: &str) -> Result<(), String> {
    if name.is_empty() && verb != "endpoints" {
        return Err(format!("usage: {verb} NAME"));
    }
    match verb {
        "register" | "unregister" => {
            let changed = if verb == "register" {
                gossip.register_endpoint(name).await
            } else {
                gossip.unregister_endpoint(name).await
            }
            .map_err(|e| e.to_string())?;
            out.line(
                json!({"event": "ok", "command": verb, "endpoint": name, "changed": changed}),
                format!(
                    "ok: {verb} {name}{}",
                    if changed { "" } else { " (nothing to do)" }
                ),
            );
        }
        "resolve" => {
            let holders = gossip.resolve(name).await.map_err(|e| e.to_string())?;
            let list: Vec<_> = holders
                .iter()
                .map(|h| json!({"id": h.id.to_string(), "state": h.state.as_str(), "rtt_micros": h.rtt_micros}))
                .collect();
            let text = holders
                .iter()
                .map(|h| format!("{} ({})", h.id.short(), h.state.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            out.line(
                json!({"event": "resolved", "endpoint": name, "holders": list}),
                format!("{name}: {} holder(s) {text}", holders.len()),
            );
        }
        _ => {
            let names = gossip.endpoints().await.map_err(|e| e.to_string())?;
            let text = names
                .iter()
                .map(|(n, c)| format!("{n} ({c})"))
                .collect::<Vec<_>>()
                .join(", ");
            out.line(
                json!({"event": "endpoints", "endpoints": names}),
                format!("endpoints: {text}"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_numbers_requests_answers_each_once_and_stays_bounded() {
        let mut inbox = Inbox::default();
        let peer = NodeId::from_bytes([7; 32]);
        let first = inbox.add(peer, "p".into(), 42);
        assert_eq!(inbox.take(first), Some((peer, "p".into(), 42)));
        assert_eq!(inbox.take(first), None);
        for i in 0..(Inbox::MAX_OPEN as u64 + 10) {
            inbox.add(peer, "p".into(), i);
        }
        assert_eq!(inbox.open.len(), Inbox::MAX_OPEN);
        // The oldest ten were forgotten; the newest is still there.
        assert_eq!(inbox.take(first + 1), None);
        assert!(inbox.take(inbox.next).is_some());
    }

    #[test]
    fn help_names_every_command() {
        for verb in [
            "members",
            "meta",
            "unmeta",
            "broadcast",
            "send",
            "request",
            "respond",
            "help",
            "leave",
        ] {
            assert!(HELP.contains(&format!("\n  {verb} ")), "{verb}");
        }
    }
}
