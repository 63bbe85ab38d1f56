//! The daemon binary as a child process: started with an optional crash point (`CLOUDWARDEN_PAUSE_AT`), its
//! log lines read as they come, killed with SIGKILL or stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cloudwarden::crash::PAUSE_ENV;

pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

pub fn start(config: &Path, pause: Option<&str>) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudwarden"));
    cmd.args(["run", "--config"]).arg(config).stderr(Stdio::piped()).stdout(Stdio::null());
    cmd.envs([
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("RUST_LOG", "info"),
    ]);
    match pause {
        Some(p) => cmd.env(PAUSE_ENV, p),
        None => cmd.env_remove(PAUSE_ENV),
    };
    let mut child = cmd.spawn().expect("start the daemon");
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running { child, lines }
}

impl Running {
    /// What the daemon has logged and nobody has read yet.
    pub fn log(&self) -> String {
        let mut out = String::new();
        while let Ok(l) = self.lines.try_recv() {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    /// Waits for a log line containing `needle`; fails after `secs`, showing what was logged.
    pub fn wait_for(&self, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains(needle) => return,
                Ok(l) => seen.push(l),
                Err(_) => {}
            }
        }
        panic!("no log line with {needle:?} within {secs}s:\n{}", seen.join("\n"));
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the daemon stopped with {status}");
    }
}
