//! One QMP connection to one QEMU: commands with replies matched by id, and a stream of events.
//!
//! A background task reads QEMU's lines (each at most [`MAX_LINE`] bytes), hands replies to the
//! command that waits for them and broadcasts events to subscribers. When QEMU closes the socket
//! (it exited) every waiting command fails with [`QmpError::Disconnected`] and
//! [`QmpClient::closed`] completes. Dropping the client closes the connection, so a later
//! client (a restarted agent) can connect: QEMU serves one QMP client at a time.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

use super::qmp::{self, Command, Greeting, MAX_LINE, QmpCapabilities, QmpEvent, QmpMessage};

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("Cannot connect to the QMP socket {path}: {source}")]
    Connect { path: String, source: io::Error },
    #[error("QEMU closed the QMP connection")]
    Disconnected,
    #[error("QMP command {command} got no reply within {after:?}")]
    Timeout {
        command: &'static str,
        after: Duration,
    },
    #[error("QMP command {command} failed ({class}): {desc}")]
    Command {
        command: &'static str,
        class: String,
        desc: String,
    },
    #[error("QEMU sent something that is not QMP: {0}")]
    Protocol(String),
    #[error("Unexpected reply to QMP command {command}: {message}")]
    Reply {
        command: &'static str,
        message: String,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
}

type ReplySender = oneshot::Sender<Result<Value, QmpError>>;

/// Commands waiting for their reply, by id. `None` once the connection is gone.
type Pending = Arc<Mutex<Option<HashMap<u64, ReplySender>>>>;

/// A connected, capabilities-negotiated QMP client.
pub struct QmpClient {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Receiver<bool>,
    next_id: AtomicU64,
    timeout: Duration,
    greeting: Greeting,
    reader: JoinHandle<()>,
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl QmpClient {
    /// Connects to the socket at `path` (retrying until `timeout` while QEMU is not listening
    /// yet), reads the greeting and leaves capabilities negotiation.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(stream) => break stream,
                Err(e) if tokio::time::Instant::now() < deadline && is_not_ready(&e) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(source) => {
                    return Err(QmpError::Connect {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        };
        let (read, write) = stream.into_split();
        let mut read = BufReader::new(read);
        let greeting = tokio::time::timeout_at(deadline, read_greeting(&mut read))
            .await
            .map_err(|_| QmpError::Timeout {
                command: "greeting",
                after: timeout,
            })??;
        let client = Self::start(read, write, greeting, timeout);
        client.execute(&QmpCapabilities).await?;
        Ok(client)
    }

    fn start(
        read: BufReader<OwnedReadHalf>,
        write: OwnedWriteHalf,
        greeting: Greeting,
        timeout: Duration,
    ) -> Self {
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (events, _) = broadcast::channel(64);
        let (closed_tx, closed) = watch::channel(false);
        let reader = tokio::spawn(read_loop(
            read,
            Arc::clone(&pending),
            events.clone(),
            closed_tx,
        ));
        Self {
            writer: tokio::sync::Mutex::new(write),
            pending,
            events,
            closed,
            next_id: AtomicU64::new(1),
            timeout,
            greeting,
            reader,
        }
    }

    /// The greeting QEMU sent (its version).
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// Events sent from now on. Subscribe before sending the command that causes them.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Whether the connection is gone (QEMU exited or sent garbage).
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Completes when the connection is gone.
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        // An error means the reader ended, which also means closed.
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Sends `command` and waits for its reply (at most the client's timeout).
    pub async fn execute<C: Command>(&self, command: &C) -> Result<C::Reply, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = qmp::encode(command, id).map_err(|e| QmpError::Protocol(e.to_string()))?;
        line.push('\n');
        let (tx, rx) = oneshot::channel();
        match self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            Some(pending) => pending.insert(id, tx),
            None => return Err(QmpError::Disconnected),
        };
        let exchange = async {
            self.writer.lock().await.write_all(line.as_bytes()).await?;
            rx.await.map_err(|_| QmpError::Disconnected)?
        };
        let result = tokio::time::timeout(self.timeout, exchange).await;
        if let Some(pending) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            pending.remove(&id);
        }
        let value = result.map_err(|_| QmpError::Timeout {
            command: C::NAME,
            after: self.timeout,
        })?;
        let value = value.map_err(|e| match e {
            QmpError::Command { class, desc, .. } => QmpError::Command {
                command: C::NAME,
                class,
                desc,
            },
            other => other,
        })?;
        qmp::decode_reply::<C>(value).map_err(|e| QmpError::Reply {
            command: C::NAME,
            message: e.to_string(),
        })
    }
}

