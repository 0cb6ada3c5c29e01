//! A nisshi broker process in its own scratch directory on a free loopback port.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the broker stores records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Fast; lost when the broker stops.
    Memory,
    /// Durable across restarts; slower.
    Sqlite,
}

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    storage: Storage,
    /// Clients must authenticate with SASL SCRAM.
    authentication: bool,
    dir: tempfile::TempDir,
}

/// The nisshi binary: `$NISSHI_BIN`, else `nisshi` from `~/.cargo/bin` or `PATH`.
pub fn nisshi_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NISSHI_BIN") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cargo/bin/nisshi");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("nisshi")
}

/// A loopback port that is free now, never handed out before in this process, and outside the
/// kernel's ephemeral range (32768–60999), so that no outgoing connection takes it before the
/// process meant to listen on it starts (consumers' ports are chosen up front as their peers).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let random = RandomState::new();
    for attempt in 0u32..10_000 {
        let port = 20_000 + (random.hash_one(attempt) % 12_000) as u16;
        if given.contains(&port) || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
    panic!("no free loopback port in 20000..32000")
}

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start(storage: Storage) -> Self {
        let dir = tempfile::tempdir().expect("scratch dir for the broker");
        let mut broker = Self { child: None, port: free_port(), storage, authentication: false, dir };
        broker.spawn();
        broker
    }

    /// A sqlite broker that requires SASL SCRAM-SHA-512 from clients, knowing `users` (name,
    /// password) and holding `topics` (name, partitions), created before authentication is on.
    pub async fn start_with_sasl_users(users: &[(&str, &str)], topics: &[(&str, i32)]) -> Self {
        let mut broker = Self::start(Storage::Sqlite);
        for (topic, partitions) in topics {
            crate::kafka::create_topic(&broker.bootstrap(), topic, *partitions).await;
        }
        for (name, password) in users {
            let out = Command::new(nisshi_bin())
                .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{}", broker.port), name, password])
                .output()
                .expect("nisshi user create");
            assert!(out.status.success(), "creating user {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        broker.stop();
        broker.authentication = true;
        broker.spawn();
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let engine = match self.storage {
            Storage::Memory => "memory://nisshi/".to_string(),
            Storage::Sqlite => "sqlite://broker.db".to_string(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log file");
        let mut command = Command::new(nisshi_bin());
        command.arg("broker");
        if self.authentication {
            command.arg("--authentication");
        }
        let child = command
            .current_dir(self.dir.path())
            .env("LISTENER_URL", &url)
            .env("ADVERTISED_LISTENER_URL", &url)
            .env("STORAGE_ENGINE", engine)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nisshi ({}): {e}; run tests/run.sh, which installs it", nisshi_bin().display())
            });
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "nisshi did not listen on {} within 20 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same port and storage after [`Broker::stop`]; with
    /// [`Storage::Sqlite`] it comes back with every record it had persisted.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running broker");
        self.spawn();
    }

    /// The broker's log (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// Stops the broker (SIGKILL: an outage, not a goodbye).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
