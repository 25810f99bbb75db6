//! docker-compose.yml read as YAML (no Docker engine runs here): the
//! topology the README promises, and worker commands this binary accepts.
//! The same topology runs as processes in tests/distributed.rs.

use std::path::PathBuf;
use std::process::Command;

use serde_yaml_ng::Value;

fn compose() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_compose_file_describes_the_cluster() {
    let c = compose();
    let s = &c["services"];
    let pg = &s["postgres"];
    assert!(pg["healthcheck"]["test"].is_sequence());
    assert!(strings(&pg["volumes"])[0].ends_with(":/var/lib/postgresql/data"));
    let coordinator = &s["coordinator"];
    assert_eq!(
        coordinator["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert!(
        strings(&coordinator["command"])
            .iter()
            .any(|a| a.starts_with("postgres://"))
    );
    assert!(s["worker-cpu"]["deploy"]["replicas"].as_u64().unwrap() >= 2);
    for worker in ["worker-cpu", "worker-gpu"] {
        let token = s[worker]["environment"]["EXP025_TOKEN"].as_str().unwrap();
        assert_eq!(token, "${EXP025_WORKER_TOKEN:-}", "{worker}");
    }
    let devices = &s["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(devices["driver"].as_str(), Some("nvidia"));
    assert_eq!(strings(&devices["capabilities"]), ["gpu"]);
    for dockerfile in
        ["coordinator", "worker-gpu"].map(|n| s[n]["build"]["dockerfile"].as_str().unwrap())
    {
        assert!(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(dockerfile)
                .exists(),
            "{dockerfile}"
        );
    }
}

/// What `worker run --help` says: every flag and environment variable.
fn worker_run_help() -> String {
    let help = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    String::from_utf8(help.stdout).unwrap()
}

#[test]
fn the_worker_commands_are_ones_this_worker_accepts() {
    let help = worker_run_help();
    let c = compose();
    for name in ["worker-cpu", "worker-gpu"] {
        let command = strings(&c["services"][name]["command"]);
        assert_eq!(command[..2], ["worker", "run"], "{name}");
        for flag in command.iter().filter(|a| a.starts_with("--")) {
            assert!(
                help.contains(flag.as_str()),
                "{name}: worker run has no {flag}"
            );
        }
    }
}

/// Every document of a YAML file of several.
fn documents(path: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn the_kubernetes_workers_run_this_worker_from_the_images_docker_builds() {
    let help = worker_run_help();
    let job = &documents("deploy/kubernetes/base/workers.yaml")[0];
    assert_eq!(job["spec"]["completionMode"].as_str(), Some("Indexed"));
    let rule = &job["spec"]["podFailurePolicy"]["rules"][0];
    assert_eq!(rule["action"].as_str(), Some("Ignore"));
    assert_eq!(
        rule["onPodConditions"][0]["type"].as_str(),
        Some("DisruptionTarget")
    );
    let pod = &job["spec"]["template"]["spec"];
    let worker = &pod["containers"][0];
    let command = strings(&worker["command"]);
    assert_eq!(command[..2], ["worker", "run"]);
    for flag in command.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag.as_str()), "worker run has no {flag}");
    }
    for env in ["EXP025_TOKEN", "EXP025_WORKER_NAME"] {
        assert!(help.contains(env), "worker run reads no {env}");
    }
    assert_eq!(
        worker["resources"]["limits"]["nvidia.com/gpu"].as_u64(),
        Some(1)
    );
    assert_eq!(
        pod["tolerations"][0]["key"].as_str(),
        Some("nvidia.com/gpu")
    );

    // The images are the ones docker/ builds, as docker-compose.yml names them.
    let services = &compose()["services"];
    let built = |name: &str| services[name]["image"].as_str().unwrap().to_string();
    assert_eq!(worker["image"].as_str().unwrap(), built("worker-gpu"));
    let coordinator = &documents("deploy/kubernetes/base/coordinator.yaml")[1];
    let container = &coordinator["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"].as_str().unwrap(), built("coordinator"));
    assert_eq!(
        container["readinessProbe"]["grpc"]["port"].as_u64(),
        Some(50051)
    );
    // The dashboard listens on the port the container and the Service name.
    let command = strings(&container["command"]);
    let at = command.iter().position(|a| a == "--dashboard").unwrap();
    assert_eq!(command[at + 1], "0.0.0.0:8080");
    let port = &container["ports"][1];
    assert_eq!(
        (port["name"].as_str(), port["containerPort"].as_u64()),
        (Some("http"), Some(8080))
    );
    let service = &documents("deploy/kubernetes/base/coordinator.yaml")[0];
    let port = &service["spec"]["ports"][1];
    assert_eq!(
        (port["port"].as_u64(), port["targetPort"].as_str()),
        (Some(8080), Some("http"))
    );
    // Compose publishes it on the host's loopback only (plain HTTP).
    let coordinator = &services["coordinator"];
    let command = strings(&coordinator["command"]);
    let at = command.iter().position(|a| a == "--dashboard").unwrap();
    assert_eq!(command[at + 1], "0.0.0.0:8080");
    assert!(strings(&coordinator["ports"]).contains(&"127.0.0.1:8080:8080".to_string()));
}
