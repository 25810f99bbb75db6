use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use coordinator::auth::{self, Auth, Gate, Role};
use coordinator::lease::{self, Policy};
#[cfg(feature = "one-machine")]
use coordinator::one_machine::{self, LocalRun, Outcome};
use coordinator::report::{self, Format};
use coordinator::server::{self, Tls};
use coordinator::stats::Alternative;
use coordinator::store::Store;
use coordinator::telemetry;
use proto::client::AuthChannel;
use proto::v1 as pb;
use proto::v1::sweep_service_client::SweepServiceClient;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Experiment 025 sweep coordinator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Client {
    /// The coordinator to talk to (https://... for TLS).
    #[arg(
        long,
        env = "EXP025_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    coordinator: String,
    /// A token of role user (or reader, for reading), from `coordinator
    /// token create`.
    #[arg(long, env = "EXP025_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The CA certificate (PEM) that signed the coordinator's TLS
    /// certificate [default: the system's roots].
    #[arg(long, env = "EXP025_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[cfg(feature = "one-machine")]
    /// Run a whole sweep on this machine: the coordinator on 127.0.0.1 over
    /// a SQLite file, local worker processes, progress bars, and the results
    /// and t-tests at the end. Ctrl-C stops cleanly; the same command again
    /// resumes the sweep.
    Run {
        /// The sweep file, e.g. sweeps/quickstart.yaml.
        file: PathBuf,
        /// Worker processes [default: one per CPU core].
        #[arg(long)]
        workers: Option<usize>,
        /// cpu or cuda:N (CUDA needs a build with --features cuda).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Where sweeps, trials and metrics are kept.
        #[arg(
            long,
            env = "EXP025_DATABASE_URL",
            default_value = "sqlite://exp025.db"
        )]
        database_url: String,
        /// The worker processes' log.
        #[arg(long, default_value = "exp025-workers.log")]
        log: PathBuf,
        /// Serve the dashboard at http://ADDR/ while the sweep runs; its
        /// address is printed [default: 127.0.0.1:8080, or a free port when
        /// that one is taken].
        #[arg(long)]
        dashboard: Option<SocketAddr>,
        /// Serve no dashboard.
        #[arg(long)]
        no_dashboard: bool,
    },
    /// Run the coordinator service.
    Serve {
        /// postgres://USER@HOST/DB for clusters, or sqlite://FILE on one machine.
        #[arg(
            long,
            env = "EXP025_DATABASE_URL",
            default_value = "sqlite://exp025.db"
        )]
        database_url: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Seconds a lease lasts without a progress report.
        #[arg(long, default_value_t = lease::DEFAULT_LEASE_SECONDS)]
        lease_seconds: u64,
        /// Leases a trial may use before it is failed.
        #[arg(long, default_value_t = lease::DEFAULT_MAX_ATTEMPTS)]
        max_attempts: u32,
        /// The server's TLS certificate chain (PEM); with --tls-key, serve
        /// TLS only.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve without tokens: anyone who reaches the port may do
        /// anything. Refused unless --listen is a loopback address.
        #[arg(long)]
        insecure_no_auth: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP:
        /// keep it on a private network), e.g. 0.0.0.0:9464.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// Serve the dashboard at http://ADDR/ (plain HTTP; it asks for a
        /// reader token unless --insecure-no-auth) [default: 127.0.0.1:8080,
        /// or a free port when that one is taken].
        #[arg(long)]
        dashboard: Option<SocketAddr>,
        /// Serve no dashboard.
        #[arg(long)]
        no_dashboard: bool,
    },
    /// Make, list and revoke the bearer tokens calls must carry.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Submit a sweep file.
    Submit {
        file: PathBuf,
        #[command(flatten)]
        client: Client,
    },
    /// Show all sweeps, or one sweep's trials.
    Status {
        sweep: Option<i64>,
        #[command(flatten)]
        client: Client,
    },
    /// Cancel a sweep's queued and running trials.
    Cancel {
        sweep: i64,
        #[command(flatten)]
        client: Client,
    },
    /// Metrics per configuration: n, mean and sample std over repeats.
    ///
    /// A configuration is a trial's parameters without its seed; rows are
    /// labelled by the parameters that vary. NaN values (e.g. precision
    /// with no predicted spawns) are left out of mean and std and counted.
    ///
    /// Trials stopped early by the sweep's early_stopping rule are not
    /// failures: a stopped configuration's last epoch is the rung it was
    /// stopped at, so by default its repeats are read there; with --epoch N
    /// only trials that reached N are read. The table says how many trials
    /// were stopped, and for method bayes in which order (and by what) each
    /// configuration was proposed.
    Results {
        sweep: i64,
        #[command(flatten)]
        epoch: EpochArgs,
        /// Metric columns of the table and CSV [default: the notebook's
        /// board_accuracy, spawn_recall, spawn_precision, spawn_validity,
        /// cell_accuracy in a table; every metric in CSV].
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Welch's t-test of one metric between two groups of configurations
    /// (scipy.stats.ttest_ind with equal_var=False).
    ///
    /// Trials stopped early count with their value at the rung their
    /// configuration was stopped at (its last epoch), as in `results`; the
    /// output says how many of each group's trials were stopped.
    Compare {
        sweep: i64,
        /// The metric to compare, e.g. board_accuracy.
        #[arg(long)]
        metric: String,
        /// Group a: KEY=VALUE filters, e.g. `--a init=default`; `init=X`
        /// means gen_init=X and disc_init=X.
        #[arg(long, num_args = 1.., required_unless_present = "all_pairs")]
        a: Vec<String>,
        /// Group b, as group a.
        #[arg(long, num_args = 1.., required_unless_present = "all_pairs")]
        b: Vec<String>,
        /// The alternative hypothesis about mean(a) - mean(b).
        #[arg(long, default_value = "two-sided")]
        alternative: Alternative,
        /// Test every configuration against every other one instead.
        #[arg(long, conflicts_with_all = ["a", "b"])]
        all_pairs: bool,
        #[command(flatten)]
        epoch: EpochArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Write (and print) an sbatch script for a Slurm job array of workers
    /// against a coordinator; --submit submits it and prints the job id.
    #[cfg(feature = "one-machine")]
    Slurm(Box<coordinator::slurm::SlurmArgs>),
    /// One worker process of `run` (what `worker run` does).
    #[cfg(feature = "one-machine")]
    #[command(hide = true)]
    Worker(worker::runner::RunArgs),
    /// Write one self-contained HTML file of a sweep: learning curves by
    /// configuration (mean, ±std band), the results table with 95%
    /// confidence intervals and the matrix of Welch p-values.
    Report {
        sweep: i64,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        /// The metric of the curves and p-values; the sweep's own by default.
        #[arg(long)]
        metric: Option<String>,
        /// train or test; the sweep metric's split by default.
        #[arg(long)]
        split: Option<String>,
        #[command(flatten)]
        client: Client,
    },
    /// Export a sweep: every metric of every epoch of every trial as
    /// TensorBoard scalars, one run per trial (DIR/CONFIGURATION/repeat-N).
    /// Open with `tensorboard --logdir DIR`.
    Export {
        sweep: i64,
        /// The directory to write the event files in (made if missing).
        #[arg(long, value_name = "DIR")]
        tensorboard: std::path::PathBuf,
        #[command(flatten)]
        client: Client,
    },
    /// Learning curves: per configuration and epoch, the mean and sample std
    /// of one metric over repeats.
    Curves {
        sweep: i64,
        /// The metric, e.g. board_accuracy.
        #[arg(long)]
        metric: String,
        /// train or test.
        #[arg(long, default_value = "test")]
        split: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token and print it (only this once; the database keeps a
    /// hash).
    Create {
        /// What it may do: worker (serve trials), user (submit, cancel and
        /// read) or reader (read sweeps and results).
        #[arg(long)]
        role: Role,
        /// Who or what it is for, e.g. gpu-cluster or alice; unique.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: Database,
    },
    /// List the tokens: name, role, when made and revoked.
    List {
        #[command(flatten)]
        database: Database,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name; calls with it are refused from then on.
    Revoke {
        name: String,
        #[command(flatten)]
        database: Database,
    },
}

/// The coordinator's database, which token commands use directly.
#[derive(Debug, clap::Args)]
struct Database {
    /// postgres://USER@HOST/DB, or sqlite://FILE.
    #[arg(
        long,
        env = "EXP025_DATABASE_URL",
        default_value = "sqlite://exp025.db"
    )]
    database_url: String,
}

impl Database {
    async fn open(&self) -> Result<Store> {
        Store::connect(&self.database_url)
            .await
            .with_context(|| format!("opening {}", self.database_url))
    }
}

/// Which epoch of each trial results read.
#[derive(Debug, clap::Args)]
struct EpochArgs {
    /// train or test.
    #[arg(long, default_value = "test")]
    split: String,
    /// Read every trial at this epoch [default: each configuration's last].
    #[arg(long, conflicts_with = "stop_epochs")]
    epoch: Option<u32>,
    /// Candidate stopping epochs, e.g. 100,200,300; alone, the sweep file's
    /// `stop_epochs`. Per configuration, the candidate whose mean over
    /// repeats of the sweep's metric (or --by) is best is read: the highest,
    /// or the lowest for a loss; NaN values are left out of that mean,
    /// candidates no trial reached are skipped and ties go to the earlier
    /// epoch.
    #[arg(long, value_delimiter = ',', num_args = 0.., value_name = "EPOCHS")]
    stop_epochs: Option<Vec<u32>>,
    /// The metric (of --split) that picks the stopping epoch.
    #[arg(long, requires = "stop_epochs")]
    by: Option<String>,
}

impl EpochArgs {
    fn selection(&self) -> Option<pb::EpochSelection> {
        use pb::epoch_selection::Choice;
        let choice = if let Some(epoch) = self.epoch {
            Choice::Epoch(epoch)
        } else if let Some(candidates) = &self.stop_epochs {
            Choice::StopEpochs(pb::StopEpochs {
                candidates: candidates.clone(),
                by: self.by.clone().unwrap_or_default(),
            })
        } else {
            return None;
        };
        Some(pb::EpochSelection {
            choice: Some(choice),
        })
    }
}

/// How results print: a table unless --csv or --json.
#[derive(Debug, clap::Args)]
struct Output {
    #[command(flatten)]
    client: Client,
    /// Print CSV instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
}

impl Output {
    fn format(&self) -> Format {
        if self.client.json {
            Format::Json
        } else if self.csv {
            Format::Csv
        } else {
            Format::Table
        }
    }
}

fn main() -> Result<()> {
    let command = Cli::parse().command;
    // A local run draws progress bars on stderr: only warnings may log there.
    #[cfg(feature = "one-machine")]
    let level = if matches!(command, Command::Run { .. }) {
        "warn"
    } else {
        "info"
    };
    #[cfg(not(feature = "one-machine"))]
    let level = "info";
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match command {
        #[cfg(feature = "one-machine")]
        Command::Worker(args) => {
            one_machine::die_with_parent()?;
            args.serve()
        }
        #[cfg(feature = "one-machine")]
        Command::Slurm(args) => coordinator::slurm::run(&args),
        command => tokio::runtime::Runtime::new()?.block_on(run(command)),
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        #[cfg(feature = "one-machine")]
        Command::Worker(_) | Command::Slurm(_) => unreachable!("run before the runtime starts"),
        #[cfg(feature = "one-machine")]
        Command::Run {
            file,
            workers,
            device,
            database_url,
            log,
            dashboard,
            no_dashboard,
        } => {
            let options = LocalRun {
                file,
                database_url,
                workers: workers
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                device,
                log,
                worker_program: std::env::current_exe()?,
                dashboard: (!no_dashboard).then_some(dashboard),
            };
            if one_machine::run(&options).await? == Outcome::Interrupted {
                std::process::exit(130);
            }
            Ok(())
        }
        Command::Serve {
            database_url,
            listen,
            lease_seconds,
            max_attempts,
            tls_cert,
            tls_key,
            insecure_no_auth,
            metrics_addr,
            dashboard,
            no_dashboard,
        } => {
            if insecure_no_auth {
                let served = [Some(listen), dashboard.filter(|_| !no_dashboard)];
                if let Some(open) = served.into_iter().flatten().find(|a| !a.ip().is_loopback()) {
                    anyhow::bail!(
                        "--insecure-no-auth is refused on {open}: without tokens only a loopback \
                         address may be served; make tokens with `coordinator token create`"
                    );
                }
            }
            let store = Store::connect(&database_url)
                .await
                .with_context(|| format!("opening {database_url}"))?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            if let Some(addr) = metrics_addr {
                telemetry::serve(addr, store.clone(), Duration::from_secs(lease_seconds))
                    .with_context(|| format!("serving metrics on {addr}"))?;
                tracing::info!("Prometheus metrics at http://{addr}/metrics");
            }
            tracing::info!(
                addr = %listener.local_addr()?,
                backend = ?store.backend(),
                tls = tls_cert.is_some(),
                auth = !insecure_no_auth,
                "coordinator serving"
            );
            let options = server::Options {
                policy: Policy {
                    lease: Duration::from_secs(lease_seconds),
                    max_attempts,
                },
                auth: if insecure_no_auth {
                    Auth::Disabled
                } else {
                    Auth::Required
                },
                tls: tls_cert.zip(tls_key).map(|(cert, key)| Tls { cert, key }),
            };
            let (stop, stopping) = tokio::sync::watch::channel(false);
            let dashboard = if no_dashboard {
                None
            } else {
                let listener = coordinator::dashboard::bind(dashboard).await?;
                tracing::info!("dashboard at http://{}/", listener.local_addr()?);
                let gate = Gate {
                    store: store.clone(),
                    auth: options.auth,
                };
                let mut stopping = stopping.clone();
                Some(tokio::spawn(coordinator::dashboard::serve(
                    gate,
                    listener,
                    async move {
                        let _ = stopping.wait_for(|s| *s).await;
                    },
                )))
            };
            let shutdown = async move {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("shutting down");
                let _ = stop.send(true);
            };
            server::serve(store, options, listener, shutdown).await?;
            if let Some(dashboard) = dashboard {
                dashboard.await??;
            }
            Ok(())
        }
        Command::Token(command) => token(command).await,
        Command::Submit { file, client } => {
            let yaml = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut api = connect(&client).await?;
            let request = pb::SubmitRequest {
                yaml,
                file_name: file.display().to_string(),
            };
            let sweep = api
                .submit(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .sweep
                .context("no sweep")?;
            if client.json {
                println!("{}", report::sweep_json(&sweep));
            } else {
                println!(
                    "submitted sweep {} ({}): {} trials queued",
                    sweep.id, sweep.name, sweep.trials
                );
            }
            Ok(())
        }
        Command::Status { sweep, client } => {
            let mut api = connect(&client).await?;
            let format = if client.json {
                Format::Json
            } else {
                Format::Table
            };
            let text = match sweep {
                None => {
                    let sweeps = api
                        .list_sweeps(pb::ListSweepsRequest {})
                        .await
                        .map_err(status_error)?
                        .into_inner()
                        .sweeps;
                    report::sweeps(&sweeps, format)
                }
                Some(id) => {
                    let detail = api
                        .get_sweep(pb::GetSweepRequest { sweep_id: id })
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    report::detail(&detail, format)
                }
            };
            println!("{}", text.trim_end());
            Ok(())
        }
        Command::Cancel { sweep, client } => {
            let mut api = connect(&client).await?;
            let response = api
                .cancel_sweep(pb::CancelSweepRequest { sweep_id: sweep })
                .await
                .map_err(status_error)?;
            let sweep = response.into_inner().sweep.context("no sweep")?;
            if client.json {
                println!("{}", report::sweep_json(&sweep));
            } else {
                println!(
                    "cancelled sweep {} ({}): {} trials cancelled",
                    sweep.id, sweep.name, sweep.cancelled
                );
            }
            Ok(())
        }
        Command::Results {
            sweep,
            epoch,
            metrics,
            output,
        } => {
            let mut api = connect(&output.client).await?;
            let selection = epoch.selection();
            let request = pb::ResultsRequest {
                sweep_id: sweep,
                split: epoch.split.clone(),
                epoch: selection.clone(),
                // Only JSON prints each trial's value.
                summaries_only: output.format() != Format::Json,
            };
            let response = api.results(request).await.map_err(status_error)?;
            let mut known: Vec<&str> = response
                .get_ref()
                .configurations
                .iter()
                .flat_map(|c| c.metrics.iter().map(|m| m.name.as_str()))
                .collect();
            known.sort_unstable();
            known.dedup();
            if let Some(unknown) = metrics.iter().find(|m| !known.contains(&m.as_str())) {
                anyhow::bail!(
                    "no {} metric {unknown:?} at that epoch; there are: {}",
                    response.get_ref().split,
                    known.join(", ")
                );
            }
            let text = report::results(
                response.get_ref(),
                selection.as_ref(),
                &metrics,
                output.format(),
            );
            println!("{}", text.trim_end());
            Ok(())
        }
        Command::Compare {
            sweep,
            metric,
            a,
            b,
            alternative,
            all_pairs,
            epoch,
            output,
        } => {
            let mut api = connect(&output.client).await?;
            let selection = epoch.selection();
            let request = pb::CompareRequest {
                sweep_id: sweep,
                metric,
                split: epoch.split.clone(),
                epoch: selection.clone(),
                a,
                b,
                alternative: pb::Alternative::from(alternative).into(),
                all_pairs,
            };
            let response = api.compare(request).await.map_err(status_error)?;
            let text = report::compare(
                response.get_ref(),
                selection.as_ref(),
                all_pairs,
                output.format(),
            );
            println!("{}", text.trim_end());
            Ok(())
        }
        Command::Report {
            sweep,
            out,
            metric,
            split,
            client,
        } => {
            let mut api = connect(&client).await?;
            let about = api
                .get_sweep(pb::GetSweepRequest { sweep_id: sweep })
                .await
                .map_err(status_error)?
                .into_inner()
                .sweep
                .unwrap_or_default();
            let metric = metric.unwrap_or(about.metric);
            let split = split.unwrap_or(about.metric_split);
            let results = api
                .results(pb::ResultsRequest {
                    sweep_id: sweep,
                    split: split.clone(),
                    epoch: None,
                    summaries_only: true,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let pairs = api
                .compare(pb::CompareRequest {
                    sweep_id: sweep,
                    metric: metric.clone(),
                    split: split.clone(),
                    all_pairs: true,
                    alternative: pb::Alternative::TwoSided.into(),
                    ..Default::default()
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let curves = api
                .learning_curves(pb::LearningCurvesRequest {
                    sweep_id: sweep,
                    metric,
                    split,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let predictions = api
                .predictions(pb::PredictionsRequest { sweep_id: sweep })
                .await
                .map_err(status_error)?
                .into_inner();
            let html = report::html::html(&report::html::Inputs {
                results,
                pairs,
                predictions,
                curves,
            });
            std::fs::write(&out, html).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Export {
            sweep,
            tensorboard,
            client,
        } => {
            let mut api = connect(&client).await?;
            let done = coordinator::tensorboard::export(&mut api, sweep, &tensorboard)
                .await
                .with_context(|| format!("exporting sweep {sweep}"))?;
            println!(
                "{} runs, {} scalars and {} prediction images written to {} and read back; open with \
                 `tensorboard --logdir {}`",
                done.runs,
                done.scalars,
                done.images,
                tensorboard.display(),
                tensorboard.display()
            );
            Ok(())
        }
        Command::Curves {
            sweep,
            metric,
            split,
            output,
        } => {
            let mut api = connect(&output.client).await?;
            let request = pb::LearningCurvesRequest {
                sweep_id: sweep,
                metric,
                split,
            };
            let response = api.learning_curves(request).await.map_err(status_error)?;
            println!(
                "{}",
                report::curves(response.get_ref(), output.format()).trim_end()
            );
            Ok(())
        }
    }
}

async fn token(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create {
            role,
            name,
            database,
        } => {
            let store = database.open().await?;
            let token = auth::new_token();
            store.create_token(&name, role, &auth::hash(&token)).await?;
            eprintln!(
                "token {name:?} with role {role} made; it is shown only now (pass it with --token or EXP025_TOKEN):"
            );
            println!("{token}");
        }
        TokenCommand::List { database, json } => {
            let store = database.open().await?;
            let tokens = store.tokens().await?;
            println!(
                "{}",
                report::tokens(&tokens, if json { Format::Json } else { Format::Table }).trim_end()
            );
        }
        TokenCommand::Revoke { name, database } => {
            let store = database.open().await?;
            if !store.revoke_token(&name).await? {
                anyhow::bail!("no unrevoked token named {name:?}; see `coordinator token list`");
            }
            println!("token {name:?} revoked");
        }
    }
    Ok(())
}

async fn connect(client: &Client) -> Result<SweepServiceClient<AuthChannel>> {
    let coordinator = proto::client::Coordinator {
        url: client.coordinator.clone(),
        token: client.token.clone(),
        tls_ca: client.tls_ca.clone(),
    };
    Ok(SweepServiceClient::new(coordinator.connect().await?))
}

/// A gRPC error as the user should read it: the message, and the field
/// violations of an invalid sweep.
fn status_error(status: tonic::Status) -> anyhow::Error {
    use tonic_types::StatusExt;
    let mut text = status.message().to_string();
    if let Some(bad) = status.get_details_bad_request() {
        for v in &bad.field_violations {
            if !text.contains(&v.description) {
                text.push_str(&format!("\n  {}: {}", v.field, v.description));
            }
        }
    }
    anyhow::anyhow!(text)
}
