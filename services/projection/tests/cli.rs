//! The binary's edge: bad configuration exits at once with a clear reason.

use std::process::Command;

fn projection(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_projection"))
        .args(args)
        .env_remove("PROJECTION_DATABASE_URL")
        .env("RUST_LOG", "error")
        .output()
        .expect("run the projection binary")
}

#[test]
fn an_unsupported_database_url_is_refused_with_the_expected_forms() {
    let out = projection(&[
        "--database-url",
        "mysql://localhost/x",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    assert!(stderr.contains("postgres://"), "{stderr}");
}

#[test]
fn out_of_range_values_name_the_flag() {
    let out = projection(&["--max-batch", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-batch"), "{stderr}");
    let out = projection(&["--shutdown-timeout", "soon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
}

#[test]
fn help_shows_an_example() {
    let out = projection(&["--help"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Example:") && stdout.contains("PROJECTION_DATABASE_URL"),
        "{stdout}"
    );
}
