//! Real git repositories for tests: a bare repository made with `git init`, a work tree that
//! commits and pushes to it, and [`GitHttpServer`], which serves bare repositories over real
//! smart HTTP on a free loopback port by running `git http-backend` as a CGI program.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// A bare repository `<root>/<name>.git` and a work tree that pushes to it (branch `main`).
pub struct GitRepo {
    _dir: TempDir,
    root: PathBuf,
    work: PathBuf,
    bare: PathBuf,
}

impl GitRepo {
    /// Makes both repositories (nothing committed yet).
    pub fn new(name: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("served");
        let bare = root.join(format!("{name}.git"));
        let work = dir.path().join("work");
        std::fs::create_dir_all(&root)?;
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", path_str(&bare)?],
        )?;
        git(dir.path(), &["init", "-q", "-b", "main", path_str(&work)?])?;
        git(&work, &["remote", "add", "origin", path_str(&bare)?])?;
        Ok(Self {
            _dir: dir,
            root,
            work,
            bare,
        })
    }

    /// The folder holding the bare repositories (what the HTTP server serves).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bare repository's path (a local URL).
    pub fn bare(&self) -> &Path {
        &self.bare
    }

    /// Writes `text` to `path` in the work tree (folders made as needed).
    pub fn write(&self, path: &str, text: &str) -> Result<()> {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().context("a file has a parent")?)?;
        Ok(std::fs::write(file, text)?)
    }

    /// Removes `path` from the work tree.
    pub fn remove(&self, path: &str) -> Result<()> {
        Ok(std::fs::remove_file(self.work.join(path))?)
    }

    /// Commits everything and pushes to `main` (forced, so a rewritten history goes too);
    /// returns the new commit id.
    pub fn commit(&self, message: &str) -> Result<String> {
        git(&self.work, &["add", "-A"])?;
        git(
            &self.work,
            &[
                "-c",
                "user.name=herd test",
                "-c",
                "user.email=test@herd.invalid",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                message,
            ],
        )?;
        git(&self.work, &["push", "-q", "--force", "origin", "main"])?;
        self.head()
    }

    /// Rewrites history: resets `main` to `commit` (dropping what came after) before the next
    /// [`commit`](Self::commit) force-pushes it.
    pub fn reset_to(&self, commit: &str) -> Result<()> {
        git(&self.work, &["reset", "-q", "--hard", commit])
    }

    /// The work tree's current commit.
    pub fn head(&self) -> Result<String> {
        let out = Command::new("git")
            .current_dir(&self.work)
            .args(["rev-parse", "HEAD"])
            .output()?;
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("test paths are UTF-8")
}

/// Runs `git ARGS` in `dir`; fails with git's stderr.
fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `git http-backend` behind a loopback HTTP server; stops when dropped.
pub struct GitHttpServer {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl GitHttpServer {
    /// Serves every bare repository below `root` at `http://127.0.0.1:PORT/<name>.git`.
    pub async fn start(root: &Path) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let app = Router::new().fallback(cgi).with_state(root.to_path_buf());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { address, task })
    }

    /// The URL of repository `<name>.git`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.address)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs one request through `git http-backend` (CGI) and turns its output into a response.
async fn cgi(
    State(root): State<PathBuf>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    match run_backend(&root, &method, &uri, &headers, &body).await {
        Ok(response) => response,
        Err(error) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from(error.to_string()))
            .unwrap_or_default(),
    }
}

async fn run_backend(
    root: &Path,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Body>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    stdin.write_all(body).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    cgi_response(&output.stdout)
}

/// Parses CGI output: header lines, a blank line, the body.
fn cgi_response(output: &[u8]) -> Result<Response<Body>> {
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .context("git http-backend wrote no header block")?;
    let (head, body) = (&output[..split.0], &output[split.0 + split.1..]);
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.split_whitespace().next().unwrap_or("500").parse()?;
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    Ok(response.body(Body::from(body.to_vec()))?)
}
