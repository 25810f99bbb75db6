//! `coordinator slurm`: an sbatch script for a job array of workers against
//! a coordinator, and its submission.
//!
//! Workers pull trials, so Slurm only has to start N identical ones. The
//! script asks Slurm to signal the batch shell (`--signal=B:USR1@SECONDS`)
//! before the time limit and to requeue a preempted task (`--requeue`); the
//! shell passes SIGUSR1 and SIGTERM on to the worker, which checkpoints and
//! hands its trials back as preempted, without using an attempt. A requeued
//! task is a fresh worker: the trials resume from their checkpoints on
//! whichever worker leases them next.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// The flags of `coordinator slurm`.
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmArgs {
    /// Worker tasks in the job array.
    #[arg(long, default_value_t = 4)]
    pub array: u32,
    /// At most this many tasks run at once [default: all].
    #[arg(long)]
    pub parallel: Option<u32>,
    /// GPUs per worker (`--gres=gpu:N`); with 1 or more, give `--device cuda:0`.
    #[arg(long, default_value_t = 0)]
    pub gpus: u32,
    /// CPU cores per worker.
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: u32,
    /// Memory per worker, e.g. 4G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Time limit per task, e.g. 1-00:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// The Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// The Slurm account.
    #[arg(long)]
    pub account: Option<String>,
    /// The job's name.
    #[arg(long, default_value = "exp025-workers")]
    pub job_name: String,
    /// Where each task writes its log (`exp025-JOB_TASK.log`).
    #[arg(long, default_value = "logs")]
    pub logs: PathBuf,
    /// Seconds before the time limit at which a worker is told to hand its
    /// trials back (SIGUSR1).
    #[arg(long, default_value_t = 120)]
    pub signal_seconds: u32,
    /// The command that starts a worker on the nodes.
    #[arg(long, default_value = "worker run")]
    pub worker_command: String,
    /// Write the script here (it is printed either way).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Submit it with sbatch and print the job id.
    #[arg(long)]
    pub submit: bool,
    /// The worker's flags, as `worker run` takes them; the token is read
    /// from `EXP025_TOKEN` in the submitting environment (sbatch exports it
    /// to the tasks), never written into the script.
    #[command(flatten)]
    pub worker: worker::runner::RunArgs,
}

/// Quotes a word for the shell where it needs it.
fn quoted(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The sbatch script.
pub fn script(args: &SlurmArgs) -> Result<String> {
    if args.array == 0 {
        bail!("--array must be at least 1");
    }
    let mut s = String::from("#!/bin/bash\n");
    let mut directive = |d: String| {
        let _ = writeln!(s, "#SBATCH {d}");
    };
    directive(format!("--job-name={}", quoted(&args.job_name)));
    let parallel = args.parallel.map_or(String::new(), |p| format!("%{p}"));
    directive(format!("--array=0-{}{parallel}", args.array - 1));
    directive("--ntasks=1".into());
    directive(format!("--cpus-per-task={}", args.cpus_per_task));
    if args.gpus > 0 {
        directive(format!("--gres=gpu:{}", args.gpus));
    }
    let optional = [
        ("mem", &args.mem),
        ("time", &args.time),
        ("partition", &args.partition),
        ("account", &args.account),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            directive(format!("--{name}={}", quoted(value)));
        }
    }
    let log = args.logs.join("exp025-%A_%a.log");
    directive(format!("--output={}", quoted(&log.display().to_string())));
    directive("--open-mode=append".into());
    directive("--requeue".into());
    directive(format!("--signal=B:USR1@{}", args.signal_seconds));
    let mut worker = args.worker.clone();
    worker.token = None;
    let name_given = worker.name.is_some();
    let mut command: Vec<String> = args.worker_command.split_whitespace().map(quoted).collect();
    command.extend(worker.to_args().iter().map(|a| quoted(a)));
    if !name_given {
        command.push("--name".into());
        command.push("\"slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"".into());
    }
    s.push_str(&format!(
        r#"
# Experiment 025 workers, written by `coordinator slurm`. Each task is one
# worker that pulls trials from the coordinator until none are left. Slurm
# signals this shell before the time limit (USR1) and at preemption (TERM);
# the shell passes the signal on and the worker checkpoints, hands its trials
# back without using an attempt and exits. A requeued task starts a fresh
# worker. The token comes from EXP025_TOKEN in the submitting environment.
set -u
export RAYON_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}"
{} &
worker=$!
trap 'kill -USR1 "$worker" 2>/dev/null' USR1
trap 'kill -TERM "$worker" 2>/dev/null' TERM
# wait returns early when a signal is trapped: wait again until it exits.
while kill -0 "$worker" 2>/dev/null; do
    wait "$worker"
    status=$?
done
exit "${{status:-0}}"
"#,
        command.join(" ")
    ));
    Ok(s)
}

