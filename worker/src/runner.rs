//! `worker run`: registers with the coordinator, leases trials into packs
//! (`--slots` packs of up to `--pack` trials each), trains each pack on a
//! thread of its own as one computation, streams every trial's epochs as
//! soon as they end, checkpoints every N epochs, and survives a coordinator
//! that goes away (it trains on, retries with backoff and re-sends what was
//! not acknowledged; stored metrics are idempotent). A trial joins its pack
//! at the next epoch boundary and leaves it when it ends, is stopped or
//! fails; every lease, report and directive stays the trial's own.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use candle_core::Device;
use proto::client::{AuthChannel, Coordinator};
use proto::v1::worker_service_client::WorkerServiceClient;
use proto::v1::{self as pb, Directive};
use tokio::sync::{mpsc, watch};
use tonic::{Code, Status};

use crate::checkpoint;
use crate::dataset::{DatasetCache, DatasetSpec};
use crate::train::{EpochReport, TrainConfig, Trainer};

/// The flags of `worker run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The coordinator's URL (https://... for TLS).
    #[arg(
        long,
        env = "EXP025_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub coordinator: String,
    /// A token of role worker, from `coordinator token create --role worker`.
    #[arg(long, env = "EXP025_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed the coordinator's TLS
    /// certificate [default: the system's roots].
    #[arg(long, env = "EXP025_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Packs trained side by side on the device, each on its own thread.
    #[arg(long, default_value_t = 1)]
    pub slots: usize,
    /// Trials trained together in one pack, as one computation (packing
    /// changes speed, never results).
    #[arg(long, default_value_t = 1)]
    pub pack: usize,
    /// How this worker shows in the coordinator's status [default:
    /// DEVICE-PID].
    #[arg(long, env = "EXP025_WORKER_NAME")]
    pub name: Option<String>,
    /// Send a checkpoint to the coordinator every this many epochs.
    #[arg(long, default_value_t = 10)]
    pub checkpoint_every: u32,
    /// Where generated datasets are cached for every worker of this machine.
    #[arg(long, env = "EXP025_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl RunArgs {
    /// The flags as a command line that gives these same arguments, but for
    /// the token, which is a secret: the worker reads it from its
    /// environment (`EXP025_TOKEN`).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--coordinator".to_string(),
            self.coordinator.clone(),
            "--device".into(),
            self.device.clone(),
            "--slots".into(),
            self.slots.to_string(),
            "--pack".into(),
            self.pack.to_string(),
            "--checkpoint-every".into(),
            self.checkpoint_every.to_string(),
        ];
        let paths = [("--tls-ca", &self.tls_ca), ("--cache-dir", &self.cache_dir)];
        for (flag, path) in paths {
            if let Some(path) = path {
                args.extend([flag.to_string(), path.display().to_string()]);
            }
        }
        if let Some(name) = &self.name {
            args.extend(["--name".to_string(), name.clone()]);
        }
        args
    }

    /// Serves the coordinator until Ctrl-C or SIGTERM, then stops each
    /// trial at its next epoch boundary, checkpoints and releases it.
    pub fn serve(self) -> Result<()> {
        let options = RunnerOptions {
            name: self
                .name
                .unwrap_or_else(|| format!("{}-{}", self.device, std::process::id())),
            cache_dir: self.cache_dir.unwrap_or_else(default_cache_dir),
            coordinator: Coordinator {
                url: self.coordinator,
                token: self.token,
                tls_ca: self.tls_ca,
            },
            device: self.device,
            slots: self.slots.max(1),
            pack: self.pack.max(1),
            checkpoint_every: self.checkpoint_every,
        };
        tokio::runtime::Runtime::new()?.block_on(async {
            let (stop, stopping) = watch::channel(None);
            tokio::spawn(async move {
                let why = wait_for_signal().await;
                tracing::info!(?why, "stopping at the next epoch boundary");
                let _ = stop.send(Some(why));
            });
            run(options, stopping).await
        })
    }
}

/// `$XDG_CACHE_HOME/exp025/datasets`, or `~/.cache/exp025/datasets`.
fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("exp025").join("datasets")
}

