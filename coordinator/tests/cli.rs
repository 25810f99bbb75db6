//! The `coordinator` binary as a user runs it: serve on SQLite, submit the
//! quickstart sweep, look at it, refuse a bad file, cancel.

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

fn run(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(COORDINATOR)
        .args(args)
        .args(["--coordinator", url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn submit_status_and_cancel_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let (_server, url) = serve(&db);
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
