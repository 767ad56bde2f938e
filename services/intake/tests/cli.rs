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