/// Why a worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C: stopped by hand.
    Asked,
    /// SIGTERM or SIGUSR1: a cluster engine takes the machine back (Slurm
    /// preemption or its time-limit warning, a Kubernetes pod deleted). The
    /// trials handed back count as preempted.
    Preempted,
}

/// Waits for Ctrl-C, SIGTERM or SIGUSR1, and says which it was.
pub async fn wait_for_signal() -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut usr1 = signal(SignalKind::user_defined1()).expect("installing a SIGUSR1 handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Stop::Asked,
        _ = term.recv() => Stop::Preempted,
        _ = usr1.recv() => Stop::Preempted,
    }
}

/// Turns to the reason once the worker is told to stop.
pub type Stopping = watch::Receiver<Option<Stop>>;

/// What `worker run` was told.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Where the coordinator is, and the token and CA to reach it.
    pub coordinator: Coordinator,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Packs trained side by side.
    pub slots: usize,
    /// Trials per pack.
    pub pack: usize,
    /// How this worker shows in the coordinator's status.
    pub name: String,
    /// Save a checkpoint to the coordinator every this many epochs.
    pub checkpoint_every: u32,
    /// Where generated datasets are kept for every worker of this machine.
    pub cache_dir: PathBuf,
}

type Client = WorkerServiceClient<AuthChannel>;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const LEASE_WAIT_MS: u32 = 5_000;
/// Once asked to stop, how long a call keeps being retried while the
/// coordinator does not answer; then the worker gives up and exits, and the
/// trial's lease expires on the coordinator.
const STOP_RETRY: Duration = Duration::from_secs(20);

/// Whether a failed call may succeed when tried again (the coordinator or
/// its database is away), as opposed to a refusal.
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::DeadlineExceeded
            | Code::Cancelled
    )
}

/// Calls `f` until it succeeds or fails for good, waiting longer each time.
/// Once `shutdown` is asked for, it gives up after [`STOP_RETRY`] of
/// failures, so that a worker whose coordinator is gone still exits.
async fn retry<T, F, Fut>(what: &str, shutdown: &Stopping, mut f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut wait = BACKOFF_START;
    let mut failing_since_stop: Option<tokio::time::Instant> = None;
    loop {
        match f().await {
            Err(status) if transient(&status) => {
                if shutdown.borrow().is_some() {
                    let since = *failing_since_stop.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= STOP_RETRY {
                        tracing::warn!(
                            what,
                            "stopping, and the coordinator does not answer; giving up"
                        );
                        return Err(status);
                    }
                }
                tracing::warn!(what, error = %status.message(), retry_in = ?wait, "coordinator unreachable");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKOFF_MAX);
            }
            other => return other,
        }
    }
}

/// Shared by the slots.
struct Ctx {
    client: Client,
    worker_id: i64,
    lease_seconds: u32,
    device: Device,
    datasets: DatasetCache,
    options: RunnerOptions,
}

/// Runs slots until `shutdown` gives a reason; each slot then stops its trial
/// at the next epoch boundary, checkpoints it and releases its lease.
pub async fn run(options: RunnerOptions, shutdown: Stopping) -> Result<()> {
    let device = crate::device::parse(&options.device)?;
    let mut client = WorkerServiceClient::new(options.coordinator.lazy()?);
    let registered = retry("register", &shutdown, || {
        let mut client = client.clone();
        let request = pb::RegisterRequest {
            protocol_version: proto::PROTOCOL_VERSION,
            name: options.name.clone(),
            device: options.device.clone(),
            slots: (options.slots * options.pack) as u32,
        };
        async move { client.register(request).await }
    })
    .await
    .context("registering with the coordinator")?
    .into_inner();
    client = client
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    tracing::info!(
        worker = registered.worker_id,
        slots = options.slots,
        "registered"
    );
    let ctx = Arc::new(Ctx {
        client,
        worker_id: registered.worker_id,
        lease_seconds: registered.lease_seconds.max(1),
        device,
        datasets: DatasetCache::new(options.cache_dir.clone()),
        options,
    });
    let mut slots = tokio::task::JoinSet::new();
    for n in 0..ctx.options.slots {
        let pack = Arc::new(Pack {
            joins: spawn_pack(n),
            keys: Default::default(),
        });
        for member in 0..ctx.options.pack {
            let slot = n * ctx.options.pack + member;
            slots.spawn(slot_loop(ctx.clone(), slot, pack.clone(), shutdown.clone()));
        }
    }
    while let Some(done) = slots.join_next().await {
        done??;
    }
    Ok(())
}

