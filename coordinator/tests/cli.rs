//! The `coordinator` binary as a user runs it: make tokens, serve on SQLite,
//! submit the quickstart sweep, look at it, refuse a bad file, cancel; and
//! every refusal of a missing, wrong, revoked or under-privileged token.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `coordinator serve` on an ephemeral port; returns it and its URL.
fn serve(db: &str) -> (Server, String) {
    let mut child = Command::new(COORDINATOR)
        .args(["serve", "--database-url", db, "--listen", "127.0.0.1:0"])
        .env_remove("EXP025_TOKEN")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Server(child), format!("http://{addr}"))
}

/// Runs the binary with `args`; returns success, stdout and stderr.
fn coordinator(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(COORDINATOR)
        .args(args)
        .env_remove("EXP025_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A client command against `url` with `token`.
fn as_token(url: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = args.to_vec();
    all.extend(["--coordinator", url, "--token", token]);
    coordinator(&all)
}

/// `coordinator token create`: the token it prints.
fn token(db: &str, role: &str, name: &str) -> String {
    let (ok, out, err) = coordinator(&[
        "token",
        "create",
        "--role",
        role,
        "--name",
        name,
        "--database-url",
        db,
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("shown only now"), "{err}");
    out.trim().to_string()
}

#[test]
fn submit_status_and_cancel_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let alice = token(&db, "user", "alice");
    let (_server, url) = serve(&db);
    let run = |url: &str, args: &[&str]| as_token(url, &alice, args);
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/../sweeps/quickstart.yaml");

    let (ok, out, err) = run(&url, &["submit", quickstart]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "submitted sweep 1 (quickstart): 4 trials queued"
    );

    let (ok, out, _) = run(&url, &["status", "--json"]);
    assert!(ok);
    let sweeps: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sweeps[0]["queued"], 4);
    assert_eq!(sweeps[0]["status"], "active");

    let (ok, out, _) = run(&url, &["status", "1"]);
    assert!(ok);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("queued") && l.contains("gen_init="))
            .count(),
        4,
        "{out}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\ndataset: {generated: {seed: 1, train: 8, test: 4}}\nparameters:\n  lr: {value: -1}\n").unwrap();
    let (ok, _, err) = run(&url, &["submit", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("line 4, column 15: parameters.lr.value: must be a positive number"),
        "{err}"
    );

    let (ok, out, _) = run(&url, &["cancel", "1"]);
    assert!(ok);
    assert_eq!(
        out.trim(),
        "cancelled sweep 1 (quickstart): 4 trials cancelled"
    );
    let (_, out, _) = run(&url, &["status"]);
    assert!(out.contains("cancelled"), "{out}");

    let (ok, _, err) = run(&url, &["status", "99"]);
    assert!(!ok && err.contains("sweep 99 not found"), "{err}");
}

#[test]
fn tokens_are_made_listed_revoked_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let user = token(&db, "user", "alice");
    let reader = token(&db, "reader", "dashboard");
    let (_server, url) = serve(&db);
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/../sweeps/quickstart.yaml");

    let (ok, _, err) = coordinator(&["status", "--coordinator", &url]);
    assert!(
        !ok && err.contains("ListSweeps needs a bearer token"),
        "{err}"
    );
    let (ok, _, err) = as_token(&url, "exp025_nonsense", &["status"]);
    assert!(!ok && err.contains("unknown token"), "{err}");
    let (ok, _, err) = as_token(&url, &reader, &["submit", quickstart]);
    assert!(
        !ok && err.contains("token \"dashboard\" has role reader; Submit needs user"),
        "{err}"
    );
    let (ok, out, _) = as_token(&url, &reader, &["status", "--json"]);
    assert!(ok);
    assert_eq!(out.trim(), "[]", "the refused submit stored nothing");
    let (ok, _, err) = as_token(&url, &user, &["submit", quickstart]);
    assert!(ok, "{err}");

    let (ok, out, _) = coordinator(&["token", "list", "--database-url", &db]);
    assert!(ok);
    assert!(out.contains("alice") && out.contains("dashboard") && out.contains("reader"));
    assert!(
        !out.contains(&user) && !out.contains(&reader),
        "tokens are never shown again"
    );
    let mut stored = Vec::new();
    for file in ["tokens.db", "tokens.db-wal"] {
        stored.extend(std::fs::read(dir.path().join(file)).unwrap_or_default());
    }
    assert!(
        !stored.windows(user.len()).any(|w| w == user.as_bytes()),
        "the database keeps only a hash"
    );

    let (ok, out, _) = coordinator(&["token", "revoke", "alice", "--database-url", &db]);
    assert!(ok && out.contains("revoked"), "{out}");
    let (ok, _, err) = as_token(&url, &user, &["cancel", "1"]);
    assert!(!ok && err.contains("token \"alice\" was revoked"), "{err}");
    let (ok, _, err) = coordinator(&["token", "revoke", "alice", "--database-url", &db]);
    assert!(
        !ok && err.contains("no unrevoked token named \"alice\""),
        "{err}"
    );
    let (ok, _, err) = coordinator(&[
        "token",
        "create",
        "--role",
        "user",
        "--name",
        "alice",
        "--database-url",
        &db,
    ]);
    assert!(!ok && err.contains("exists already"), "{err}");

    let (ok, _, err) = coordinator(&[
        "serve",
        "--database-url",
        &db,
        "--listen",
        "0.0.0.0:0",
        "--insecure-no-auth",
    ]);
    assert!(
        !ok && err.contains("--insecure-no-auth is refused on 0.0.0.0:0"),
        "{err}"
    );
}