/// Prints (and writes) the script, and submits it when asked.
pub fn run(args: &SlurmArgs) -> Result<()> {
    let text = script(args)?;
    print!("{text}");
    let path = match &args.out {
        Some(path) => path.clone(),
        None if args.submit => {
            std::env::temp_dir().join(format!("exp025-{}.sbatch", std::process::id()))
        }
        None => return Ok(()),
    };
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    if args.submit {
        std::fs::create_dir_all(&args.logs)
            .with_context(|| format!("creating the log directory {}", args.logs.display()))?;
        let out = std::process::Command::new("sbatch")
            .arg("--parsable")
            .arg(&path)
            .output()
            .context("running sbatch (is this a Slurm login node?)")?;
        if !out.status.success() {
            bail!(
                "sbatch refused the script: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout);
        let id = id.trim().split(';').next().unwrap_or_default();
        eprintln!(
            "submitted job array {id} ({} workers); logs in {}",
            args.array,
            args.logs.display()
        );
        println!("{id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        slurm: SlurmArgs,
    }

    fn script_of(args: &[&str]) -> String {
        let cli =
            Cli::try_parse_from(std::iter::once("slurm").chain(args.iter().copied())).unwrap();
        script(&cli.slurm).unwrap()
    }

    #[test]
    fn the_script_asks_for_what_the_flags_say_and_passes_signals_on() {
        let s = script_of(&[
            "--array",
            "40",
            "--parallel",
            "8",
            "--gpus",
            "1",
            "--cpus-per-task",
            "4",
            "--mem",
            "16G",
            "--time",
            "1-00:00:00",
            "--partition",
            "gpu",
            "--account",
            "lab",
            "--logs",
            "/scratch/logs",
            "--coordinator",
            "https://coord:50051",
            "--tls-ca",
            "/etc/ca.pem",
            "--device",
            "cuda:0",
            "--slots",
            "2",
            "--token",
            "exp025_secret",
        ]);
        for line in [
            "#SBATCH --array=0-39%8",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=16G",
            "#SBATCH --time=1-00:00:00",
            "#SBATCH --partition=gpu",
            "#SBATCH --account=lab",
            "#SBATCH --output=/scratch/logs/exp025-%A_%a.log",
            "#SBATCH --requeue",
            "#SBATCH --signal=B:USR1@120",
            "trap 'kill -USR1 \"$worker\" 2>/dev/null' USR1",
            "trap 'kill -TERM \"$worker\" 2>/dev/null' TERM",
        ] {
            assert!(s.lines().any(|l| l == line), "no {line:?} in\n{s}");
        }
        let command = s.lines().find(|l| l.starts_with("worker run ")).unwrap();
        for flag in [
            "--coordinator https://coord:50051",
            "--tls-ca /etc/ca.pem",
            "--device cuda:0",
            "--slots 2",
        ] {
            assert!(command.contains(flag), "{command}");
        }
        assert!(command.contains("--name \"slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\""));
        assert!(!s.contains("exp025_secret"), "the token is never written");
    }

    #[test]
    fn words_are_quoted_for_the_shell_where_needed() {
        assert_eq!(quoted("cuda:0"), "cuda:0");
        assert_eq!(quoted("my logs"), "'my logs'");
        assert_eq!(quoted("it's"), r"'it'\''s'");
        let s = script_of(&["--array", "2", "--job-name", "a b"]);
        assert!(s.contains("#SBATCH --job-name='a b'"));
        assert!(!s.contains("--gres"), "no GPUs unless asked");
    }
}