fn is_not_ready(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

async fn read_greeting<R: AsyncBufRead + Unpin>(read: &mut R) -> Result<Greeting, QmpError> {
    let mut line = Vec::new();
    loop {
        match read_line_limited(read, &mut line, MAX_LINE).await? {
            Line::Eof => return Err(QmpError::Disconnected),
            Line::TooLong => {
                return Err(QmpError::Protocol(format!(
                    "a line longer than {MAX_LINE} bytes"
                )));
            }
            Line::Complete => match qmp::parse_message(&line) {
                Ok(QmpMessage::Greeting(greeting)) => return Ok(greeting),
                Ok(_) => continue,
                Err(e) => return Err(QmpError::Protocol(e.to_string())),
            },
        }
    }
}

/// Reads QEMU's lines until the connection ends; then fails every waiting command.
async fn read_loop(
    mut read: BufReader<OwnedReadHalf>,
    pending: Pending,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Sender<bool>,
) {
    let mut line = Vec::new();
    loop {
        match read_line_limited(&mut read, &mut line, MAX_LINE).await {
            Ok(Line::Complete) => dispatch(&line, &pending, &events),
            Ok(Line::TooLong) => {
                tracing::warn!(
                    "QEMU sent a QMP line longer than {MAX_LINE} bytes; closing the connection"
                );
                break;
            }
            Ok(Line::Eof) => break,
            Err(e) => {
                tracing::debug!("QMP connection ended: {e}");
                break;
            }
        }
    }
    // Dropping the senders makes every waiting command see `Disconnected`.
    pending.lock().unwrap_or_else(|e| e.into_inner()).take();
    let _ = closed.send(true);
}

fn dispatch(line: &[u8], pending: &Pending, events: &broadcast::Sender<QmpEvent>) {
    let (id, result) = match qmp::parse_message(line) {
        Ok(QmpMessage::Return { id, value }) => (id, Ok(value)),
        Ok(QmpMessage::Error { id, error }) => (
            id,
            Err(QmpError::Command {
                command: "",
                class: error.class,
                desc: error.desc,
            }),
        ),
        Ok(QmpMessage::Event(event)) => {
            // No subscriber is fine: nobody waits for this event.
            let _ = events.send(event);
            return;
        }
        Ok(QmpMessage::Greeting(_)) => return,
        Err(e) => {
            tracing::warn!("ignoring a line from QEMU: {e}");
            return;
        }
    };
    let Some(id) = id else {
        tracing::warn!("ignoring a QMP reply without id");
        return;
    };
    let sender = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|p| p.remove(&id));
    if let Some(sender) = sender {
        let _ = sender.send(result);
    }
}

/// What [`read_line_limited`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// `buf` holds one line without its newline.
    Complete,
    /// The line exceeded the limit; its bytes were discarded up to where reading stopped.
    TooLong,
    /// The stream ended (a partial last line is dropped).
    Eof,
}

/// Reads one `\n`-terminated line into `buf`, never buffering more than `max` bytes.
pub(crate) async fn read_line_limited<R: AsyncBufRead + Unpin>(
    read: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    buf.clear();
    loop {
        let available = read.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (end, true),
            None => (available.len(), false),
        };
        if buf.len() + chunk > max {
            read.consume(chunk);
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&available[..chunk]);
        read.consume(chunk + usize::from(found));
        if found {
            return Ok(Line::Complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_limited() {
        let mut input: &[u8] = b"{\"a\":1}\r\nshort\n0123456789abcdef\nrest";
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"{\"a\":1}\r");
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 10).await.unwrap(),
            Line::TooLong
        );
        assert!(buf.len() <= 10);
    }

    #[tokio::test]
    async fn a_partial_last_line_is_eof() {
        let mut input: &[u8] = b"no newline";
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 100).await.unwrap(),
            Line::Eof
        );
    }

    /// A fake QEMU on a socket pair: greets, answers, sends an event and garbage, then hangs up.
    #[tokio::test]
    async fn replies_events_and_disconnects_reach_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(br#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#).await.unwrap();
            write.write_all(b"\n").await.unwrap();
            while let Some(line) = lines.next_line().await.unwrap() {
                let request: Value = serde_json::from_str(&line).unwrap();
                let id = &request["id"];
                let reply = match request["execute"].as_str().unwrap() {
                    "query-status" => format!(
                        "\u{1}garbage\n{{\"event\": \"STOP\"}}\n{{\"return\": {{\"status\": \"paused\", \"running\": false}}, \"id\": {id}}}\n"
                    ),
                    "quit" => return,
                    _ => format!("{{\"return\": {{}}, \"id\": {id}}}\n"),
                };
                write.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let client = QmpClient::connect(&path, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(client.greeting().version.qemu.minor, 2);
        let mut events = client.subscribe();
        let status = client.execute(&qmp::QueryStatus).await.unwrap();
        assert_eq!(status.status, qmp::RunStatus::Paused);
        assert_eq!(events.recv().await.unwrap().name, "STOP");
        assert!(matches!(
            client.execute(&qmp::Quit).await,
            Err(QmpError::Disconnected)
        ));
        client.closed().await;
        assert!(client.is_closed());
        server.await.unwrap();
    }
}
