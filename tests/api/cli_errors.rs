//! Settings that cannot work: one clear line on stderr and exit code 2.

use std::net::TcpListener;

use crate::helpers::{keyframe, Backend, TestDb};

fn one_error_line(run: &crate::helpers::Run) -> String {
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {run:?}");
    assert!(lines[0].starts_with("error: "), "{run:?}");
    lines[0].to_owned()
}

#[tokio::test]
async fn a_bad_database_url_exits_2() {
    for url in ["mysql://db/keyframe", "sqlite://"] {
        let line = one_error_line(&keyframe(url, &["tenant", "list"], None).await);
        assert!(line.contains("--database-url"), "{line}");
    }
}

#[tokio::test]
async fn a_database_that_is_down_exits_2() {
    // Nothing listens on port 1; the password must not be echoed.
    let run = keyframe(
        "postgres://kf:hunter2@127.0.0.1:1/keyframe",
        &["tenant", "list"],
        None,
    )
    .await;
    let line = one_error_line(&run);
    assert!(line.contains("cannot connect to the database"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");

    let dir = tempfile::tempdir().expect("dir");
    let missing = dir
        .path()
        .join("no/such/dir/keyframe.db")
        .display()
        .to_string();
    let line = one_error_line(&keyframe(&missing, &["serve"], None).await);
    assert!(line.contains("cannot connect to the database"), "{line}");

    let json = keyframe(
        "postgres://127.0.0.1:1/keyframe",
        &["--json", "tenant", "list"],
        None,
    )
    .await;
    assert_eq!(json.code, 2);
    let error: serde_json::Value = serde_json::from_str(json.stderr.trim()).expect("JSON error");
    assert_eq!(error["kind"], "unavailable");
}

#[tokio::test]
async fn a_bad_listen_address_exits_2() {
    let db = TestDb::new(Backend::Sqlite);
    let line =
        one_error_line(&keyframe(&db.url, &["serve", "--listen", "not-an-address"], None).await);
    assert!(line.contains("--listen"), "{line}");

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let line = one_error_line(&keyframe(&db.url, &["serve", "--listen", &address], None).await);
    assert!(line.contains("cannot listen"), "{line}");
}

#[tokio::test]
async fn usage_errors_keep_clap_format_and_exit_2() {
    let db = TestDb::new(Backend::Sqlite);
    for args in [
        &["tenant", "create", "acme"][..],
        &["--max-body-bytes", "lots", "tenant", "list"],
        &["frobnicate"],
    ] {
        let run = keyframe(&db.url, args, None).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{run:?}");
    }
    let issuer = keyframe(&db.url, &["serve", "--issuer", "ftp://x"], None).await;
    assert!(one_error_line(&issuer).contains("--issuer"));
}
