//! The binary's edge: bad configuration exits at once with a clear reason.
//! (The flags both services share are tested in the `server` crate.)

use std::process::{Command, Output};

fn projection(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_projection"))
        .args(args)
        .env_remove("PROJECTION_DATABASE_URL")
        .env("RUST_LOG", "error")
        .output()
        .expect("run the projection binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unusable_read_store_is_one_line_naming_the_binary() {
    let out = projection(&["--database-url", "mysql://localhost/x"]);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert_eq!(said.trim_end().lines().count(), 1, "{said}");
    assert!(said.starts_with("projection: "), "{said}");
    assert!(said.contains("unsupported database URL"), "{said}");
}

#[test]
fn the_nats_buffer_and_batch_limits_name_their_flag() {
    let buffer = projection(&["--nats-buffer", "0"]);
    assert!(
        stderr(&buffer).contains("--nats-buffer"),
        "{}",
        stderr(&buffer)
    );
    let batch = projection(&["--max-batch", "200001"]);
    assert!(stderr(&batch).contains("--max-batch"), "{}", stderr(&batch));
    assert_eq!(
        (buffer.status.code(), batch.status.code()),
        (Some(2), Some(2))
    );
}

#[test]
fn help_names_the_consumer_and_the_stream() {
    let out = projection(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<_> = [
        "Example:",
        "PROJECTION_CONSUMER",
        "MOTCUA_STREAM",
        "MOTCUA_LOG_FORMAT",
    ]
    .into_iter()
    .filter(|name| !help.contains(name))
    .collect();
    assert!(missing.is_empty(), "{missing:?} missing from {help}");
}