/// What the members of one pack share: its training thread, and the pack
/// keys of the trials it holds.
struct Pack {
    joins: std::sync::mpsc::Sender<Join>,
    keys: std::sync::Mutex<Vec<String>>,
}

impl Pack {
    /// The key a member asks for, so that the trial it leases joins the
    /// trials already here (any key when the pack is empty).
    fn wanted(&self) -> String {
        let keys = self.keys.lock().expect("not poisoned");
        keys.first().cloned().unwrap_or_default()
    }

    /// Records a trial of `key` as in the pack until the guard drops.
    fn hold(&self, key: String) -> Held<'_> {
        self.keys.lock().expect("not poisoned").push(key.clone());
        Held { pack: self, key }
    }
}

/// A trial's key in its pack, while it is there.
struct Held<'a> {
    pack: &'a Pack,
    key: String,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut keys = self.pack.keys.lock().expect("not poisoned");
        if let Some(i) = keys.iter().position(|k| *k == self.key) {
            keys.remove(i);
        }
    }
}

async fn slot_loop(
    ctx: Arc<Ctx>,
    slot: usize,
    pack: Arc<Pack>,
    mut shutdown: Stopping,
) -> Result<()> {
    let stopping = shutdown.clone();
    loop {
        if shutdown.borrow().is_some() {
            return Ok(());
        }
        let request = pb::LeaseRequest {
            worker_id: ctx.worker_id,
            wait_ms: LEASE_WAIT_MS,
            pack_with: pack.wanted(),
        };
        let leased = tokio::select! {
            r = retry("lease", &stopping, || { let mut c = ctx.client.clone(); let r = request.clone(); async move { c.lease(r).await } }) => r?,
            _ = stopped(&mut shutdown) => return Ok(()),
        };
        if let Some(lease) = leased.into_inner().lease {
            let trial_id = lease.trial.as_ref().map_or(0, |t| t.id);
            tracing::info!(
                slot,
                trial = trial_id,
                from_epoch = lease.resume_from_epoch,
                "trial leased"
            );
            if let Err(e) = run_trial(&ctx, lease, &pack, shutdown.clone()).await {
                tracing::error!(
                    slot,
                    trial = trial_id,
                    error = format!("{e:#}"),
                    "trial abandoned"
                );
            }
        }
    }
}

/// Resolves once shutdown was asked for.
async fn stopped(shutdown: &mut Stopping) {
    let _ = shutdown.wait_for(Option::is_some).await;
}

/// A checkpoint's state and the predictions on the sample items then.
type Saved = (Vec<u8>, Vec<pb::BoardSample>);

/// What the training thread tells the slot.
enum Event {
    Epoch(Box<EpochReport>, Option<Saved>),
    /// Every epoch trained, with the predictions on the sample items.
    Finished(Vec<pb::BoardSample>),
    /// Stopped for shutdown after `epoch` epochs, with the state to resume from.
    Paused(u32, Vec<u8>),
    /// Stopped because the coordinator said so.
    Abandoned,
    Failed(String),
}

const RUN: u8 = 0;
const PAUSE: u8 = 1;
const ABANDON: u8 = 2;

