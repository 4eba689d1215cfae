//! The QEMU Machine Protocol as typed values: commands, their replies, and events.
//!
//! Everything QEMU sends is parsed here with serde into [`QmpMessage`] before any other code
//! looks at it. Unknown fields are ignored and unknown enum values land in an `Unknown` variant,
//! so a newer QEMU (or a misbehaving one) produces an error value, never a panic. The
//! connection itself lives in [`super::qmp_client`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest line accepted from QEMU (1 MiB): a reply larger than this is a protocol violation.
pub const MAX_LINE: usize = 1 << 20;

/// A command QEMU understands, with the type of its `return` value.
pub trait Command: Serialize {
    /// The `execute` name, such as `query-status`.
    const NAME: &'static str;
    /// What the `return` member holds.
    type Reply: DeserializeOwned;
}

/// Renders `command` as one QMP line (without the newline), tagged with `id`.
pub fn encode<C: Command>(command: &C, id: u64) -> Result<String, serde_json::Error> {
    let arguments = serde_json::to_value(command)?;
    let mut message = serde_json::json!({ "execute": C::NAME, "id": id });
    let has_arguments = arguments.as_object().is_some_and(|map| !map.is_empty());
    if has_arguments {
        message["arguments"] = arguments;
    }
    serde_json::to_string(&message)
}

/// One line received from QEMU.
#[derive(Clone, Debug, PartialEq)]
pub enum QmpMessage {
    /// The banner sent when a client connects.
    Greeting(Greeting),
    /// A successful reply; `id` is the one the command carried.
    Return { id: Option<u64>, value: Value },
    /// A failed command.
    Error {
        id: Option<u64>,
        error: QmpErrorBody,
    },
    /// An asynchronous event.
    Event(QmpEvent),
}

/// The `QMP` banner.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Greeting {
    #[serde(default)]
    pub version: GreetingVersion,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct GreetingVersion {
    #[serde(default)]
    pub qemu: QemuVersion,
    #[serde(default)]
    pub package: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

/// The `error` member of a failed reply.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct QmpErrorBody {
    #[serde(default)]
    pub class: String,
    #[serde(default)]
    pub desc: String,
}

/// An asynchronous event such as `SHUTDOWN` or `MIGRATION`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct QmpEvent {
    #[serde(rename = "event")]
    pub name: String,
    #[serde(default)]
    pub data: Value,
}

impl QmpEvent {
    /// The event as a typed value (unknown events and malformed data become `Other`).
    pub fn kind(&self) -> EventKind {
        match self.name.as_str() {
            "SHUTDOWN" => EventKind::Shutdown {
                guest: self
                    .data
                    .get("guest")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            },
            "STOP" => EventKind::Stop,
            "RESUME" => EventKind::Resume,
            "MIGRATION" => match serde_json::from_value::<MigrationEventData>(self.data.clone()) {
                Ok(data) => EventKind::Migration(data.status),
                Err(_) => EventKind::Other,
            },
            _ => EventKind::Other,
        }
    }
}

/// The events the driver acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The guest powered off (`guest: true`) or QEMU was told to quit.
    Shutdown {
        guest: bool,
    },
    Stop,
    Resume,
    Migration(MigrationStatus),
    Other,
}

#[derive(Deserialize)]
struct MigrationEventData {
    status: MigrationStatus,
}

/// The shapes a line may take, tried in this order.
#[derive(Deserialize)]
#[serde(untagged)]
enum Wire {
    Greeting {
        #[serde(rename = "QMP")]
        qmp: Greeting,
    },
    Return {
        #[serde(rename = "return")]
        value: Value,
        #[serde(default)]
        id: Option<Value>,
    },
    Error {
        error: QmpErrorBody,
        #[serde(default)]
        id: Option<Value>,
    },
    Event(QmpEvent),
}

/// Why a line from QEMU was not a QMP message.
#[derive(Debug, thiserror::Error)]
#[error("Not a QMP message ({reason}): {excerpt:?}")]
pub struct QmpParseError {
    pub reason: String,
    /// The first bytes of the line, for the log.
    pub excerpt: String,
}

