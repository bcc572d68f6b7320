//! The standalone `gateway` binary: start-up lines, both ports
//! answering, a required secret, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

fn spawn(envs: &[(&str, &str)]) -> Child {
    let mut command = Command::new(BIN);
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env_remove("ARTHAS_INTERNAL_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    command.spawn().expect("the gateway binary starts")
}

/// One HTTP/1.0-style request over a plain socket; returns the status line and body.
fn request(addr: &str, head: &str, body: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn it_prints_both_addresses_serves_them_and_exits_cleanly_on_sigterm() {
    let mut child = spawn(&[
        ("ARTHAS_INTERNAL_SECRET", "bin-secret"),
        ("ARTHAS_LOG", "warn"),
    ]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let public = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_owned();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let internal = line
        .trim()
        .strip_prefix("internal on http://")
        .unwrap_or_else(|| panic!("second line: {line:?}"))
        .to_owned();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let admin = line
        .trim()
        .strip_prefix("admin on http://")
        .unwrap_or_else(|| panic!("third line: {line:?}"))
        .to_owned();

    let (status, body) = request(&public, "GET /ping HTTP/1.1", "");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "pong");
    let (status, _) = request(&internal, "POST /internal/v1/rooms HTTP/1.1", "{}");
    assert!(status.contains("401"), "{status}");
    let (status, body) = request(
        &internal,
        "POST /internal/v1/rooms HTTP/1.1\r\nAuthorization: Bearer bin-secret",
        "{}",
    );
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("\"room\""));
    let room_id = body
        .split("\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no room id in {body}"))
        .to_owned();

    // The admin port: probes, and metrics of what just happened (route
    // templates and outcomes, never the room id).
    let (status, body) = request(&admin, "GET /healthz HTTP/1.1", "");
    assert!(status.contains("200"), "{status} {body}");
    let (status, body) = request(&admin, "GET /readyz HTTP/1.1", "");
    assert!(status.contains("200"), "{status} {body}");
    let (status, metrics) = request(&admin, "GET /metrics HTTP/1.1", "");
    assert!(status.contains("200"), "{status}");
    for sample in [
        r#"arthas_gateway_http_requests_total{api="public",route="/ping",status="200"} 1"#,
        r#"arthas_gateway_http_requests_total{api="internal",route="/internal/v1/rooms",status="401"} 1"#,
        r#"arthas_gateway_http_requests_total{api="internal",route="/internal/v1/rooms",status="200"} 1"#,
        r#"arthas_gateway_operations_total{operation="create_room",outcome="ok"} 1"#,
        r#"arthas_gateway_http_request_duration_seconds_count{api="internal",route="/internal/v1/rooms"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == sample),
            "no {sample} in:\n{metrics}"
        );
    }
    assert!(!metrics.contains(&room_id), "the room id is in the metrics");

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn it_refuses_to_start_without_an_internal_secret() {
    let child = spawn(&[]);
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("internal-secret"));
}

#[test]
fn it_refuses_a_short_ticket_secret() {
    let child = spawn(&[
        ("ARTHAS_INTERNAL_SECRET", "s"),
        ("ARTHAS_TICKET_SECRET", "short"),
    ]);
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ticket-secret"));
}
