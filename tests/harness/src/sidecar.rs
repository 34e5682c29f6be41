//! An `outrigger run` process on free ports, with its log captured for assertions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the `outrigger` binary built by this workspace (`OUTRIGGER_BIN` overrides).
pub fn outrigger_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OUTRIGGER_BIN") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile).join("outrigger")
}

/// Builds the command line for one sidecar.
pub struct SidecarBuilder {
    app_id: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    close_output: bool,
}

impl SidecarBuilder {
    pub fn new(app_id: &str) -> Self {
        Self {
            app_id: app_id.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            close_output: false,
        }
    }

    /// Closes the reading ends of the sidecar's stdout and stderr once it reported its ports, as
    /// a supervisor that went away would: every later log line meets a broken pipe.
    pub fn close_output_after_start(mut self) -> Self {
        self.close_output = true;
        self
    }

    pub fn resources_path(mut self, path: &Path) -> Self {
        self.args.push("--resources-path".into());
        self.args.push(path.display().to_string());
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(outrigger_binary());
        command
            .args([
                "run",
                "--app-id",
                &self.app_id,
                "--dapr-http-port",
                "0",
                "--dapr-grpc-port",
                "0",
                "--mesh-port",
                "0",
                "--admin-port",
                "0",
            ])
            .args(&self.args)
            .env_remove("DAPR_API_TOKEN")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null());
        command
    }

    /// Runs the command to completion (for start-up failures): exit status, stdout and stderr.
    pub fn run_to_exit(&self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn outrigger");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let output = child.wait_with_output().expect("output");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
                return (status, text);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("outrigger did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the sidecar and waits for its "listening" line, which carries the chosen ports.
    pub fn spawn(&self) -> Sidecar {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "spawn {} (build it with cargo build): {error}",
                    outrigger_binary().display()
                )
            });
        let log = Arc::new(Mutex::new(String::new()));
        let (ports_sender, ports) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for (stream, is_stdout) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, true),
            (Box::new(stderr), false),
        ] {
            let log = Arc::clone(&log);
            let ports_sender = ports_sender.clone();
            let close_output = self.close_output;
            if close_output && !is_stdout {
                // Nothing is written to stderr before the ports line; close it at once.
                drop(stream);
                continue;
            }
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let ports = parse_ports(&line).filter(|_| is_stdout);
                    {
                        let mut log = log.lock().expect("log");
                        log.push_str(&line);
                        log.push('\n');
                    }
                    if let Some(found) = ports {
                        let _ = ports_sender.send(found);
                        if close_output {
                            // Returning drops the stream: the pipe's reading end is closed.
                            return;
                        }
                    }
                }
            });
        }
        match ports.recv_timeout(Duration::from_secs(20)) {
            Ok(ports) => Sidecar {
                child,
                http_port: ports.http,
                grpc_port: ports.grpc,
                mesh_port: ports.mesh,
                admin_port: ports.admin,
                log,
            },
            Err(_) => {
                let _ = child.kill();
                let log = log.lock().expect("log").clone();
                panic!("outrigger did not report its ports within 20s; log:\n{log}");
            }
        }
    }
}

/// The ports a sidecar reports on its listening line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ports {
    http: u16,
    grpc: u16,
    mesh: u16,
    admin: u16,
}

fn parse_ports(line: &str) -> Option<Ports> {
    if !line.contains("outrigger sidecar listening") {
        return None;
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .and_then(|value| {
                value
                    .trim_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .ok()
            })
    };
    Some(Ports {
        http: field("http_port=")?,
        grpc: field("grpc_port=")?,
        mesh: field("mesh_port=")?,
        admin: field("admin_port=")?,
    })
}

/// A running sidecar process; killed on drop.
pub struct Sidecar {
    child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    pub mesh_port: u16,
    pub admin_port: u16,
    log: Arc<Mutex<String>>,
}

impl Sidecar {
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The process id, for reading `/proc/<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends a signal (e.g. "TERM", "INT") with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::{Ports, parse_ports};

    #[test]
    fn parses_the_listening_line() {
        let line = "2026-11-22T00:12:34Z  INFO outrigger sidecar listening app_id=demo http_port=38753 grpc_port=39681 mesh_port=40001 admin_port=40002";
        assert_eq!(
            parse_ports(line),
            Some(Ports {
                http: 38753,
                grpc: 39681,
                mesh: 40001,
                admin: 40002
            })
        );
        let json = r#"{"message":"outrigger sidecar listening","app_id":"demo","http_port":1,"grpc_port":2}"#;
        assert_eq!(parse_ports(json), None);
    }
}
