//! The `motcua` binary itself: its help names every subcommand with an
//! example, and an unreachable service is one line on stderr and exit 1.
//! (Being an integration test of this package also makes
//! `cargo test --workspace` build the binary the end-to-end tests run.)

use std::process::Command;

fn motcua(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_motcua"))
        .args(args)
        .env_remove("MOTCUA_PROJECTION")
        .env_remove("MOTCUA_INTAKE")
        .output()
        .expect("run motcua")
}

#[test]
fn help_names_every_subcommand() {
    let out = motcua(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "report",
        "units",
        "rebuild",
        "parked",
        "watch-late",
        "import",
        "republish",
    ] {
        assert!(help.contains(sub), "{sub} missing from:\n{help}");
    }
    for sub in [
        "report",
        "units",
        "rebuild",
        "parked",
        "watch-late",
        "import",
        "republish",
    ] {
        let out = motcua(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("motcua "),
            "{sub} --help has an example:\n{text}"
        );
    }
}

#[test]
fn an_unreachable_projection_is_one_line_and_exit_1() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let url = format!("http://127.0.0.1:{port}");
    let out = motcua(&["--projection", &url, "rebuild", "--follow"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&url), "{err}");
}