/// Parses one line from QEMU.
pub fn parse_message(line: &[u8]) -> Result<QmpMessage, QmpParseError> {
    let fail = |reason: String| QmpParseError {
        reason,
        excerpt: String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned(),
    };
    if line.len() > MAX_LINE {
        return Err(fail(format!("longer than {MAX_LINE} bytes")));
    }
    let wire: Wire = serde_json::from_slice(line).map_err(|e| fail(e.to_string()))?;
    Ok(match wire {
        Wire::Greeting { qmp } => QmpMessage::Greeting(qmp),
        Wire::Return { value, id } => QmpMessage::Return {
            id: id.as_ref().and_then(Value::as_u64),
            value,
        },
        Wire::Error { error, id } => QmpMessage::Error {
            id: id.as_ref().and_then(Value::as_u64),
            error,
        },
        Wire::Event(event) => QmpMessage::Event(event),
    })
}

/// Decodes the `return` value of `C`.
pub fn decode_reply<C: Command>(value: Value) -> Result<C::Reply, serde_json::Error> {
    serde_json::from_value(value)
}

/// Declares a command without arguments whose reply is `$reply`.
macro_rules! plain_command {
    ($(#[$doc:meta])* $type:ident, $name:literal, $reply:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, Serialize)]
        pub struct $type;

        impl Command for $type {
            const NAME: &'static str = $name;
            type Reply = $reply;
        }
    };
}

/// The empty object most commands return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Empty {}

plain_command!(
    /// Leaves capabilities negotiation: required before any other command.
    QmpCapabilities, "qmp_capabilities", Empty);
plain_command!(
    /// Where the VM is in its life (running, paused, waiting for a migration...).
    QueryStatus, "query-status", StatusInfo);
plain_command!(
    /// Stops the vCPUs.
    Stop, "stop", Empty);
plain_command!(
    /// Resumes the vCPUs.
    Cont, "cont", Empty);
plain_command!(
    /// Presses the ACPI power button.
    SystemPowerdown, "system_powerdown", Empty);
plain_command!(
    /// Ends QEMU at once.
    Quit, "quit", Empty);
plain_command!(
    /// Every vCPU with the host thread that runs it.
    QueryCpusFast, "query-cpus-fast", Vec<CpuInfoFast>);
plain_command!(
    /// The state of the last (or current) outgoing migration.
    QueryMigrate, "query-migrate", MigrationInfo);
plain_command!(
    /// Cancels the outgoing migration; the VM keeps running here.
    MigrateCancel, "migrate_cancel", Empty);
plain_command!(
    /// Whether KVM is compiled in and in use.
    QueryKvm, "query-kvm", KvmInfo);

/// Starts an outgoing migration to `uri` (such as `tcp:10.0.0.2:49152`).
#[derive(Clone, Debug, Serialize)]
pub struct Migrate {
    pub uri: String,
}

impl Command for Migrate {
    const NAME: &'static str = "migrate";
    type Reply = Empty;
}

/// Tunes the next migration.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrateSetParameters {
    /// Longest pause at switch-over, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_limit: Option<u64>,
    /// Bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
}

impl Command for MigrateSetParameters {
    const NAME: &'static str = "migrate-set-parameters";
    type Reply = Empty;
}

/// Turns migration capabilities on or off (`events` makes QEMU send `MIGRATION` events).
#[derive(Clone, Debug, Serialize)]
pub struct MigrateSetCapabilities {
    pub capabilities: Vec<CapabilityState>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CapabilityState {
    pub capability: String,
    pub state: bool,
}

impl Command for MigrateSetCapabilities {
    const NAME: &'static str = "migrate-set-capabilities";
    type Reply = Empty;
}

/// Runs a human monitor command; used for `xp` (read guest physical memory).
#[derive(Clone, Debug, Serialize)]
pub struct HumanMonitorCommand {
    #[serde(rename = "command-line")]
    pub command_line: String,
}

impl Command for HumanMonitorCommand {
    const NAME: &'static str = "human-monitor-command";
    type Reply = String;
}

/// Reply of `query-status`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StatusInfo {
    pub status: RunStatus,
    #[serde(default)]
    pub running: bool,
}

/// QEMU's `RunState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Debug,
    Inmigrate,
    InternalError,
    IoError,
    Paused,
    Postmigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
    Colo,
    #[serde(other)]
    Unknown,
}