/// Trains one leased trial in the slot's pack to its end, a directive to
/// stop, or shutdown.
async fn run_trial(ctx: &Ctx, lease: pb::Lease, pack: &Pack, mut shutdown: Stopping) -> Result<()> {
    let trial = lease.trial.context("a lease without a trial")?;
    let mut reporter = Reporter {
        client: ctx.client.clone(),
        trial_id: trial.id,
        lease_id: lease.lease_id,
        pending: VecDeque::new(),
        shutdown: shutdown.clone(),
    };
    let config = trial
        .config
        .as_ref()
        .context("a trial without a configuration")?;
    let parsed = TrainConfig::try_from(config).and_then(|c| {
        Ok((
            c,
            DatasetSpec::try_from(config.dataset.as_ref().ok_or("no dataset")?)?,
        ))
    });
    let (train_config, dataset) = match parsed {
        Ok(p) => p,
        Err(reason) => {
            return reporter
                .fail(&format!("invalid trial configuration: {reason}"))
                .await;
        }
    };
    let data = match ctx.datasets.get(&dataset).await {
        Ok(d) => d,
        Err(e) => return reporter.fail(&format!("dataset: {e:#}")).await,
    };
    let _held = pack.hold(proto::config::pack_key(config));
    let saved = reporter.checkpoint().await?;
    let control = Arc::new(AtomicU8::new(RUN));
    let (events, mut inbox) = mpsc::unbounded_channel();
    pack.joins
        .send(Join {
            trial_id: trial.id,
            config: train_config,
            data,
            saved,
            every: ctx.options.checkpoint_every.max(1),
            device: ctx.device.clone(),
            control: control.clone(),
            events,
        })
        .context("the pack's training thread has stopped")?;
    let heartbeat = Duration::from_secs(u64::from(ctx.lease_seconds)) / 3;
    let outcome = loop {
        tokio::select! {
            event = inbox.recv() => match event {
                Some(Event::Epoch(report, state)) => {
                    tracing::info!(trial = trial.id, epoch = report.epoch, seconds = report.seconds, "epoch trained");
                    reporter.queue(&report);
                    if reporter.flush(&control).await? && let Some((bytes, samples)) = state {
                        reporter.put_checkpoint(report.epoch, bytes, samples).await?;
                    }
                }
                Some(other) => break Some(other),
                None => break None,
            },
            _ = tokio::time::sleep(heartbeat) => {
                reporter.flush(&control).await?;
            }
            _ = stopped(&mut shutdown), if control.load(Ordering::Relaxed) == RUN => {
                tracing::info!(trial = trial.id, "shutting down: pausing at the next epoch boundary");
                control.store(PAUSE, Ordering::Relaxed);
            }
        }
    };
    let held = reporter.flush(&control).await?;
    match outcome {
        _ if !held => {
            tracing::warn!(
                trial = trial.id,
                "the coordinator took the trial back; stopped"
            );
            Ok(())
        }
        Some(Event::Finished(samples)) => reporter.complete(samples).await,
        Some(Event::Failed(reason)) => reporter.fail(&reason).await,
        Some(Event::Paused(epoch, state)) => {
            if epoch > 0 {
                reporter.put_checkpoint(epoch, state, Vec::new()).await?;
            }
            reporter.release().await
        }
        Some(Event::Abandoned | Event::Epoch(..)) | None => Ok(()),
    }
}

/// A trial handed to its pack's training thread.
struct Join {
    trial_id: i64,
    config: TrainConfig,
    data: Arc<crate::datagen::Dataset>,
    /// The state to resume from.
    saved: Option<Vec<u8>>,
    /// Checkpoint every this many epochs.
    every: u32,
    device: Device,
    /// Checked at every epoch boundary.
    control: Arc<AtomicU8>,
    events: mpsc::UnboundedSender<Event>,
}

/// A trial in its pack.
struct Member {
    trainer: Trainer,
    join: Join,
}

impl Member {
    /// Starts (or resumes) the trial; a trial that cannot start says why.
    fn start(join: Join) -> Option<Member> {
        let started = Trainer::new(join.config, join.data.clone(), &join.device)
            .map_err(anyhow::Error::from)
            .and_then(|mut trainer| {
                if let Some(bytes) = &join.saved {
                    checkpoint::load(&mut trainer, bytes)?;
                }
                Ok(trainer)
            });
        match started {
            Ok(trainer) => Some(Member { trainer, join }),
            Err(e) => {
                let _ = join.events.send(Event::Failed(format!("{e:#}")));
                None
            }
        }
    }

    /// What the trial says at an epoch boundary before training on, if it
    /// leaves the pack there.
    fn leaving(&self) -> Result<Option<Event>> {
        Ok(match self.join.control.load(Ordering::Relaxed) {
            PAUSE => Some(Event::Paused(
                self.trainer.epoch(),
                checkpoint::save(&self.trainer)?,
            )),
            ABANDON => Some(Event::Abandoned),
            _ if self.trainer.epoch() >= self.join.config.epochs => {
                Some(Event::Finished(self.trainer.samples()?))
            }
            _ => None,
        })
    }

