//! A real Kafka-protocol broker (tansu, in-memory or SQLite storage) on a free loopback port,
//! optionally requiring SASL/SCRAM authentication.

use std::fs::{File, OpenOptions};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A SCRAM mechanism a broker user is created for (tansu keeps one credential per mechanism).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scram {
    Sha256,
    Sha512,
}

impl Scram {
    /// The mechanism's Kafka name, as `saslMechanism` and librdkafka's `sasl.mechanisms` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn tansu_name(self) -> &'static str {
        match self {
            Self::Sha256 => "scram256",
            Self::Sha512 => "scram512",
        }
    }
}

/// A broker user: name, password and the mechanism its credential is stored for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUser {
    pub name: String,
    pub password: String,
    pub mechanism: Scram,
}

impl KafkaUser {
    pub fn new(name: &str, password: &str, mechanism: Scram) -> Self {
        Self {
            name: name.to_string(),
            password: password.to_string(),
            mechanism,
        }
    }
}

pub struct KafkaBroker {
    port: u16,
    child: Option<Child>,
    /// Where a durable broker keeps its data (SQLite), kept across restarts.
    data: Option<tempfile::TempDir>,
    /// Whether clients must authenticate with SASL (`tansu broker --authentication`).
    authentication: bool,
    /// The broker's stdout and stderr, across restarts (`tansu.log`).
    logs: tempfile::TempDir,
}

/// The tansu binary: `TANSU_BIN` (set by tests/run-all.sh), else `tansu` on the PATH.
fn tansu_binary() -> std::ffi::OsString {
    std::env::var_os("TANSU_BIN").unwrap_or_else(|| "tansu".into())
}

impl KafkaBroker {
    fn new(durable: bool) -> std::io::Result<Self> {
        Ok(Self {
            port: crate::free_port(),
            child: None,
            data: if durable {
                Some(tempfile::tempdir()?)
            } else {
                None
            },
            authentication: false,
            logs: tempfile::tempdir()?,
        })
    }

    /// Starts `tansu broker` with in-memory storage.
    pub fn start() -> std::io::Result<Self> {
        let mut broker = Self::new(false)?;
        broker.spawn()?;
        Ok(broker)
    }

    /// Starts a broker whose messages and offsets survive a restart (SQLite storage; needs
    /// tansu built with `--features dynostore,libsql`, as tests/run-all.sh installs it).
    pub fn start_durable() -> std::io::Result<Self> {
        let mut broker = Self::new(true)?;
        broker.spawn()?;
        Ok(broker)
    }

    /// Starts a broker that requires SASL authentication and knows one user. tansu 0.6
    /// authenticates SCRAM-SHA-256 and SCRAM-SHA-512 only: it refuses PLAIN (the connection is
    /// closed after the handshake) and plaintext clients.
    pub fn start_with_user(name: &str, password: &str, mechanism: Scram) -> std::io::Result<Self> {
        Self::start_with_users(&[KafkaUser::new(name, password, mechanism)])
    }

    /// Starts a broker that requires SASL authentication and knows `users`.
    ///
    /// tansu 0.6 keeps SCRAM credentials only in SQL storage (its object-store engine behind
    /// `memory://` drops them, so nobody could log in), and an authenticating broker refuses
    /// `tansu user create`, which cannot authenticate; so the users are created on an open
    /// broker, which then restarts with `--authentication` on the same port and data. Durable,
    /// like [`KafkaBroker::start_durable`].
    pub fn start_with_users(users: &[KafkaUser]) -> std::io::Result<Self> {
        let mut broker = Self::new(true)?;
        broker.spawn()?;
        for user in users {
            let output = Command::new(tansu_binary())
                .args(["user", "create", &user.name, &user.password])
                .args(["--broker", &broker.url()])
                .args(["--mechanism", user.mechanism.tansu_name()])
                .stdin(Stdio::null())
                .output()?;
            if !output.status.success() {
                return Err(std::io::Error::other(format!(
                    "tansu user create {} ({}) exited with {}: {}{}",
                    user.name,
                    user.mechanism.name(),
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr),
                )));
            }
        }
        broker.authentication = true;
        broker.restart()?;
        Ok(broker)
    }

    /// Starts it again on the same port (and, if durable, with the same data).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// `127.0.0.1:<port>`, the form of the `brokers` metadata.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything the broker has written to stdout and stderr so far, for failure messages.
    /// The broker process, while it runs (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("tansu.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let url = self.url();
        // tansu resolves a SQLite path against its working directory, so run it in the data dir.
        let storage = match &self.data {
            Some(_) => "sqlite://tansu.db".to_string(),
            None => "memory://tansu/".to_string(),
        };
        let log: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.path().join("tansu.log"))?;
        let mut command = Command::new(tansu_binary());
        if let Some(dir) = &self.data {
            command.current_dir(dir.path());
        }
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &storage]);
        if self.authentication {
            command.arg("--authentication");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("cannot start tansu (cargo install tansu --locked --features dynostore): {error}"),
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(std::io::Error::other(format!(
                    "tansu exited with {status} (storage {storage}; durable storage needs tansu built with --features dynostore,libsql, as tests/run-all.sh installs it): {}",
                    self.log()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other("tansu did not listen within 10s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