/// One entry of `query-cpus-fast`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CpuInfoFast {
    pub cpu_index: i64,
    /// The host thread id running this vCPU.
    pub thread_id: i64,
}

/// Reply of `query-kvm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct KvmInfo {
    pub enabled: bool,
    pub present: bool,
}

/// Reply of `query-migrate`. Every member is optional: QEMU omits them before a migration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    #[serde(default)]
    pub status: Option<MigrationStatus>,
    #[serde(default)]
    pub ram: Option<RamStats>,
    /// Milliseconds since the migration started.
    #[serde(default)]
    pub total_time: Option<u64>,
    /// Milliseconds the guest was paused at switch-over (when completed).
    #[serde(default)]
    pub downtime: Option<u64>,
    #[serde(default)]
    pub error_desc: Option<String>,
}

/// The `ram` member of `query-migrate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct RamStats {
    #[serde(default)]
    pub transferred: u64,
    #[serde(default)]
    pub remaining: u64,
    #[serde(default)]
    pub total: u64,
}

/// QEMU's `MigrationStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationStatus {
    None,
    Setup,
    Cancelling,
    Cancelled,
    Active,
    PostcopyActive,
    PostcopyPaused,
    PostcopyRecover,
    Completed,
    Failed,
    Colo,
    PreSwitchover,
    Device,
    WaitUnplug,
    #[serde(other)]
    Unknown,
}