    /// Sends an epoch's report (with a checkpoint when one is due); false
    /// when nobody listens any more.
    fn report(&self, report: EpochReport) -> Result<bool> {
        let epoch = report.epoch;
        let due = epoch.is_multiple_of(self.join.every) && epoch < self.join.config.epochs;
        let state = due
            .then(|| anyhow::Ok((checkpoint::save(&self.trainer)?, self.trainer.samples()?)))
            .transpose()?;
        Ok(self
            .join
            .events
            .send(Event::Epoch(Box::new(report), state))
            .is_ok())
    }
}

/// Starts pack `n`'s training thread; it trains the trials sent to it until
/// every sender is gone.
fn spawn_pack(n: usize) -> std::sync::mpsc::Sender<Join> {
    let (joins, inbox) = std::sync::mpsc::channel::<Join>();
    std::thread::Builder::new()
        .name(format!("pack-{n}"))
        .spawn(move || pack_thread(&inbox))
        .expect("starting a training thread");
    joins
}

/// Trains the pack epoch after epoch: trials join at an epoch boundary and
/// leave when they end, are told to stop, or fail; trials that cannot share
/// one computation (another batch size or dataset) train as packs of their
/// own, one after the other, in the same round.
fn pack_thread(inbox: &std::sync::mpsc::Receiver<Join>) {
    let mut members: Vec<Member> = Vec::new();
    loop {
        let joining: Vec<Join> = if members.is_empty() {
            match inbox.recv() {
                Ok(join) => std::iter::once(join).chain(inbox.try_iter()).collect(),
                Err(_) => return,
            }
        } else {
            inbox.try_iter().collect()
        };
        members.extend(joining.into_iter().filter_map(Member::start));
        members.retain(|m| match m.leaving() {
            Ok(None) => true,
            Ok(Some(event)) => {
                let _ = m.join.events.send(event);
                false
            }
            Err(e) => {
                let _ = m.join.events.send(Event::Failed(format!("{e:#}")));
                false
            }
        });
        let mut rest = std::mem::take(&mut members);
        while !rest.is_empty() {
            let first = rest.remove(0);
            let (others, fits): (Vec<Member>, Vec<Member>) = rest
                .into_iter()
                .partition(|m| !first.trainer.packs_with(&m.trainer));
            rest = others;
            let mut group: Vec<Member> = std::iter::once(first).chain(fits).collect();
            if group.len() > 1 {
                let trials: Vec<i64> = group.iter().map(|m| m.join.trial_id).collect();
                tracing::info!(?trials, "training a pack");
            }
            let mut trainers: Vec<&mut Trainer> =
                group.iter_mut().map(|m| &mut m.trainer).collect();
            match crate::train::run_epochs(&mut trainers) {
                Ok(reports) => {
                    for (member, report) in group.into_iter().zip(reports) {
                        match member.report(report) {
                            Ok(true) => members.push(member),
                            Ok(false) => {}
                            Err(e) => {
                                let _ = member.join.events.send(Event::Failed(format!("{e:#}")));
                            }
                        }
                    }
                }
                Err(e) => {
                    for member in group {
                        let _ = member.join.events.send(Event::Failed(format!("{e:#}")));
                    }
                }
            }
        }
    }
}

/// Sends a trial's reports in order until each is acknowledged, and makes
/// the calls that end the trial.
struct Reporter {
    client: Client,
    trial_id: i64,
    lease_id: String,
    pending: VecDeque<pb::ProgressReport>,
    /// Bounds the retries once the worker is stopping, and says why.
    shutdown: Stopping,
}

impl Reporter {
    fn queue(&mut self, report: &EpochReport) {
        let metrics = report.metrics().into_iter().map(pb::Metric::from).collect();
        self.pending.push_back(pb::ProgressReport {
            trial_id: self.trial_id,
            lease_id: self.lease_id.clone(),
            epoch: report.epoch,
            metrics,
        });
    }

