//! The working-time calendar's configuration: a bad holidays file or bad
//! office hours stop intake at start-up with a reason naming the problem.

use std::process::Command;

fn intake(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "mysql://unused/x",
        ])
        .env_remove("MOTCUA_HOLIDAYS")
        .env_remove("MOTCUA_OFFICE_HOURS")
        .env("RUST_LOG", "error")
        .output()
        .expect("run the intake binary")
}

#[test]
fn a_missing_holidays_file_is_named() {
    let out = intake(&["--holidays", "/nonexistent/holidays.toml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holidays file /nonexistent/holidays.toml"),
        "{stderr}"
    );
}

#[test]
fn a_bad_holidays_file_names_the_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("holidays.toml");
    std::fs::write(&path, "[2025]\noff = [\"2025-02-30\"]\n").expect("write");
    let out = intake(&["--holidays", path.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    // Checked before the database: the calendar error comes first.
    assert!(!stderr.contains("unsupported database URL"), "{stderr}");
}

#[test]
fn bad_office_hours_are_named() {
    let out = intake(&["--office-hours", "07:00-11:30"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--office-hours"), "{stderr}");
}
