//! The real binary, `certkeeper controller`, against a stand-in API server that is slow to
//! answer: SIGTERM while it connects, and while its first lists are unanswered. Each time the
//! process exits cleanly (status 0) within a second (issue 20: it hung until SIGKILL).

#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the stand-in has been asked so far.
#[derive(Default)]
struct Asked {
    versions: AtomicUsize,
    lists: AtomicUsize,
}

const VERSION: &str = r#"{"major":"1","minor":"33","gitVersion":"v1.33.0","gitCommit":"0","gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.24","compiler":"gc","platform":"linux/amd64"}"#;

/// Answers `/version` when `answer_version`; never answers anything else (the connection
/// stays open, as a slow API server's does).
fn serve_connection(stream: TcpStream, asked: Arc<Asked>, answer_version: bool) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        // The rest of the head.
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        if path.starts_with("/version") {
            asked.versions.fetch_add(1, Ordering::SeqCst);
            if answer_version {
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{VERSION}",
                    VERSION.len()
                );
                if writer.write_all(response.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
        } else {
            asked.lists.fetch_add(1, Ordering::SeqCst);
        }
        // Held: never answered.
        std::thread::sleep(Duration::from_secs(3600));
        return;
    }
}

/// A stand-in on a free port; what it has been asked.
fn stand_in(answer_version: bool) -> (u16, Arc<Asked>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(Asked::default());
    let seen = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let asked = seen.clone();
            std::thread::spawn(move || serve_connection(stream, asked, answer_version));
        }
    });
    (port, asked)
}

/// `certkeeper controller` against the stand-in on `port`.
fn controller(port: u16, dir: &std::path::Path) -> Child {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: stand-in\n\
             clusters: [{{name: stand-in, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
             users: [{{name: nobody, user: {{}}}}]\n\
             contexts: [{{name: stand-in, context: {{cluster: stand-in, user: nobody}}}}]\n"
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args([
            "controller",
            "--metrics-bind-address",
            "127.0.0.1:0",
            "--pki-bind-address",
            "127.0.0.1:0",
            "--cluster-resource-namespace",
            "certkeeper-system",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (10 s at most) until `phase` holds, sends SIGTERM, and returns how the process ended
/// within a second, or why not.
fn sigterm_when(child: &mut Child, phase: impl Fn() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !phase() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err("the phase was never reached".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let signalled = Instant::now();
    while signalled.elapsed() < Duration::from_secs(1) {
        if let Some(status) = child.try_wait().unwrap() {
            return match status.success() {
                true => Ok(()),
                false => Err(format!("ended by {status}, not a clean exit")),
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err("still running a second after SIGTERM".into())
}

#[test]
fn sigterm_while_connecting_exits_cleanly_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (port, asked) = stand_in(false);
    let mut child = controller(port, dir.path());
    let outcome = sigterm_when(&mut child, || asked.versions.load(Ordering::SeqCst) > 0);
    assert_eq!(outcome, Ok(()));
}

#[test]
fn sigterm_while_the_first_lists_are_unanswered_exits_cleanly_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (port, asked) = stand_in(true);
    let mut child = controller(port, dir.path());
    let outcome = sigterm_when(&mut child, || asked.lists.load(Ordering::SeqCst) >= 5);
    assert_eq!(outcome, Ok(()));
}