    /// Sends what is pending (or a heartbeat) until acknowledged. Returns
    /// whether the lease is still held; if not, tells the trainer to stop.
    async fn flush(&mut self, control: &AtomicU8) -> Result<bool> {
        let reports: Vec<pb::ProgressReport> = if self.pending.is_empty() {
            vec![pb::ProgressReport {
                trial_id: self.trial_id,
                lease_id: self.lease_id.clone(),
                epoch: 0,
                metrics: vec![],
            }]
        } else {
            self.pending.iter().cloned().collect()
        };
        let directives = retry("report progress", &self.shutdown, || {
            let mut client = self.client.clone();
            let reports = reports.clone();
            async move {
                let n = reports.len();
                let mut acks = client
                    .report_progress(tokio_stream::iter(reports))
                    .await?
                    .into_inner();
                let mut directives = Vec::with_capacity(n);
                while directives.len() < n {
                    let ack = acks
                        .message()
                        .await?
                        .ok_or_else(|| Status::unavailable("progress stream ended"))?;
                    directives.push(Directive::try_from(ack.directive).unwrap_or(Directive::Stop));
                }
                Ok(directives)
            }
        })
        .await?;
        self.pending.clear();
        if directives.iter().all(|d| *d == Directive::Continue) {
            return Ok(true);
        }
        tracing::warn!(
            trial = self.trial_id,
            ?directives,
            "the coordinator says stop"
        );
        control.store(ABANDON, Ordering::Relaxed);
        Ok(false)
    }

    async fn checkpoint(&self) -> Result<Option<Vec<u8>>> {
        let request = pb::GetCheckpointRequest {
            trial_id: self.trial_id,
            lease_id: self.lease_id.clone(),
        };
        let response = retry("get checkpoint", &self.shutdown, || {
            let mut c = self.client.clone();
            let r = request.clone();
            async move { c.get_checkpoint(r).await }
        })
        .await?;
        Ok(response.into_inner().checkpoint.map(|c| c.data))
    }

    async fn put_checkpoint(
        &self,
        epoch: u32,
        data: Vec<u8>,
        samples: Vec<pb::BoardSample>,
    ) -> Result<()> {
        let request = pb::PutCheckpointRequest {
            trial_id: self.trial_id,
            lease_id: self.lease_id.clone(),
            epoch,
            data,
            samples,
        };
        retry("put checkpoint", &self.shutdown, || {
            let mut c = self.client.clone();
            let r = request.clone();
            async move { c.put_checkpoint(r).await }
        })
        .await?;
        tracing::info!(trial = self.trial_id, epoch, "checkpoint saved");
        Ok(())
    }

    async fn complete(&self, samples: Vec<pb::BoardSample>) -> Result<()> {
        let request = pb::CompleteRequest {
            trial_id: self.trial_id,
            lease_id: self.lease_id.clone(),
            samples,
        };
        retry("complete", &self.shutdown, || {
            let mut c = self.client.clone();
            let r = request.clone();
            async move { c.complete(r).await }
        })
        .await?;
        tracing::info!(trial = self.trial_id, "trial completed");
        Ok(())
    }

    async fn fail(&self, reason: &str) -> Result<()> {
        let request = pb::FailRequest {
            trial_id: self.trial_id,
            lease_id: self.lease_id.clone(),
            reason: reason.to_string(),
        };
        retry("fail", &self.shutdown, || {
            let mut c = self.client.clone();
            let r = request.clone();
            async move { c.fail(r).await }
        })
        .await?;
        tracing::warn!(trial = self.trial_id, reason, "trial failed");
        Ok(())
    }

    /// Hands the trial back to the queue, as preempted when a cluster
    /// engine's signal stopped the worker.
    async fn release(&self) -> Result<()> {
        let (trial_id, lease_id) = (self.trial_id, self.lease_id.clone());
        let preempted = *self.shutdown.borrow() == Some(Stop::Preempted);
        retry("release", &self.shutdown, || {
            let mut c = self.client.clone();
            let r = pb::ReleaseRequest {
                trial_id,
                lease_id: lease_id.clone(),
                preempted,
            };
            async move { c.release(r).await }
        })
        .await?;
        tracing::info!(
            trial = trial_id,
            preempted,
            "trial released for another worker"
        );
        Ok(())
    }
}
