//! A real, single-member etcd for one test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// A running etcd on 127.0.0.1, stopped (killed) when dropped.
pub struct EtcdServer {
    child: Option<Child>,
    data_dir: TempDir,
    client_port: u16,
    peer_port: u16,
}

/// How long etcd may take to answer after starting.
const START_TIMEOUT: Duration = Duration::from_secs(20);

impl EtcdServer {
    /// Starts etcd on two free loopback ports and waits until it serves clients.
    pub fn start() -> Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("herd-etcd-").tempdir()?;
        let mut last_error = None;
        // A free port can be taken by someone else before etcd binds it: try a few times.
        for _ in 0..3 {
            let (client_port, peer_port) = (free_port()?, free_port()?);
            match launch(data_dir.path(), client_port, peer_port) {
                Ok(child) => {
                    return Ok(Self {
                        child: Some(child),
                        data_dir,
                        client_port,
                        peer_port,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("tried at least once"))
    }

    /// `http://127.0.0.1:<port>`, the client endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Kills etcd (SIGKILL, as a crash) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data, after [`EtcdServer::kill`].
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.child = Some(launch(
            self.data_dir.path(),
            self.client_port,
            self.peer_port,
        )?);
        Ok(())
    }

    /// Runs `etcdctl` against this server with `args`; fails unless it exits 0.
    pub fn etcdctl(&self, args: &[&str]) -> Result<Output> {
        etcdctl(&self.endpoint(), args)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts etcd with its data in `dir` and waits until it serves; kills it if it does not.
fn launch(dir: &Path, client_port: u16, peer_port: u16) -> Result<Child> {
    let peer = format!("http://127.0.0.1:{peer_port}");
    let client = format!("http://127.0.0.1:{client_port}");
    let log = std::fs::File::create(dir.join("etcd.log"))?;
    let mut child = Command::new(etcd_binary())
        .arg("--name=herd-test")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=herd-test={peer}"))
        .arg("--log-level=warn")
        .arg("--logger=zap")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context(
            "cannot start etcd: install Debian's etcd-server package (apt-get install etcd-server)",
        )?;
    match wait_until_serving(&mut child, client_port) {
        Ok(()) => Ok(child),
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(error.context(format!("etcd log: {}", log_tail(dir))))
        }
    }
}

fn wait_until_serving(child: &mut Child, client_port: u16) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let address: SocketAddr = ([127, 0, 0, 1], client_port).into();
    let endpoint = format!("http://127.0.0.1:{client_port}");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("etcd exited with {status} while starting");
        }
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
            && etcdctl(&endpoint, &["endpoint", "health"]).is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("etcd did not serve within {START_TIMEOUT:?}")
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// The etcd executable: `HERD_ETCD` if set, else Debian's `/usr/bin/etcd`, else `etcd` on PATH.
fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HERD_ETCD") {
        return PathBuf::from(path);
    }
    let debian = PathBuf::from("/usr/bin/etcd");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("etcd")
    }
}

/// Runs `etcdctl --endpoints=<endpoint> <args>` (API v3); fails unless it exits 0.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> Result<Output> {
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .context("cannot run etcdctl: install Debian's etcd-client package")?;
    if !output.status.success() {
        bail!(
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A key prefix no other test uses, such as `/herd-test-12345-3`.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "/herd-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
