//! The binary's edge: bad configuration exits at once with a clear reason.
//! (The flags both services share are tested in the `server` crate.)

use std::process::Command;

fn intake(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .env_remove("INTAKE_DATABASE_URL")
        .env("RUST_LOG", "error")
        .output()
        .expect("run the intake binary")
}

#[test]
fn a_failed_start_is_one_line_naming_the_binary_and_the_expected_forms() {
    let out = intake(&[
        "--database-url",
        "mysql://localhost/x",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("intake: "), "{stderr}");
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    assert!(stderr.contains("postgres://"), "{stderr}");
}

#[test]
fn a_batch_or_clock_offset_out_of_form_names_the_flag() {
    for (flag, value) in [("--max-batch", "10001"), ("--clock-offset", "tomorrow")] {
        let out = intake(&[flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[test]
fn help_shows_an_example_and_the_shared_flags() {
    let out = intake(&["--help"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "Example:",
        "INTAKE_DATABASE_URL",
        "MOTCUA_HOLIDAYS",
        "NATS_URL",
        "MOTCUA_SHUTDOWN_TIMEOUT",
    ] {
        assert!(stdout.contains(expected), "{expected} in {stdout}");
    }
}

#[test]
fn a_non_loopback_address_without_tls_and_tokens_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = format!("sqlite://{}", dir.path().join("intake.db").display());
    let out = intake(&["--listen", "0.0.0.0:0", "--database-url", &db]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for named in ["0.0.0.0", "--tls-cert", "--auth-tokens", "--insecure"] {
        assert!(stderr.contains(named), "{named} in {stderr}");
    }
}

#[test]
fn with_insecure_it_serves_a_non_loopback_address_and_warns() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = format!("sqlite://{}", dir.path().join("intake.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["--listen", "0.0.0.0:0", "--database-url", &db])
        // No NATS answers there: intake serves without it.
        .args(["--nats-url", "nats://127.0.0.1:1"])
        .env("MOTCUA_INSECURE", "true")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start intake");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut warned = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let serving = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) if line.contains("intake serving") => break true,
            Ok(line) => warned |= line.contains("WARN") && line.contains("--insecure"),
            Err(_) => break false,
        }
    };
    drop(child.kill());
    drop(child.wait());
    assert!(serving, "intake served with --insecure");
    assert!(warned, "and said it serves without TLS and authentication");
}
