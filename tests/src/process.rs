//! Herald's binaries as child processes: started with flags and env, stopped with SIGTERM or
//! SIGKILL, their logs kept in a file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Directory of the built binaries: `$HERALD_BIN_DIR`, else the cargo target directory this
/// test binary runs from.
pub fn bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HERALD_BIN_DIR") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("executable path");
    // A test runs from target/<profile>/deps/, a benchmark binary from target/<profile>/.
    let dir = exe.parent().expect("executable directory");
    if dir.ends_with("deps") {
        dir.parent().map(Path::to_path_buf).expect("target directory")
    } else {
        dir.to_path_buf()
    }
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as tests/run.sh does)",
        path.display()
    );
    path
}

pub struct Service {
    pub name: String,
    pub url: String,
    /// Where its `/metrics` listener is.
    pub metrics_url: String,
    child: Option<Child>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts `binary` listening on a free port, with `args` and `env` (logs as JSON lines).
    pub fn start(binary: &str, args: &[String], env: &[(&str, String)]) -> Self {
        Self::start_on(binary, crate::broker::free_port(), args, env)
    }

    /// Starts `binary` listening on `port` (its metrics on a free port of their own), with `args`
    /// and `env` (logs as JSON lines).
    pub fn start_on(binary: &str, port: u16, args: &[String], env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("scratch dir");
        let metrics_port = crate::broker::free_port();
        let log_path = dir.path().join(format!("{binary}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(bin(binary));
        cmd.args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env("HERALD_LOG_FORMAT", "json")
            .env_remove("HERALD_LISTEN")
            .env_remove("HERALD_METRICS_LISTEN")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        Self {
            name: binary.to_string(),
            url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            child: Some(child),
            log_path,
            _dir: dir,
        }
    }

    fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-s", name, &child.id().to_string()]).status();
        }
    }

    /// SIGTERM, then wait for the exit (at most `limit`).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait(limit)
    }

    /// SIGSTOP: the process is frozen, as a CPU-throttled or descheduled pod is.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Service::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGKILL: the process gets no chance to commit or leave the group.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("process already stopped");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("waiting for child") {
                return status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                panic!("{} did not exit within {limit:?} after SIGTERM; log:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory in bytes (Linux `/proc`), when the process is running.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.status_kib("VmRSS:").map(|kib| kib * 1024)
    }

    /// The most resident memory the process has had, in bytes (`VmHWM`).
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.status_kib("VmHWM:").map(|kib| kib * 1024)
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `n` lines of the log that contain any of `about`, one per line: what a failed
    /// assertion shows of what the service said.
    pub fn log_excerpt(&self, about: &[&str], n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().filter(|l| about.iter().any(|a| l.contains(a))).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The JSON log lines whose `message` is `message`.
    pub fn log_events(&self, message: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}
