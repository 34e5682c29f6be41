//! A real Kafka-protocol broker (tansu, in-memory storage) on a free loopback port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct KafkaBroker {
    port: u16,
    child: Option<Child>,
    /// Where a durable broker keeps its data (SQLite), kept across restarts.
    data: Option<tempfile::TempDir>,
}

/// The tansu binary: `TANSU_BIN` (set by tests/run-all.sh), else `tansu` on the PATH.
fn tansu_binary() -> std::ffi::OsString {
    std::env::var_os("TANSU_BIN").unwrap_or_else(|| "tansu".into())
}

impl KafkaBroker {
    /// Starts `tansu broker` with in-memory storage.
    pub fn start() -> std::io::Result<Self> {
        let mut broker = Self {
            port: crate::free_port(),
            child: None,
            data: None,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// Starts a broker whose messages and offsets survive a restart (SQLite storage; needs
    /// tansu built with `--features dynostore,libsql`, as tests/run-all.sh installs it).
    pub fn start_durable() -> std::io::Result<Self> {
        let mut broker = Self {
            port: crate::free_port(),
            child: None,
            data: Some(tempfile::tempdir()?),
        };
        broker.spawn()?;
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

    fn spawn(&mut self) -> std::io::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // tansu resolves a SQLite path against its working directory, so run it in the data dir.
        let storage = match &self.data {
            Some(_) => "sqlite://tansu.db".to_string(),
            None => "memory://tansu/".to_string(),
        };
        let mut command = Command::new(tansu_binary());
        if let Some(dir) = &self.data {
            command.current_dir(dir.path());
        }
        let mut child = command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &storage])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
                    "tansu exited with {status} (storage {storage}; durable storage needs tansu built with --features dynostore,libsql, as tests/run-all.sh installs it)"
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
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