/// Reads the 32-bit word from the reply to `xp /1wx ADDR`, such as `0000000000000500: 0x0000abcd`.
pub fn parse_xp_word(reply: &str) -> Option<u32> {
    let (_, value) = reply.trim().split_once(": ")?;
    u32::from_str_radix(value.trim().strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from QEMU 7.2 (Debian 1:7.2+dfsg-7+deb12u18).
    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}"#;
    const CPUS: &str = r#"{"return": [{"thread-id": 19343, "props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"}, {"thread-id": 19344, "props": {"core-id": 1, "thread-id": 0, "socket-id": 0}, "qom-path": "/machine/unattached/device[2]", "cpu-index": 1, "target": "x86_64"}], "id": 3}"#;
    const SHUTDOWN: &str = r#"{"timestamp": {"seconds": 1795571970, "microseconds": 627601}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}"#;
    const MIGRATION_ACTIVE: &str = r#"{"return": {"expected-downtime": 300, "status": "active", "setup-time": 2, "total-time": 1001, "ram": {"total": 34086912, "postcopy-requests": 0, "dirty-sync-count": 1, "multifd-bytes": 0, "pages-per-second": 30, "downtime-bytes": 0, "page-size": 4096, "remaining": 33054720, "postcopy-bytes": 0, "mbps": 0.98639999999999994, "transferred": 125205, "dirty-sync-missed-zero-copy": 0, "precopy-bytes": 125205, "duplicate": 222, "dirty-pages-rate": 0, "skipped": 0, "normal-bytes": 122880, "normal": 30}}}"#;
    const MIGRATION_FAILED: &str = r#"{"return": {"status": "failed", "error-desc": "Failed to connect to '127.0.0.1:1': Connection refused"}}"#;

    fn reply(line: &str) -> Value {
        match parse_message(line.as_bytes()).unwrap() {
            QmpMessage::Return { value, .. } => value,
            other => panic!("not a return: {other:?}"),
        }
    }

    #[test]
    fn the_greeting_carries_the_version() {
        let QmpMessage::Greeting(greeting) = parse_message(GREETING.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            greeting.version.qemu,
            QemuVersion {
                major: 7,
                minor: 2,
                micro: 22
            }
        );
    }

    #[test]
    fn commands_are_encoded_with_id_and_only_needed_arguments() {
        assert_eq!(
            encode(&QueryStatus, 4).unwrap(),
            r#"{"execute":"query-status","id":4}"#
        );
        let params = MigrateSetParameters {
            downtime_limit: Some(300),
            max_bandwidth: None,
        };
        assert_eq!(
            encode(&params, 5).unwrap(),
            r#"{"arguments":{"downtime-limit":300},"execute":"migrate-set-parameters","id":5}"#
        );
        let hmp = HumanMonitorCommand {
            command_line: "xp /1wx 0x500".into(),
        };
        assert!(
            encode(&hmp, 6)
                .unwrap()
                .contains(r#""command-line":"xp /1wx 0x500""#)
        );
    }

    #[test]
    fn replies_decode_into_typed_values() {
        let status =
            r#"{"return": {"status": "postmigrate", "singlestep": false, "running": false}}"#;
        let status = decode_reply::<QueryStatus>(reply(status)).unwrap();
        assert_eq!(status.status, RunStatus::Postmigrate);
        let QmpMessage::Return { id, value } = parse_message(CPUS.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(id, Some(3));
        let cpus = decode_reply::<QueryCpusFast>(value).unwrap();
        assert_eq!(
            cpus.iter()
                .map(|c| (c.cpu_index, c.thread_id))
                .collect::<Vec<_>>(),
            [(0, 19343), (1, 19344)]
        );
        let kvm = decode_reply::<QueryKvm>(reply(
            r#"{"return": {"enabled": true, "present": true}, "id": 7}"#,
        ))
        .unwrap();
        assert!(kvm.enabled && kvm.present);
        let unknown = r#"{"return": {"status": "some-future-state", "running": false}}"#;
        assert_eq!(
            decode_reply::<QueryStatus>(reply(unknown)).unwrap().status,
            RunStatus::Unknown
        );
    }

    #[test]
    fn migration_replies_decode() {
        let active = decode_reply::<QueryMigrate>(reply(MIGRATION_ACTIVE)).unwrap();
        assert_eq!(active.status, Some(MigrationStatus::Active));
        let ram = active.ram.unwrap();
        assert_eq!((ram.transferred, ram.remaining), (125205, 33054720));
        let failed = decode_reply::<QueryMigrate>(reply(MIGRATION_FAILED)).unwrap();
        assert_eq!(failed.status, Some(MigrationStatus::Failed));
        assert!(failed.error_desc.unwrap().contains("Connection refused"));
        let none = decode_reply::<QueryMigrate>(reply(r#"{"return": {}}"#)).unwrap();
        assert_eq!(none, MigrationInfo::default());
    }

    #[test]
    fn errors_and_events_are_recognised() {
        let error = r#"{"error": {"class": "CommandNotFound", "desc": "The command nonexistent has not been found"}, "id": 9}"#;
        let QmpMessage::Error { id, error } = parse_message(error.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!((id, error.class.as_str()), (Some(9), "CommandNotFound"));
        let QmpMessage::Event(event) = parse_message(SHUTDOWN.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(event.kind(), EventKind::Shutdown { guest: false });
        let migration = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION", "data": {"status": "completed"}}"#;
        let QmpMessage::Event(event) = parse_message(migration.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            event.kind(),
            EventKind::Migration(MigrationStatus::Completed)
        );
        let odd = r#"{"event": "MIGRATION", "data": {"status": 17}}"#;
        let QmpMessage::Event(event) = parse_message(odd.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(event.kind(), EventKind::Other);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for line in [
            &b""[..],
            b"not json",
            b"[1,2]",
            b"{\"unrelated\": 1}",
            b"\xff\xfe",
            b"{\"return\": ",
        ] {
            assert!(parse_message(line).is_err(), "{line:?}");
        }
        let deep = "[".repeat(10_000);
        assert!(parse_message(deep.as_bytes()).is_err());
        let long = vec![b' '; MAX_LINE + 1];
        assert!(
            parse_message(&long)
                .unwrap_err()
                .reason
                .contains("longer than")
        );
        // A reply whose value has the wrong shape fails to decode instead of panicking.
        assert!(
            decode_reply::<QueryCpusFast>(reply(r#"{"return": [{"cpu-index": "x"}]}"#)).is_err()
        );
    }

    #[test]
    fn xp_replies_give_the_word() {
        assert_eq!(
            parse_xp_word("0000000000000500: 0x0000abcd\r\n"),
            Some(0xabcd)
        );
        assert_eq!(parse_xp_word("Cannot access memory\r\n"), None);
        assert_eq!(parse_xp_word("0000000000000500: 0xffffffffff\r\n"), None);
    }
}
