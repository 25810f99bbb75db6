//! Every statement that touches the database: sweeps, trials and their
//! leases, metrics, checkpoints and workers, on Postgres or SQLite (chosen
//! by the URL; both run the same queries, but for the row lock Postgres
//! takes when it leases).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use proto::metrics::{Metric, MetricValue, Split};
use proto::v1::{EarlyStopping, TrialConfig};
use rand::RngExt;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::postgres::PgListener;
use sqlx::{AnyPool, Row};
use tokio::sync::Notify;

use crate::aggregates::{self, Point, Running};
use crate::auth::Role;
use crate::blocks;
use crate::packed::{self, Packed};
use crate::spec::{Method, Objective, PlannedTrial, Precision, SweepPlan};

/// Why a store operation failed. Messages never show SQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A URL of neither backend.
    #[error("unsupported database URL {0:?}; use postgres://... or sqlite://FILE")]
    UnsupportedUrl(String),
    /// A stored configuration that does not decode.
    #[error("stored trial configuration is unreadable")]
    Corrupt(#[from] prost::DecodeError),
    /// A stored split or metric name outside the vocabulary.
    #[error("stored metric is unknown: {0}")]
    UnknownMetric(String),
    /// Stored bytes that are not what the schema says they hold.
    #[error("stored data is unreadable: {0}")]
    Unreadable(String),
    /// A token name that is taken.
    #[error("a token named {0:?} exists already (revoked or not); pick another name")]
    TokenNameTaken(String),
    /// A stored role name outside the known roles.
    #[error("stored token role {0:?} is unknown")]
    UnknownRole(String),
    /// A batch of reports could not be stored (the cause is logged).
    #[error("{0}")]
    Batch(String),
    /// A stored sweep method outside the known methods.
    #[error("stored sweep method {0:?} is unknown")]
    UnknownMethod(String),
    /// A stored metric precision outside the known ones.
    #[error("stored metric precision {0:?} is unknown")]
    UnknownPrecision(String),
}

type Result<T> = std::result::Result<T, StoreError>;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A Postgres server, for clusters.
    Postgres,
    /// A SQLite file, on one machine.
    Sqlite,
}

/// The coordinator's durable state.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// On Postgres, a few connections of the native driver for reads of
    /// many rows (see [`Store::bulk`]).
    native: Option<sqlx::PgPool>,
    backend: Backend,
    /// Woken when trials are queued, here or (on Postgres, through
    /// LISTEN/NOTIFY) by another coordinator on the same database.
    queued: Arc<Notify>,
    /// Worker ids known to be registered (a worker is never deleted), so
    /// that a lease need not look.
    known_workers: Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
    /// What never changes of trials leased or read here, so that their
    /// reports need not read them (see [`Store::record_epochs`]).
    facts: Arc<std::sync::Mutex<HashMap<i64, Arc<TrialFacts>>>>,
    /// Valid tokens (Postgres only; see [`TokenCache`]).
    tokens: Arc<TokenCache>,
}

/// The Postgres channel that says trials were queued; the payload is how
/// many.
const QUEUED_CHANNEL: &str = "exp025_queued";

/// The advisory lock of the coordinator folding curve deltas.
const FOLD_LOCK: i64 = 0x6578_7030_3235_0001;

/// The Postgres channel that says a token was revoked.
const TOKENS_CHANNEL: &str = "exp025_tokens";

/// Wakes up to `n` waiters (one per trial queued; a waiter that finds
/// nothing waits again).
fn wake(queued: &Notify, n: u64) {
    for _ in 0..n.min(4096) {
        queued.notify_one();
    }
}

/// Tokens found valid, by hash, so that a call need not ask the database;
/// on Postgres only, and only while this coordinator listens for
/// revocations: every revocation (from any coordinator or the `token`
/// command) empties it, and so does a lost listener connection, after
/// which tokens are looked up again until it listens again.
#[derive(Debug, Default)]
struct TokenCache {
    inner: std::sync::Mutex<TokenCacheInner>,
}

#[derive(Debug, Default)]
struct TokenCacheInner {
    listening: bool,
    /// Bumped by every emptying, so that a lookup that began before a
    /// revocation does not put back what it read.
    generation: u64,
    tokens: HashMap<String, TokenRow>,
}

impl TokenCache {
    /// The cached token, or the generation to store a lookup under.
    fn get(&self, hash: &str) -> std::result::Result<TokenRow, Option<u64>> {
        let inner = self.inner.lock().expect("token cache lock");
        if !inner.listening {
            return Err(None);
        }
        inner
            .tokens
            .get(hash)
            .cloned()
            .ok_or(Some(inner.generation))
    }

    fn put(&self, generation: u64, hash: &str, token: &TokenRow) {
        let mut inner = self.inner.lock().expect("token cache lock");
        if inner.listening && inner.generation == generation && token.revoked_ms.is_none() {
            inner.tokens.insert(hash.to_string(), token.clone());
        }
    }

    /// Forgets every token.
    fn empty(&self) {
        let mut inner = self.inner.lock().expect("token cache lock");
        inner.tokens.clear();
        inner.generation += 1;
    }

    /// Forgets every token, and caches from now on only while listening.
    fn listening(&self, listening: bool) {
        self.empty();
        self.inner.lock().expect("token cache lock").listening = listening;
    }
}

/// Passes the notifications of any coordinator on the database to this
/// one, until the store is gone: trials queued wake its waiters, a token
/// revoked empties its token cache.
async fn listen(url: String, queued: Weak<Notify>, tokens: Weak<TokenCache>) {
    loop {
        let mut listener = loop {
            match PgListener::connect(&url).await {
                Ok(mut l) => match l.listen_all([QUEUED_CHANNEL, TOKENS_CHANNEL]).await {
                    Ok(()) => break l,
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
                },
                Err(e) => tracing::warn!(error = %e, "listener cannot connect; retrying"),
            }
            if queued.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        if let Some(tokens) = tokens.upgrade() {
            tokens.listening(true);
        }
        loop {
            // try_recv says when the connection was lost (recv would
            // reconnect silently, and notifications sent meanwhile would be
            // missed).
            let notification = listener.try_recv().await;
            let (Some(queued), Some(tokens)) = (queued.upgrade(), tokens.upgrade()) else {
                return;
            };
            match notification {
                Ok(Some(n)) if n.channel() == TOKENS_CHANNEL => tokens.empty(),
                Ok(Some(n)) => wake(&queued, n.payload().parse().unwrap_or(1)),
                Ok(None) | Err(_) => {
                    // Waiters poll and tokens are looked up meanwhile.
                    tracing::warn!("listener lost its connection; reconnecting");
                    tokens.listening(false);
                    break;
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Trial states as stored.
pub mod status {
    /// Waiting for a worker.
    pub const QUEUED: &str = "queued";
    /// Leased to a worker.
    pub const RUNNING: &str = "running";
    /// Trained to its last epoch.
    pub const COMPLETED: &str = "completed";
    /// Given up, with the reason in `error`.
    pub const FAILED: &str = "failed";
    /// Cancelled with its sweep.
    pub const CANCELLED: &str = "cancelled";
    /// Stopped by the sweep's early-stopping rule.
    pub const STOPPED: &str = "stopped";

    /// Whether a trial in this status will not run again.
    pub fn is_final(status: &str) -> bool {
        [COMPLETED, FAILED, CANCELLED, STOPPED].contains(&status)
    }
}

/// A sweep with its trial counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    /// The sweep's id.
    pub id: i64,
    /// The sweep's name.
    pub name: String,
    /// Free text from the sweep file.
    pub description: String,
    /// The sweep file as submitted.
    pub yaml: String,
    /// The metric the sweep optimises, of which split, and its direction.
    pub objective: Objective,
    /// Whether the sweep was cancelled.
    pub cancelled: bool,
    /// How it makes its configurations.
    pub method: Method,
    /// Configurations it will try.
    pub budget: u32,
    /// Configurations made so far.
    pub proposed: u32,
    /// Its early-stopping rule, if any.
    pub early_stopping: Option<EarlyStopping>,
    /// The epochs its results will be read at (`stop_epochs`), ascending.
    pub stop_epochs: Vec<u32>,
    /// How exactly its metrics are stored.
    pub precision: Precision,
    /// When it was submitted (ms since the Unix epoch).
    pub created_ms: i64,
    /// Its trials by status.
    pub counts: StatusCounts,
}

/// Trials of a sweep by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Waiting for a worker.
    pub queued: u32,
    /// Leased.
    pub running: u32,
    /// Finished.
    pub completed: u32,
    /// Given up.
    pub failed: u32,
    /// Cancelled.
    pub cancelled: u32,
    /// Stopped early.
    pub stopped: u32,
}

impl StatusCounts {
    /// All trials.
    pub fn total(&self) -> u32 {
        self.queued + self.running + self.completed + self.failed + self.cancelled + self.stopped
    }
}

impl SweepRow {
    /// Whether nothing more will run: cancelled, or every configuration
    /// made and none of its trials queued or running.
    pub fn is_done(&self) -> bool {
        self.cancelled
            || (self.counts.queued + self.counts.running == 0 && self.proposed >= self.budget)
    }
}

/// A worker asking for a trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAsk {
    /// Who asks.
    pub worker: i64,
    /// The pack key of trials it trains (`proto::config::pack_key`), whose
    /// like it takes first; empty for any.
    pub pack_with: String,
}

/// A holder ending its trial: completed, or failed with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The trial.
    pub trial_id: i64,
    /// The lease the caller holds.
    pub lease_id: String,
    /// Why it failed; None when it completed.
    pub failure: Option<String>,
}

/// A known worker in one round of leasing: where its answer goes, and the
/// lease it gets.
#[derive(Debug)]
struct Asker<'a> {
    at: usize,
    worker: i64,
    lease: String,
    pack_with: &'a str,
}

/// A trial as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRow {
    /// The trial's id.
    pub id: i64,
    /// The sweep it belongs to.
    pub sweep_id: i64,
    /// Everything that determines the trial.
    pub config: TrialConfig,
    /// The configuration without the seed; repeats share it.
    pub config_key: String,
    /// Which repeat of its configuration (0-based).
    pub repeat: u32,
    /// One of [`status`].
    pub status: String,
    /// Leases used (a lease handed back on purpose is not counted).
    pub attempts: u32,
    /// The last epoch stored.
    pub epochs_done: u32,
    /// Why it failed; empty otherwise.
    pub error: String,
    /// The name of the worker that holds or last held it.
    pub worker: String,
    /// Times a preempted worker handed it back.
    pub preemptions: u32,
    /// When it last changed (ms since the Unix epoch).
    pub updated_ms: i64,
    /// The rung its configuration was stopped at; 0 unless stopped early.
    pub stop_epoch: u32,
    /// Why it was stopped early.
    pub stop_reason: String,
    /// The order (1-based) in which its configuration was proposed; 0 for
    /// a sweep made before proposals were recorded.
    pub proposal: u32,
    /// What proposed its configuration: grid, random or tpe.
    pub proposed_by: String,
}

/// A trial just leased.
#[derive(Debug, Clone, PartialEq)]
pub struct Leased {
    /// The id every call about the trial must carry.
    pub lease_id: String,
    /// The trial, as leased.
    pub trial: TrialRow,
}

/// The answer to one worker asking for a trial.
#[derive(Debug, Clone, PartialEq)]
pub enum Leasing {
    /// A trial, leased to it.
    Leased(Box<Leased>),
    /// Nothing was queued.
    Empty,
    /// The worker id was never registered.
    UnknownWorker,
}

/// What a lease holder may do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The caller holds the lease; it was renewed.
    Held,
    /// The lease expired, was released or passed to another worker.
    Lost,
    /// The trial (or its sweep) was cancelled.
    Cancelled,
    /// The sweep's early-stopping rule stopped the trial's configuration.
    Stopped,
}

/// One epoch of one trial, as a worker reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// The trial.
    pub trial_id: i64,
    /// The lease the worker holds.
    pub lease_id: String,
    /// The epoch (1-based).
    pub epoch: u32,
    /// Its metrics, each (split, metric) once.
    pub metrics: Vec<MetricValue>,
}

/// What never changes of a trial and its reports need.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialFacts {
    /// The sweep it belongs to.
    pub sweep_id: i64,
    /// The configuration without the seed; repeats share it.
    pub config_key: String,
    /// How many epochs it trains.
    pub epochs: u32,
    /// How exactly its sweep stores metrics.
    pub precision: Precision,
}

/// The trials whose facts a store keeps at most (see
/// [`Store::record_epochs`]): far more than run at once.
const MAX_KNOWN_TRIALS: usize = 1 << 17;

/// How one trial's reports of a batch are stored.
struct Plan<'a> {
    trial_id: i64,
    /// The lease they were sent under.
    lease: &'a str,
    /// The stored epochs the trial must have for them to follow.
    need: u32,
    /// Their newest epoch.
    latest: u32,
    facts: Arc<TrialFacts>,
    /// Their places in the batch.
    reports: Vec<usize>,
}

impl<'a> Plan<'a> {
    /// The plan of the reports at `at` (in batch order) of one trial.
    fn of(
        trial_id: i64,
        lease: &'a str,
        facts: Arc<TrialFacts>,
        reports: &[EpochReport],
        at: Vec<usize>,
    ) -> Self {
        // Each epoch must be at most one past the newest before it: the
        // stored ones, or the batch's own before it.
        let (mut need, mut newest) = (0, None::<u32>);
        for &i in &at {
            let epoch = reports[i].epoch;
            if newest.is_none_or(|n| epoch > n + 1) {
                need = need.max(epoch.saturating_sub(1));
            }
            newest = Some(newest.map_or(epoch, |n| n.max(epoch)));
        }
        Plan {
            trial_id,
            lease,
            need,
            latest: newest.unwrap_or(0),
            facts,
            reports: at,
        }
    }
}

/// What became of one report of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// Stored (or stored before) and the lease renewed: what never
    /// changes of the trial.
    Held(Arc<TrialFacts>),
    /// The caller does not hold the lease (why); nothing stored.
    NotHeld(LeaseState),
    /// The epoch lies outside the trial's epochs or past the next one.
    Refused(String),
    /// No such trial.
    Unknown,
}

/// Why `epoch` of a trial of `epochs` epochs may not be stored after
/// `last`: outside the trial's epochs, or past the next one (reports come
/// in order; a repeated one is fine). None where it may.
pub fn epoch_refusal(trial_id: i64, epoch: u32, epochs: u32, last: u32) -> Option<String> {
    if epoch == 0 || epoch > epochs {
        Some(format!(
            "trial {trial_id} has epochs 1..={epochs}, not {epoch}"
        ))
    } else if epoch > last + 1 {
        Some(format!(
            "trial {trial_id} has stored epochs up to {last}; epoch {epoch} is out of order"
        ))
    } else {
        None
    }
}

/// Why a report is not stored, judged against its trial as read (held
/// under `lease`) and `last`, the newest epoch stored or taken before it;
/// None where it is stored.
fn refusal(r: &EpochReport, trial: &TrialRow, lease: &str, last: u32) -> Option<Recorded> {
    if let Some(why) = epoch_refusal(r.trial_id, r.epoch, trial.config.epochs, last) {
        Some(Recorded::Refused(why))
    } else if trial.status != status::RUNNING || lease != r.lease_id {
        Some(Recorded::NotHeld(match trial.status.as_str() {
            status::CANCELLED => LeaseState::Cancelled,
            status::STOPPED => LeaseState::Stopped,
            _ => LeaseState::Lost,
        }))
    } else {
        None
    }
}

/// Every metric of a trial at a stored epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    /// The trial.
    pub trial_id: i64,
    /// The epoch (1-based).
    pub epoch: u32,
    /// Its metrics, both splits.
    pub metrics: Packed,
}

/// One stored metric value (NaN for undefined) of a trial at an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRow {
    /// The trial.
    pub trial_id: i64,
    /// The epoch (1-based).
    pub epoch: u32,
    /// Which metric of which split, and its value.
    pub value: MetricValue,
}

/// A token as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The token's id.
    pub id: i64,
    /// Who or what it was made for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was made (ms since the Unix epoch).
    pub created_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

fn token_row(r: &AnyRow) -> Result<TokenRow> {
    let role: String = r.try_get("role")?;
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or(StoreError::UnknownRole(role))?,
        created_ms: r.try_get("created_ms")?,
        revoked_ms: r.try_get("revoked_ms")?,
    })
}

/// A trial's columns, in the order [`trial_row`] reads them.
const TRIAL_COLUMNS: &str = "t.id, t.sweep_id, t.config, t.config_key, t.repeat_index, t.status, t.attempts, \
     t.epochs_done, t.error, COALESCE(w.name, '') AS worker_name, t.updated_ms, t.preemptions, \
     t.stop_epoch, t.stop_reason, t.proposal, t.proposed_by";

/// What the row readers take from a row, by position in the statement's
/// columns: a row of either pool (see [`Store::bulk`]). Looking a column up
/// by name hashes the name for every value, a tenth of the coordinator's
/// time reading a sweep of 100,000 trials (measured).
trait Fields {
    fn int(&self, at: usize) -> Result<i64>;
    fn text(&self, at: usize) -> Result<String>;
    fn bytes(&self, at: usize) -> Result<Vec<u8>>;
}

impl<R: Row> Fields for R
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn int(&self, at: usize) -> Result<i64> {
        Ok(self.try_get(at)?)
    }

    fn text(&self, at: usize) -> Result<String> {
        Ok(self.try_get(at)?)
    }

    fn bytes(&self, at: usize) -> Result<Vec<u8>> {
        Ok(self.try_get(at)?)
    }
}

/// Each row through `read` as it arrives: the database sends the next
/// while this one is read, and no row is kept once read.
async fn read_each<R: Fields, T>(
    rows: impl tokio_stream::Stream<Item = std::result::Result<R, sqlx::Error>>,
    read: impl Fn(&dyn Fields) -> Result<T>,
) -> Result<Vec<T>> {
    use tokio_stream::StreamExt;
    tokio::pin!(rows);
    let mut out = Vec::new();
    while let Some(row) = rows.next().await {
        out.push(read(&row?)?);
    }
    Ok(out)
}

/// A value bound to a statement of [`Store::bulk`].
enum Param<'a> {
    Int(i64),
    Text(&'a str),
}

/// `sql` with `params` bound, for either driver.
fn bound<'q, DB: sqlx::Database>(
    sql: &'q str,
    params: &'q [Param<'q>],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    params
        .iter()
        .fold(sqlx::query::<DB>(sql), |query, param| match *param {
            Param::Int(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
        })
}

fn trial_row(row: &(impl Fields + ?Sized)) -> Result<TrialRow> {
    Ok(TrialRow {
        id: row.int(0)?,
        sweep_id: row.int(1)?,
        config: TrialConfig::decode(row.bytes(2)?.as_slice())?,
        config_key: row.text(3)?,
        repeat: row.int(4)? as u32,
        status: row.text(5)?,
        attempts: row.int(6)? as u32,
        epochs_done: row.int(7)? as u32,
        error: row.text(8)?,
        worker: row.text(9)?,
        updated_ms: row.int(10)?,
        preemptions: row.int(11)? as u32,
        stop_epoch: row.int(12)? as u32,
        stop_reason: row.text(13)?,
        proposal: row.int(14)? as u32,
        proposed_by: row.text(15)?,
    })
}

/// The trial and epoch of a stored epoch row (`trial_id`, `epoch`,
/// `metrics`, in that order), and its packed metrics.
fn epoch_row(r: &(impl Fields + ?Sized)) -> Result<(i64, u32, Vec<u8>)> {
    Ok((r.int(0)?, r.int(1)? as u32, r.bytes(2)?))
}

/// The condition limiting a read of a sweep's trials (`t`, the sweep `$1`)
/// to some configurations (every one when None), and the parameters it
/// binds; None when there are none to read.
fn of_keys<'a>(sweep_id: i64, config_keys: Option<&[&'a str]>) -> Option<(String, Vec<Param<'a>>)> {
    let keys = config_keys.unwrap_or_default();
    let mut of_keys = String::new();
    if config_keys.is_some() {
        if keys.is_empty() {
            return None;
        }
        let params: Vec<String> = (2..2 + keys.len()).map(|i| format!("${i}")).collect();
        of_keys = format!(" AND t.config_key IN ({})", params.join(", "));
    }
    let params = std::iter::once(Param::Int(sweep_id))
        .chain(keys.iter().map(|key| Param::Text(key)))
        .collect();
    Some((of_keys, params))
}

/// The precision of a stored name.
fn precision(name: String) -> Result<Precision> {
    Precision::parse(&name).ok_or(StoreError::UnknownPrecision(name))
}

/// A report's metrics as its sweep stores them.
fn at_precision(metrics: &[MetricValue], precision: Precision) -> Cow<'_, [MetricValue]> {
    match precision {
        Precision::Float64 => Cow::Borrowed(metrics),
        Precision::Float32 => metrics
            .iter()
            .map(|m| MetricValue {
                value: precision.round(m.value),
                ..*m
            })
            .collect(),
    }
}

fn unreadable(trial_id: i64, epoch: u32) -> StoreError {
    StoreError::Unreadable(format!(
        "trial {trial_id} epoch {epoch}: unreadable metrics"
    ))
}

/// The epochs of one row of a read of stored epochs, each (trial, epoch,
/// packing), in epoch order. Such a read selects `trial_id`, the epoch,
/// `metrics` and a count of epochs, in that order, from epochs (one epoch
/// packed, its count 0) and, with UNION ALL in the same statement (one
/// snapshot, so that no epoch is read twice or missed while it is folded),
/// from epoch_blocks (a block: its first epoch and its count).
fn stored_epochs(r: &(impl Fields + ?Sized)) -> Result<Vec<(i64, u32, Vec<u8>)>> {
    let (trial_id, epoch, bytes) = epoch_row(r)?;
    let count = r.int(3)?;
    if count == 0 {
        return Ok(vec![(trial_id, epoch, bytes)]);
    }
    let epochs =
        blocks::unpack(&bytes, count as usize).ok_or_else(|| unreadable(trial_id, epoch))?;
    Ok(epochs
        .into_iter()
        .zip(epoch..)
        .map(|(bytes, epoch)| (trial_id, epoch, bytes))
        .collect())
}

/// The metrics of one packed epoch of a trial.
fn metric_rows(trial_id: i64, epoch: u32, bytes: &[u8]) -> Result<Vec<MetricRow>> {
    let values = packed::unpack(bytes).ok_or_else(|| unreadable(trial_id, epoch))?;
    Ok(values
        .into_iter()
        .map(|value| MetricRow {
            trial_id,
            epoch,
            value,
        })
        .collect())
}

/// Moves the rows of the metrics table (one per metric, before migration
/// 0005) into epochs, a batch of trials per transaction, then drops it.
/// Safe to stop and run again, and to run from two coordinators at once.
async fn move_old_metrics(pool: &AnyPool, backend: Backend) -> Result<()> {
    let exists = match backend {
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM pg_tables WHERE tablename = 'metrics' AND schemaname = current_schema()"
        }
        Backend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'metrics'"
        }
    };
    if sqlx::query(exists)
        .fetch_one(pool)
        .await?
        .try_get::<i64, _>("n")?
        == 0
    {
        return Ok(());
    }
    let mut moved = 0u64;
    loop {
        let mut tx = pool.begin().await?;
        let trials: Vec<i64> =
            sqlx::query("SELECT DISTINCT trial_id FROM metrics ORDER BY trial_id LIMIT 100")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("trial_id"))
                .collect::<std::result::Result<_, _>>()?;
        if trials.is_empty() {
            sqlx::query("DROP TABLE metrics").execute(&mut *tx).await?;
            tx.commit().await?;
            if moved > 0 {
                tracing::info!(epochs = moved, "metrics moved to one row per epoch");
            }
            return Ok(());
        }
        let list: Vec<String> = trials.iter().map(i64::to_string).collect();
        let list = list.join(", ");
        let rows = sqlx::query(&format!(
            "SELECT trial_id, epoch, split, metric, value FROM metrics WHERE trial_id IN ({list})"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut by_epoch: std::collections::BTreeMap<(i64, i64), Vec<MetricValue>> =
            std::collections::BTreeMap::new();
        for r in &rows {
            let split = Split::parse(&r.try_get::<String, _>("split")?)
                .map_err(StoreError::UnknownMetric)?;
            let name: String = r.try_get("metric")?;
            by_epoch
                .entry((r.try_get("trial_id")?, r.try_get("epoch")?))
                .or_default()
                .push(MetricValue {
                    split,
                    metric: Metric::parse(&name, split).map_err(StoreError::UnknownMetric)?,
                    value: r.try_get::<Option<f64>, _>("value")?.unwrap_or(f64::NAN),
                });
        }
        for ((trial_id, epoch), values) in &by_epoch {
            sqlx::query(
                "INSERT INTO epochs (trial_id, epoch, metrics) VALUES ($1, $2, $3) \
                 ON CONFLICT (trial_id, epoch) DO NOTHING",
            )
            .bind(trial_id)
            .bind(epoch)
            .bind(packed::pack(values))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(&format!("DELETE FROM metrics WHERE trial_id IN ({list})"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        moved += by_epoch.len() as u64;
    }
}

/// A curve point's key: sweep, configuration, epoch.
type PointKey = (i64, String, u32);

/// Placeholders for `n` rows of `width` values each, numbered from
/// `$first`: `($1, $2, $3), ($4, $5, $6)` for (1, 3, 2).
fn tuples(first: usize, width: usize, n: usize) -> String {
    (0..n)
        .map(|i| {
            let row: Vec<String> = (0..width)
                .map(|j| format!("${}", first + width * i + j))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sql` with each point's key and its bytes from `sums` bound, in order.
fn point_rows<'q>(
    sql: &'q str,
    points: &BTreeMap<PointKey, Point>,
    sums: Vec<Vec<u8>>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    for ((sweep, key, epoch), sums) in points.keys().zip(sums) {
        q = q
            .bind(*sweep)
            .bind(key.clone())
            .bind(i64::from(*epoch))
            .bind(sums);
    }
    q
}

/// Records what newly stored epochs add to the curve points, in the
/// caller's transaction: inserts only, so that batches storing the same
/// configuration's epochs never wait for each other (see
/// [`Store::fold_curve_deltas`]).
async fn add_deltas(
    conn: &mut sqlx::AnyConnection,
    points: &BTreeMap<PointKey, Point>,
) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO curve_deltas (sweep_id, config_key, epoch, sums) VALUES {}",
        tuples(1, 4, points.len())
    );
    point_rows(&sql, points, points.values().map(Point::to_bytes).collect())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A point from its stored bytes.
fn point_of(key: &PointKey, bytes: &[u8]) -> Result<Point> {
    Point::from_bytes(bytes).ok_or_else(|| {
        StoreError::Unreadable(format!(
            "sweep {} epoch {}: unreadable curve point",
            key.0, key.2
        ))
    })
}

/// Adds `points` to the stored curve points, in the caller's transaction.
/// Rows are made first, then locked and read in key order (Postgres),
/// merged and written, so that two writers add up instead of overwriting
/// each other.
async fn add_points(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    points: &BTreeMap<PointKey, Point>,
) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    let empty = Point::default().to_bytes();
    let made = tuples(1, 4, points.len());
    let sql = format!(
        "INSERT INTO curve_points (sweep_id, config_key, epoch, sums) VALUES {made} \
         ON CONFLICT (sweep_id, config_key, epoch) DO NOTHING"
    );
    point_rows(&sql, points, vec![empty; points.len()])
        .execute(&mut *conn)
        .await?;
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT sweep_id, config_key, epoch, sums FROM curve_points \
         WHERE (sweep_id, config_key, epoch) IN (VALUES {}) \
         ORDER BY sweep_id, config_key, epoch{lock}",
        tuples(1, 3, points.len())
    );
    let mut read = sqlx::query(&sql);
    for (sweep, key, epoch) in points.keys() {
        read = read.bind(*sweep).bind(key.clone()).bind(i64::from(*epoch));
    }
    let mut stored: HashMap<PointKey, Point> = HashMap::new();
    for r in read.fetch_all(&mut *conn).await? {
        let key: PointKey = (
            r.try_get("sweep_id")?,
            r.try_get("config_key")?,
            r.try_get::<i64, _>("epoch")? as u32,
        );
        let point = point_of(&key, &r.try_get::<Vec<u8>, _>("sums")?)?;
        stored.insert(key, point);
    }
    let sql = format!(
        "INSERT INTO curve_points (sweep_id, config_key, epoch, sums) VALUES {made} \
         ON CONFLICT (sweep_id, config_key, epoch) DO UPDATE SET sums = excluded.sums"
    );
    let merged: Vec<Vec<u8>> = points
        .iter()
        .map(|(key, added)| {
            let mut sum = stored.remove(key).unwrap_or_default();
            sum.merge(added);
            sum.to_bytes()
        })
        .collect();
    point_rows(&sql, points, merged).execute(&mut *conn).await?;
    Ok(())
}

/// Builds the curve points of sweeps made before migration 0006 from their
/// stored epochs, one sweep per transaction, replacing what reports added
/// meanwhile. Safe to stop and run again, and to run from two coordinators
/// at once: a sweep is taken off the list by one of them, and its trials
/// are locked so that no report is stored while it is built.
async fn backfill_curve_points(pool: &AnyPool, backend: Backend) -> Result<()> {
    let pending: i64 = sqlx::query("SELECT COUNT(*) AS n FROM curve_backfill")
        .fetch_one(pool)
        .await?
        .try_get("n")?;
    if pending > 0 {
        // Statistics first: without them (epochs written in bulk just
        // before) Postgres reads each chunk's trials by scanning the whole
        // table: 17 minutes instead of one at 100,000 trials (measured).
        sqlx::query("ANALYZE epochs").execute(pool).await?;
    }
    loop {
        let mut tx = pool.begin().await?;
        let next: Option<i64> = sqlx::query("SELECT MIN(sweep_id) AS id FROM curve_backfill")
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        let Some(sweep_id) = next else {
            return Ok(());
        };
        let taken = sqlx::query("DELETE FROM curve_backfill WHERE sweep_id = $1")
            .bind(sweep_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if taken == 0 {
            continue;
        }
        let lock = match backend {
            Backend::Postgres => " ORDER BY id FOR UPDATE",
            Backend::Sqlite => " ORDER BY id",
        };
        let trials: Vec<(i64, String)> = sqlx::query(&format!(
            "SELECT id, config_key FROM trials WHERE sweep_id = $1{lock}"
        ))
        .bind(sweep_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("config_key")?)))
        .collect::<Result<_>>()?;
        let mut points: BTreeMap<PointKey, Point> = BTreeMap::new();
        for chunk in trials.chunks(500) {
            let keys: HashMap<i64, &str> = chunk.iter().map(|(id, k)| (*id, k.as_str())).collect();
            let list: Vec<String> = chunk.iter().map(|(id, _)| id.to_string()).collect();
            let list = list.join(", ");
            let rows = sqlx::query(&format!(
                "SELECT trial_id, epoch, metrics, CAST(0 AS BIGINT) AS epoch_count FROM epochs WHERE trial_id IN ({list}) \
                 UNION ALL SELECT trial_id, first_epoch, metrics, epoch_count FROM epoch_blocks \
                 WHERE trial_id IN ({list})"
            ))
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                for (trial_id, epoch, bytes) in stored_epochs(r)? {
                    let metrics =
                        packed::unpack(&bytes).ok_or_else(|| unreadable(trial_id, epoch))?;
                    let key = (sweep_id, keys[&trial_id].to_string(), epoch);
                    points.entry(key).or_default().add(&metrics);
                }
            }
        }
        // Deltas first: a folder that took some of them commits before
        // this goes on (it waits on nothing this holds), and what it
        // folded into the points is deleted with them below.
        for table in ["curve_deltas", "curve_points"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE sweep_id = $1"))
                .bind(sweep_id)
                .execute(&mut *tx)
                .await?;
        }
        let points: Vec<(PointKey, Point)> = points.into_iter().collect();
        for chunk in points.chunks(1000) {
            let chunk: BTreeMap<PointKey, Point> = chunk.iter().cloned().collect();
            add_points(&mut tx, backend, &chunk).await?;
        }
        tx.commit().await?;
        tracing::info!(sweep = sweep_id, "curve points built from stored epochs");
    }
}

/// Each trial's newest epoch among the `inserted` of `rows` (the first
/// report of it, the one stored) becomes its last epoch, unless a newer
/// one is there.
async fn set_last_epochs(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[&EpochReport],
    blobs: &[Vec<u8>],
    inserted: &std::collections::HashSet<(i64, i64)>,
) -> Result<()> {
    let mut newest: BTreeMap<i64, (&EpochReport, &[u8])> = BTreeMap::new();
    for (r, blob) in rows
        .iter()
        .zip(blobs)
        .filter(|(r, _)| inserted.contains(&(r.trial_id, i64::from(r.epoch))))
    {
        let slot = newest.entry(r.trial_id).or_insert((r, blob));
        if r.epoch > slot.0.epoch {
            *slot = (r, blob);
        }
    }
    if newest.is_empty() {
        return Ok(());
    }
    let values = tuples(1, 3, newest.len());
    let sql = format!(
        "INSERT INTO last_epochs (trial_id, epoch, metrics) VALUES {} \
         ON CONFLICT (trial_id) DO UPDATE SET epoch = excluded.epoch, metrics = excluded.metrics \
         WHERE last_epochs.epoch < excluded.epoch",
        values
    );
    let mut upsert = sqlx::query(&sql);
    for (r, blob) in newest.into_values() {
        upsert = upsert.bind(r.trial_id).bind(i64::from(r.epoch)).bind(blob);
    }
    upsert.execute(&mut **tx).await?;
    Ok(())
}

/// Fills `last_epochs` from the stored epochs, once, for a database made
/// before migration 0009: the first coordinator to connect takes the
/// marker and fills it in the same transaction; a report stored meanwhile
/// keeps its newer epoch.
async fn backfill_last_epochs(pool: &AnyPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    let pending = sqlx::query("DELETE FROM last_epochs_backfill")
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if pending > 0 {
        let filled = sqlx::query(
            "INSERT INTO last_epochs (trial_id, epoch, metrics) \
             SELECT e.trial_id, e.epoch, e.metrics FROM trials t JOIN epochs e ON e.trial_id = t.id \
             AND e.epoch = (SELECT MAX(m.epoch) FROM epochs m WHERE m.trial_id = t.id) \
             ON CONFLICT (trial_id) DO NOTHING",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tracing::info!(trials = filled, "last epochs filled from stored epochs");
    }
    tx.commit().await?;
    Ok(())
}

/// Gives the trials that may still be leased, queued before migration 0010,
/// their pack keys.
async fn backfill_pack_keys(pool: &AnyPool) -> Result<()> {
    let rows =
        sqlx::query("SELECT id, config FROM trials WHERE pack_key = '' AND status IN ($1, $2)")
            .bind(status::QUEUED)
            .bind(status::RUNNING)
            .fetch_all(pool)
            .await?;
    for row in &rows {
        let config: Vec<u8> = row.try_get("config")?;
        let config = TrialConfig::decode(config.as_slice())?;
        sqlx::query("UPDATE trials SET pack_key = $1 WHERE id = $2")
            .bind(proto::config::pack_key(&config))
            .bind(row.try_get::<i64, _>("id")?)
            .execute(pool)
            .await?;
    }
    if !rows.is_empty() {
        tracing::info!(trials = rows.len(), "pack keys given to queued trials");
    }
    Ok(())
}

impl Store {
    /// Connects to `postgres://...` or `sqlite://FILE` (created if
    /// missing) and applies the backend's migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let url = if rest.contains("mode=") {
                url.to_string()
            } else if rest.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        // No ping before each use: it doubled every statement's round
        // trips; a connection found broken fails its statement, and every
        // caller retries (workers) or reports it (users).
        let mut options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 32 })
            .test_before_acquire(false);
        if backend == Backend::Postgres {
            // Postgres JIT-compiles a statement it costs high (a sweep's
            // results at 100,000 trials) before running it: 1.2 s of
            // compiling for 0.6 s of reading, measured. Each runs once.
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET jit = off").execute(conn).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        let native = match backend {
            Backend::Postgres => Some(
                // Pinged before each use (unlike the pool above): a ping is
                // nothing beside a read this size, and a read after a
                // database restart then finds a live connection.
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .test_before_acquire(true)
                    .connect_lazy_with(
                        url.parse::<sqlx::postgres::PgConnectOptions>()?
                            .options([("jit", "off")]),
                    ),
            ),
            Backend::Sqlite => None,
        };
        match backend {
            Backend::Postgres => sqlx::migrate!("../migrations/postgres").run(&pool).await?,
            Backend::Sqlite => {
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&pool)
                    .await?;
                sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
            }
        }
        move_old_metrics(&pool, backend).await?;
        backfill_curve_points(&pool, backend).await?;
        backfill_last_epochs(&pool).await?;
        backfill_pack_keys(&pool).await?;
        let queued = Arc::new(Notify::new());
        let tokens = Arc::new(TokenCache::default());
        if backend == Backend::Postgres {
            tokio::spawn(listen(
                url,
                Arc::downgrade(&queued),
                Arc::downgrade(&tokens),
            ));
        }
        Ok(Self {
            pool,
            native,
            backend,
            queued,
            known_workers: Default::default(),
            facts: Default::default(),
            tokens,
        })
    }

    /// Every row of a read that may return very many (a sweep's trials,
    /// or its epochs), each through `read`. On Postgres it goes through
    /// the native driver: the backend-neutral pool copies every value and
    /// column of every row first, which was most of the coordinator's time
    /// answering results for 100,000 trials (measured).
    async fn bulk<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        read: impl Fn(&dyn Fields) -> Result<T>,
    ) -> Result<Vec<T>> {
        match &self.native {
            Some(pg) => read_each(bound::<sqlx::Postgres>(sql, params).fetch(pg), read).await,
            None => read_each(bound::<sqlx::Any>(sql, params).fetch(&self.pool), read).await,
        }
    }

    /// Notified when trials are queued (see [`crate::lease`]).
    pub fn queued(&self) -> &Notify {
        &self.queued
    }

    /// Tells waiting lease calls, here and on every coordinator of the
    /// database, that `n` trials were queued.
    async fn announce(&self, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        match self.backend {
            // The listener passes it on to this coordinator too.
            Backend::Postgres => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(QUEUED_CHANNEL)
                    .bind(n.to_string())
                    .execute(&self.pool)
                    .await?;
            }
            Backend::Sqlite => wake(&self.queued, n),
        }
        Ok(())
    }

    /// Which database is behind the store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Stores a sweep and the trials of its plan in one transaction.
    pub async fn create_sweep(&self, yaml: &str, plan: &SweepPlan) -> Result<i64> {
        let now = now_ms();
        let mut made: Vec<&str> = plan.trials.iter().map(|t| t.config_key.as_str()).collect();
        made.sort_unstable();
        made.dedup();
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO sweeps (name, description, yaml, metric, metric_split, maximize, created_ms, \
             method, budget, proposed, early_stopping, metric_precision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(&plan.name)
        .bind(&plan.description)
        .bind(yaml)
        .bind(plan.objective.metric.name())
        .bind(plan.objective.split.name())
        .bind(i64::from(plan.objective.maximize))
        .bind(now)
        .bind(plan.method.name())
        .bind(i64::from(plan.budget))
        .bind(made.len() as i64)
        // Empty for none: a bound NULL would give the cached statement a
        // second parameter type.
        .bind(
            plan.early_stopping
                .as_ref()
                .map(|e| e.encode_to_vec())
                .unwrap_or_default(),
        )
        .bind(plan.precision.name())
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        if !plan.stop_epochs.is_empty() {
            let sql = format!(
                "INSERT INTO sweep_stop_epochs (sweep_id, epoch) VALUES {}",
                tuples(1, 2, plan.stop_epochs.len())
            );
            let mut insert = sqlx::query(&sql);
            for &epoch in &plan.stop_epochs {
                insert = insert.bind(id).bind(i64::from(epoch));
            }
            insert.execute(&mut *tx).await?;
        }
        insert_trials(&mut tx, id, &plan.trials, now).await?;
        tx.commit().await?;
        self.announce(plan.trials.len() as u64).await?;
        Ok(id)
    }

    /// Adds the trials of the sweep's configuration number `expected + 1`
    /// unless another one was added since the caller read `expected`
    /// configurations (then false, and nothing changes).
    pub async fn add_configuration(
        &self,
        sweep_id: i64,
        expected: u32,
        trials: &[PlannedTrial],
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let counted = sqlx::query(
            "UPDATE sweeps SET proposed = proposed + 1 \
             WHERE id = $1 AND proposed = $2 AND proposed < budget AND cancelled = 0",
        )
        .bind(sweep_id)
        .bind(i64::from(expected))
        .execute(&mut *tx)
        .await?;
        if counted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_trials(&mut tx, sweep_id, trials, now_ms()).await?;
        tx.commit().await?;
        self.announce(trials.len() as u64).await?;
        Ok(true)
    }

    /// Lowers a sweep's budget to the `proposed` configurations it has:
    /// its search found no configuration it had not tried.
    pub async fn close_budget(&self, sweep_id: i64, proposed: u32) -> Result<()> {
        sqlx::query("UPDATE sweeps SET budget = $1 WHERE id = $2 AND proposed = $1")
            .bind(i64::from(proposed))
            .bind(sweep_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// All sweeps, newest first, with trial counts.
    pub async fn sweeps(&self) -> Result<Vec<SweepRow>> {
        let rows = sqlx::query("SELECT * FROM sweeps ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.sweep_row(&row).await?);
        }
        Ok(out)
    }

    /// One sweep, if it exists.
    pub async fn sweep(&self, id: i64) -> Result<Option<SweepRow>> {
        match sqlx::query("SELECT * FROM sweeps WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        {
            Some(row) => Ok(Some(self.sweep_row(&row).await?)),
            None => Ok(None),
        }
    }

    async fn sweep_row(&self, row: &AnyRow) -> Result<SweepRow> {
        let id: i64 = row.try_get("id")?;
        let split = Split::parse(&row.try_get::<String, _>("metric_split")?)
            .map_err(StoreError::UnknownMetric)?;
        let mut counts = StatusCounts::default();
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM trials WHERE sweep_id = $1 GROUP BY status",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let n = r.try_get::<i64, _>("n")? as u32;
            match r.try_get::<String, _>("status")?.as_str() {
                status::QUEUED => counts.queued = n,
                status::RUNNING => counts.running = n,
                status::COMPLETED => counts.completed = n,
                status::FAILED => counts.failed = n,
                status::STOPPED => counts.stopped = n,
                _ => counts.cancelled = n,
            }
        }
        Ok(SweepRow {
            id,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            yaml: row.try_get("yaml")?,
            objective: Objective {
                metric: Metric::parse(&row.try_get::<String, _>("metric")?, split)
                    .map_err(StoreError::UnknownMetric)?,
                split,
                maximize: row.try_get::<i64, _>("maximize")? != 0,
            },
            cancelled: row.try_get::<i64, _>("cancelled")? != 0,
            method: {
                let method: String = row.try_get("method")?;
                Method::parse(&method).ok_or(StoreError::UnknownMethod(method))?
            },
            budget: row.try_get::<i64, _>("budget")? as u32,
            proposed: row.try_get::<i64, _>("proposed")? as u32,
            early_stopping: row
                .try_get::<Option<Vec<u8>>, _>("early_stopping")?
                .filter(|bytes| !bytes.is_empty())
                .map(|bytes| EarlyStopping::decode(bytes.as_slice()))
                .transpose()?,
            stop_epochs: self.stop_epochs(id).await?,
            precision: precision(row.try_get("metric_precision")?)?,
            created_ms: row.try_get("created_ms")?,
            counts,
        })
    }

    /// The trials of a sweep in id order.
    pub async fn trials(&self, sweep_id: i64) -> Result<Vec<TrialRow>> {
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials t LEFT JOIN workers w ON w.id = t.worker_id \
             WHERE t.sweep_id = $1 ORDER BY t.id"
        );
        self.bulk(&sql, &[Param::Int(sweep_id)], |r| trial_row(r))
            .await
    }

    /// One trial.
    pub async fn trial(&self, id: i64) -> Result<Option<TrialRow>> {
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials t LEFT JOIN workers w ON w.id = t.worker_id WHERE t.id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(trial_row).transpose()
    }

    /// Trials changed after `since_ms` (of one sweep, or all when 0).
    pub async fn trials_changed_since(
        &self,
        sweep_id: i64,
        since_ms: i64,
    ) -> Result<Vec<TrialRow>> {
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials t LEFT JOIN workers w ON w.id = t.worker_id \
             WHERE t.updated_ms > $1 AND ($2 = 0 OR t.sweep_id = $2) ORDER BY t.updated_ms, t.id"
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .bind(sweep_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(trial_row).collect()
    }

    /// Cancels a sweep: its queued and running trials become cancelled.
    /// Returns false when there is no such sweep.
    pub async fn cancel_sweep(&self, id: i64) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("UPDATE sweeps SET cancelled = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE trials SET status = $1, lease_id = NULL, lease_expires_ms = NULL, finished_ms = $2, updated_ms = $2 \
             WHERE sweep_id = $3 AND status IN ($4, $5)",
        )
        .bind(status::CANCELLED)
        .bind(now)
        .bind(id)
        .bind(status::QUEUED)
        .bind(status::RUNNING)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(found.rows_affected() > 0)
    }

    /// (sweep, status, trials) of every sweep's queued and running trials.
    pub async fn unfinished_counts(&self) -> Result<Vec<(i64, String, u64)>> {
        let rows = sqlx::query(
            "SELECT sweep_id, status, COUNT(*) AS n FROM trials WHERE status IN ($1, $2) \
             GROUP BY sweep_id, status",
        )
        .bind(status::QUEUED)
        .bind(status::RUNNING)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("sweep_id")?,
                    r.try_get("status")?,
                    r.try_get::<i64, _>("n")? as u64,
                ))
            })
            .collect()
    }

    /// Workers that hold a running trial or asked for one within `within`.
    pub async fn active_workers(&self, within: Duration) -> Result<u64> {
        let since = now_ms() - within.as_millis() as i64;
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM workers w WHERE w.last_seen_ms > $1 \
             OR EXISTS (SELECT 1 FROM trials t WHERE t.worker_id = w.id AND t.status = $2)",
        )
        .bind(since)
        .bind(status::RUNNING)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(n as u64)
    }

    /// Records a worker and returns its id.
    pub async fn register_worker(&self, name: &str, device: &str, slots: u32) -> Result<i64> {
        let now = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO workers (name, device, slots, registered_ms, last_seen_ms) VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(name)
        .bind(device)
        .bind(i64::from(slots))
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .try_get("id")?;
        self.known_workers.lock().expect("not poisoned").insert(id);
        Ok(id)
    }

    /// Takes the oldest queued trials, one for each worker asking (in
    /// order), holding each for `lease_ms`, in one statement (the workers'
    /// last_seen is renewed beside it); a worker asking with a pack key
    /// gets the oldest trial of that key first (one more statement per
    /// key), any other when there is none. A trial goes to one worker only,
    /// whatever other coordinators share the database.
    pub async fn lease_many(&self, asks: &[LeaseAsk], lease_ms: i64) -> Result<Vec<Leasing>> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let workers: Vec<i64> = asks.iter().map(|a| a.worker).collect();
        let now = now_ms();
        let mut ids: Vec<i64> = workers.clone();
        ids.sort_unstable();
        ids.dedup();
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let list = list.join(", ");
        let unsure: Vec<String> = {
            let known = self.known_workers.lock().expect("not poisoned");
            ids.iter()
                .filter(|id| !known.contains(id))
                .map(i64::to_string)
                .collect()
        };
        if !unsure.is_empty() {
            let found: Vec<i64> = sqlx::query(&format!(
                "SELECT id FROM workers WHERE id IN ({})",
                unsure.join(", ")
            ))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
            self.known_workers
                .lock()
                .expect("not poisoned")
                .extend(found);
        }
        let known: std::collections::HashSet<i64> = {
            let known = self.known_workers.lock().expect("not poisoned");
            ids.into_iter().filter(|id| known.contains(id)).collect()
        };
        // When each asked last, off the lease's path.
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let seen = sqlx::query(&format!(
                "UPDATE workers SET last_seen_ms = $1 WHERE id IN ({list})"
            ))
            .bind(now)
            .execute(&pool)
            .await;
            if let Err(e) = seen {
                tracing::warn!(error = %e, "recording when workers were seen failed");
            }
        });
        let asking: Vec<Asker> = asks
            .iter()
            .enumerate()
            .filter(|(_, a)| known.contains(&a.worker))
            .map(|(i, a)| Asker {
                at: i,
                worker: a.worker,
                lease: format!("{:032x}", rand::rng().random::<u128>()),
                pack_with: a.pack_with.as_str(),
            })
            .collect();
        let mut answers: Vec<Leasing> = workers
            .iter()
            .map(|w| {
                if known.contains(w) {
                    Leasing::Empty
                } else {
                    Leasing::UnknownWorker
                }
            })
            .collect();
        if asking.is_empty() {
            return Ok(answers);
        }
        let mut unserved = Vec::new();
        let mut by_key: BTreeMap<&str, Vec<Asker>> = Default::default();
        for asker in asking {
            if asker.pack_with.is_empty() {
                unserved.push(asker);
            } else {
                by_key.entry(asker.pack_with).or_default().push(asker);
            }
        }
        for (key, askers) in by_key {
            unserved.extend(
                self.take(askers, Some(key), lease_ms, now, &mut answers)
                    .await?,
            );
        }
        self.take(unserved, None, lease_ms, now, &mut answers)
            .await?;
        Ok(answers)
    }

    /// Leases the oldest queued trials (of `pack_key` when given) to
    /// `askers`, one each, setting their answers; returns those left
    /// without one.
    async fn take<'a>(
        &self,
        askers: Vec<Asker<'a>>,
        pack_key: Option<&str>,
        lease_ms: i64,
        now: i64,
        answers: &mut [Leasing],
    ) -> Result<Vec<Asker<'a>>> {
        if askers.is_empty() {
            return Ok(askers);
        }
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let values = tuples(5, 3, askers.len());
        let sql = format!(
            "WITH picked AS (SELECT id FROM trials WHERE status = $1{of_key} ORDER BY id LIMIT {n}{lock}), \
             ranked AS (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS rn FROM picked), \
             asking (rn, lease, worker) AS (VALUES {values}) \
             UPDATE trials SET status = $2, lease_id = asking.lease, worker_id = asking.worker, \
               lease_expires_ms = $3, attempts = attempts + 1, started_ms = COALESCE(started_ms, $4), \
               updated_ms = $4 \
             FROM ranked JOIN asking ON asking.rn = ranked.rn WHERE trials.id = ranked.id \
             RETURNING trials.id, trials.sweep_id, trials.config, trials.config_key, \
               trials.repeat_index, trials.status, trials.attempts, trials.epochs_done, trials.error, \
               (SELECT name FROM workers WHERE workers.id = trials.worker_id) AS worker_name, \
               trials.updated_ms, trials.preemptions, trials.stop_epoch, trials.stop_reason, \
               trials.proposal, trials.proposed_by, trials.lease_id AS lease, \
               (SELECT metric_precision FROM sweeps WHERE sweeps.id = trials.sweep_id) AS metric_precision",
            n = askers.len(),
            of_key = pack_key.map_or(String::new(), |_| format!(
                " AND pack_key = ${}",
                3 * askers.len() + 5
            )),
        );
        let mut query = sqlx::query(&sql)
            .bind(status::QUEUED)
            .bind(status::RUNNING)
            .bind(now + lease_ms)
            .bind(now);
        for (rank, asker) in askers.iter().enumerate() {
            query = query
                .bind(rank as i64 + 1)
                .bind(asker.lease.clone())
                .bind(asker.worker);
        }
        if let Some(key) = pack_key {
            query = query.bind(key.to_string());
        }
        let by_lease: HashMap<&str, usize> =
            askers.iter().map(|a| (a.lease.as_str(), a.at)).collect();
        let mut served = std::collections::HashSet::new();
        for row in query.fetch_all(&self.pool).await? {
            let lease: String = row.try_get("lease")?;
            if let Some(&at) = by_lease.get(lease.as_str()) {
                served.insert(at);
                let trial = trial_row(&row)?;
                self.learn(&trial, precision(row.try_get("metric_precision")?)?);
                answers[at] = Leasing::Leased(Box::new(Leased {
                    lease_id: lease,
                    trial,
                }));
            }
        }
        Ok(askers
            .into_iter()
            .filter(|a| !served.contains(&a.at))
            .collect())
    }

    /// Where the lease on `trial_id` stands for the holder of `lease_id`,
    /// renewing it for `lease_ms` when held.
    pub async fn renew(&self, trial_id: i64, lease_id: &str, lease_ms: i64) -> Result<LeaseState> {
        let now = now_ms();
        let renewed = sqlx::query(
            "UPDATE trials SET lease_expires_ms = $1 \
             WHERE id = $2 AND lease_id = $3 AND status = $4",
        )
        .bind(now + lease_ms)
        .bind(trial_id)
        .bind(lease_id)
        .bind(status::RUNNING)
        .execute(&self.pool)
        .await?;
        if renewed.rows_affected() > 0 {
            return Ok(LeaseState::Held);
        }
        self.lease_state(trial_id).await
    }

    /// Why a caller does not hold the lease of `trial_id`.
    async fn lease_state(&self, trial_id: i64) -> Result<LeaseState> {
        let status: Option<String> = sqlx::query("SELECT status FROM trials WHERE id = $1")
            .bind(trial_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get("status"))
            .transpose()?;
        Ok(match status.as_deref() {
            Some(status::CANCELLED) => LeaseState::Cancelled,
            Some(status::STOPPED) => LeaseState::Stopped,
            _ => LeaseState::Lost,
        })
    }

    /// Stops a configuration (of `epochs` epochs) early, at `rung` for
    /// `reason`: its queued trials and its running ones that have not
    /// stored their last epoch. Returns how many it stopped.
    pub async fn stop_configuration(
        &self,
        sweep_id: i64,
        config_key: &str,
        epochs: u32,
        rung: u32,
        reason: &str,
    ) -> Result<u64> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE trials SET status = $1, stop_epoch = $2, stop_reason = $3, lease_id = NULL, \
             lease_expires_ms = NULL, finished_ms = $4, updated_ms = $4 \
             WHERE sweep_id = $5 AND config_key = $6 AND status IN ($7, $8) AND epochs_done < $9",
        )
        .bind(status::STOPPED)
        .bind(i64::from(rung))
        .bind(reason)
        .bind(now)
        .bind(sweep_id)
        .bind(config_key)
        .bind(status::QUEUED)
        .bind(status::RUNNING)
        .bind(i64::from(epochs))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Per trial of the sweep with a value at `epoch` of one metric of one
    /// split: its configuration, its repeat and the value (NaN for
    /// undefined).
    pub async fn rung_values(
        &self,
        sweep_id: i64,
        split: Split,
        metric: Metric,
        epoch: u32,
    ) -> Result<Vec<(String, u32, f64)>> {
        let rows = sqlx::query(&format!(
            "SELECT e.trial_id, e.epoch, e.metrics, CAST(0 AS BIGINT) AS epoch_count, t.config_key, t.repeat_index \
             FROM trials t JOIN epochs e ON e.trial_id = t.id WHERE t.sweep_id = $1 AND e.epoch = $2 \
             UNION ALL SELECT b.trial_id, CAST({epoch} AS BIGINT), {}, CAST(1 AS BIGINT), t.config_key, \
             t.repeat_index FROM trials t JOIN epoch_blocks b ON b.trial_id = t.id \
             WHERE t.sweep_id = $1 AND b.first_epoch = $3 AND b.first_epoch + b.epoch_count > $2",
            blocks::slice_sql(&epoch.to_string())
        ))
        .bind(sweep_id)
        .bind(i64::from(epoch))
        .bind(i64::from(blocks::first_of(epoch)))
        .fetch_all(&self.pool)
        .await?;
        let slot = packed::slot_of(split, metric);
        let mut out = Vec::new();
        for r in &rows {
            for (trial_id, at, bytes) in stored_epochs(r)? {
                let value =
                    packed::value_of(&bytes, slot).ok_or_else(|| unreadable(trial_id, at))?;
                if let Some(value) = value {
                    out.push((
                        r.try_get("config_key")?,
                        r.try_get::<i64, _>("repeat_index")? as u32,
                        value,
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The trials of one configuration of a sweep.
    pub async fn configuration_size(&self, sweep_id: i64, config_key: &str) -> Result<u32> {
        let n: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM trials WHERE sweep_id = $1 AND config_key = $2")
                .bind(sweep_id)
                .bind(config_key)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        Ok(n as u32)
    }

    /// Stores a batch of epoch reports (from any workers), renewing the
    /// leases of their holders: the answer to each report, in order. A
    /// repeated report stores nothing twice; a report from a caller without
    /// the lease, or of an epoch outside its trial's or out of order,
    /// stores nothing.
    ///
    /// A trial whose facts this coordinator knows (it leased the trial, or
    /// read it for an earlier report) is stored without being read first:
    /// the statement that renews its lease also checks that the caller
    /// holds it and that the batch's epochs follow the stored ones. Other
    /// trials, and any that statement turns down, are read and each report
    /// judged against the trial as read.
    pub async fn record_epochs(
        &self,
        reports: &[EpochReport],
        lease_ms: i64,
    ) -> Result<Vec<Recorded>> {
        let mut answers: Vec<Option<Recorded>> = vec![None; reports.len()];
        let (known, mut unknown) = self.known_plans(reports);
        let held = self.store_plans(&known, reports, lease_ms).await?;
        for plan in known {
            if held.contains(&plan.trial_id) {
                for &i in &plan.reports {
                    answers[i] = Some(Recorded::Held(plan.facts.clone()));
                }
            } else {
                unknown.extend(plan.reports);
            }
        }
        unknown.sort_unstable();
        for (i, answer) in self.record_read(reports, &unknown, lease_ms).await? {
            answers[i] = Some(answer);
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("each report is answered by one of the two paths"))
            .collect())
    }

    /// The reports of trials whose facts are known, one plan per trial,
    /// each to be stored if the trial's stored epochs allow; the places of
    /// the others (trials not known, reports under two leases of one trial,
    /// epochs outside a trial's).
    fn known_plans<'a>(&self, reports: &'a [EpochReport]) -> (Vec<Plan<'a>>, Vec<usize>) {
        let mut by_trial: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, r) in reports.iter().enumerate() {
            by_trial.entry(r.trial_id).or_default().push(i);
        }
        let facts = self.facts.lock().expect("not poisoned");
        let mut plans = Vec::new();
        let mut others = Vec::new();
        for (trial_id, at) in by_trial {
            let lease = reports[at[0]].lease_id.as_str();
            let plan = facts.get(&trial_id).filter(|f| {
                at.iter().all(|&i| {
                    let r = &reports[i];
                    r.lease_id == lease && (1..=f.epochs).contains(&r.epoch)
                })
            });
            match plan {
                Some(f) => plans.push(Plan::of(trial_id, lease, f.clone(), reports, at)),
                None => others.extend(at),
            }
        }
        (plans, others)
    }

    /// Judges the reports at `at` against their trials as read, stores
    /// those whose caller holds the lease, and answers each.
    async fn record_read(
        &self,
        reports: &[EpochReport],
        at: &[usize],
        lease_ms: i64,
    ) -> Result<Vec<(usize, Recorded)>> {
        if at.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<i64> = at.iter().map(|&i| reports[i].trial_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT {TRIAL_COLUMNS}, COALESCE(t.lease_id, '') AS lease, s.metric_precision \
             FROM trials t JOIN sweeps s ON s.id = t.sweep_id \
             LEFT JOIN workers w ON w.id = t.worker_id WHERE t.id IN ({})",
            list.join(", ")
        );
        let mut trials: HashMap<i64, (TrialRow, String, Precision)> = HashMap::new();
        for row in sqlx::query(&sql).fetch_all(&self.pool).await? {
            let trial = trial_row(&row)?;
            let precision = precision(row.try_get("metric_precision")?)?;
            trials.insert(trial.id, (trial, row.try_get("lease")?, precision));
        }
        // Each report checked against the trial as read, and the epochs
        // before it in the batch.
        let mut done: HashMap<i64, u32> = HashMap::new();
        let mut answers = Vec::with_capacity(at.len());
        let mut accepted: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for &i in at {
            let r = &reports[i];
            let Some((trial, lease, _)) = trials.get(&r.trial_id) else {
                answers.push((i, Recorded::Unknown));
                continue;
            };
            let last = *done.get(&r.trial_id).unwrap_or(&trial.epochs_done);
            match refusal(r, trial, lease, last) {
                Some(answer) => answers.push((i, answer)),
                None => {
                    done.insert(r.trial_id, last.max(r.epoch));
                    accepted.entry(r.trial_id).or_default().push(i);
                }
            }
        }
        // What a plan needs of the stored epochs, the trial as read had:
        // its update fails only where the lease was lost meanwhile.
        let plans: Vec<Plan> = accepted
            .into_iter()
            .map(|(trial_id, at)| {
                let (trial, lease, precision) = &trials[&trial_id];
                Plan::of(trial_id, lease, self.learn(trial, *precision), reports, at)
            })
            .collect();
        let held = self.store_plans(&plans, reports, lease_ms).await?;
        for plan in plans {
            let answer = if held.contains(&plan.trial_id) {
                Recorded::Held(plan.facts)
            } else {
                // A lease lost between the read and the update.
                Recorded::NotHeld(self.lease_state(plan.trial_id).await?)
            };
            answers.extend(plan.reports.into_iter().map(|i| (i, answer.clone())));
        }
        Ok(answers)
    }

    /// Keeps what never changes of `trial` for its later reports (see
    /// [`Store::record_epochs`]), and returns it.
    fn learn(&self, trial: &TrialRow, precision: Precision) -> Arc<TrialFacts> {
        let facts = Arc::new(TrialFacts {
            sweep_id: trial.sweep_id,
            config_key: trial.config_key.clone(),
            epochs: trial.config.epochs,
            precision,
        });
        let mut known = self.facts.lock().expect("not poisoned");
        if known.len() >= MAX_KNOWN_TRIALS {
            // Trials that ended elsewhere or were abandoned are never
            // forgotten one by one; those still reporting are read again.
            known.clear();
        }
        known.insert(trial.id, facts.clone());
        facts
    }

    /// In one transaction: renews the lease of each plan's trial and
    /// advances its stored epochs, where the caller still holds it and its
    /// stored epochs reach the plan's `need`; then stores those trials'
    /// reports. Returns the trials it stored.
    async fn store_plans(
        &self,
        plans: &[Plan<'_>],
        reports: &[EpochReport],
        lease_ms: i64,
    ) -> Result<std::collections::HashSet<i64>> {
        if plans.is_empty() {
            return Ok(Default::default());
        }
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "WITH r (id, lease, need, epoch) AS (VALUES {}) \
             UPDATE trials SET lease_expires_ms = $1, updated_ms = $2, \
               epochs_done = CASE WHEN trials.epochs_done < r.epoch THEN r.epoch ELSE trials.epochs_done END \
             FROM r WHERE trials.id = r.id AND trials.lease_id = r.lease AND trials.status = $3 \
               AND trials.epochs_done >= r.need \
             RETURNING trials.id",
            tuples(4, 4, plans.len())
        );
        let mut update = sqlx::query(&sql)
            .bind(now + lease_ms)
            .bind(now)
            .bind(status::RUNNING);
        for p in plans {
            update = update
                .bind(p.trial_id)
                .bind(p.lease)
                .bind(i64::from(p.need))
                .bind(i64::from(p.latest));
        }
        let held: std::collections::HashSet<i64> = update
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
        let mut at: Vec<usize> = plans
            .iter()
            .filter(|p| held.contains(&p.trial_id))
            .flat_map(|p| p.reports.iter().copied())
            .filter(|&i| !reports[i].metrics.is_empty())
            .collect();
        at.sort_unstable();
        let rows: Vec<&EpochReport> = at.iter().map(|&i| &reports[i]).collect();
        if !rows.is_empty() {
            let sql = format!(
                "INSERT INTO epochs (trial_id, epoch, metrics) VALUES {} \
                 ON CONFLICT (trial_id, epoch) DO NOTHING RETURNING trial_id, epoch",
                tuples(1, 3, rows.len())
            );
            let facts: HashMap<i64, &TrialFacts> =
                plans.iter().map(|p| (p.trial_id, &*p.facts)).collect();
            // At the sweep's precision, for the epochs, the last epochs and
            // the curves alike; packed once.
            let values: Vec<Cow<[MetricValue]>> = rows
                .iter()
                .map(|r| at_precision(&r.metrics, facts[&r.trial_id].precision))
                .collect();
            let blobs: Vec<Vec<u8>> = values.iter().map(|v| packed::pack(v)).collect();
            let mut insert = sqlx::query(&sql);
            for (r, blob) in rows.iter().zip(&blobs) {
                insert = insert
                    .bind(r.trial_id)
                    .bind(i64::from(r.epoch))
                    .bind(blob.as_slice());
            }
            // Only epochs stored now (not ones stored before) count in the
            // curves.
            let inserted: std::collections::HashSet<(i64, i64)> = insert
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("trial_id")?, r.try_get("epoch")?)))
                .collect::<Result<_>>()?;
            set_last_epochs(&mut tx, &rows, &blobs, &inserted).await?;
            let mut points: BTreeMap<PointKey, Point> = BTreeMap::new();
            for (r, values) in rows
                .iter()
                .zip(&values)
                .filter(|(r, _)| inserted.contains(&(r.trial_id, i64::from(r.epoch))))
            {
                let f = facts[&r.trial_id];
                points
                    .entry((f.sweep_id, f.config_key.clone(), r.epoch))
                    .or_default()
                    .add(values);
            }
            add_deltas(&mut tx, &points).await?;
        }
        tx.commit().await?;
        Ok(held)
    }

    /// Ends held trials as completed or failed, in one statement (a
    /// statement more for each trial named twice): for each, in order, its
    /// sweep, or None when the caller no longer holds the lease.
    pub async fn finish_many(&self, finishes: &[Finish]) -> Result<Vec<Option<i64>>> {
        let now = now_ms();
        let mut answers = vec![None; finishes.len()];
        let mut pending: Vec<usize> = (0..finishes.len()).collect();
        while !pending.is_empty() {
            // Each trial once a statement, so that what it returns (trial
            // ids) says whose finish took.
            let mut named = std::collections::HashSet::new();
            let (now_in, later): (Vec<usize>, Vec<usize>) = pending
                .into_iter()
                .partition(|&i| named.insert(finishes[i].trial_id));
            pending = later;
            let values = tuples(3, 4, now_in.len());
            let sql = format!(
                "WITH r (id, lease, status, error) AS (VALUES {}) \
                 UPDATE trials SET status = r.status, error = r.error, lease_id = NULL, \
                 lease_expires_ms = NULL, finished_ms = $1, updated_ms = $1 FROM r \
                 WHERE trials.id = r.id AND trials.lease_id = r.lease AND trials.status = $2 \
                 RETURNING trials.id, trials.sweep_id",
                values
            );
            let mut update = sqlx::query(&sql).bind(now).bind(status::RUNNING);
            for &i in &now_in {
                let f = &finishes[i];
                let (status, error) = match &f.failure {
                    None => (status::COMPLETED, ""),
                    Some(reason) => (status::FAILED, reason.as_str()),
                };
                update = update
                    .bind(f.trial_id)
                    .bind(f.lease_id.clone())
                    .bind(status)
                    .bind(error.to_string());
            }
            let ended: HashMap<i64, i64> = update
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("id")?, r.try_get("sweep_id")?)))
                .collect::<Result<_>>()?;
            let mut facts = self.facts.lock().expect("not poisoned");
            for i in now_in {
                answers[i] = ended.get(&finishes[i].trial_id).copied();
                facts.remove(&finishes[i].trial_id);
            }
        }
        Ok(answers)
    }

    /// Returns a held trial to the queue without counting the attempt,
    /// counting a preemption when `preempted`.
    pub async fn release(&self, trial_id: i64, lease_id: &str, preempted: bool) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE trials SET status = $1, lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, \
             attempts = attempts - 1, preemptions = preemptions + $6, updated_ms = $2 \
             WHERE id = $3 AND lease_id = $4 AND status = $5",
        )
        .bind(status::QUEUED)
        .bind(now_ms())
        .bind(trial_id)
        .bind(lease_id)
        .bind(status::RUNNING)
        .bind(i64::from(preempted))
        .execute(&self.pool)
        .await?;
        self.announce(done.rows_affected()).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Returns a sweep's running trials to the queue without counting the
    /// attempt: for a one-machine run restarted after its workers died with
    /// it, whose leases nobody holds. Returns how many were requeued.
    pub async fn requeue_running(&self, sweep_id: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE trials SET status = $1, lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, \
             attempts = attempts - 1, updated_ms = $2 WHERE sweep_id = $3 AND status = $4",
        )
        .bind(status::QUEUED)
        .bind(now_ms())
        .bind(sweep_id)
        .bind(status::RUNNING)
        .execute(&self.pool)
        .await?;
        self.announce(done.rows_affected()).await?;
        Ok(done.rows_affected())
    }

    /// Returns trials whose lease expired to the queue, or fails them once
    /// they have used `max_attempts`. Returns the ids it touched.
    pub async fn reap_expired(&self, max_attempts: u32) -> Result<Vec<i64>> {
        let now = now_ms();
        let rows = sqlx::query(
            "UPDATE trials SET \
               status = CASE WHEN attempts >= $1 THEN $2 ELSE $3 END, \
               error = CASE WHEN attempts >= $1 THEN 'lease expired on each of ' || attempts || ' attempts; last worker did not report in time' ELSE error END, \
               finished_ms = CASE WHEN attempts >= $1 THEN $4 ELSE NULL END, \
               lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, updated_ms = $4 \
             WHERE status = $5 AND lease_expires_ms < $4 RETURNING id, status",
        )
        .bind(i64::from(max_attempts))
        .bind(status::FAILED)
        .bind(status::QUEUED)
        .bind(now)
        .bind(status::RUNNING)
        .fetch_all(&self.pool)
        .await?;
        let requeued = rows
            .iter()
            .filter(|r| {
                r.try_get::<String, _>("status")
                    .is_ok_and(|s| s == status::QUEUED)
            })
            .count();
        self.announce(requeued as u64).await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Stores the holder's checkpoint of a trial, replacing an older one.
    pub async fn put_checkpoint(
        &self,
        trial_id: i64,
        lease_id: &str,
        epoch: u32,
        data: &[u8],
    ) -> Result<LeaseState> {
        let sql = "INSERT INTO checkpoints (trial_id, epoch, data, created_ms) \
                   SELECT $1, $2, $3, $4 WHERE EXISTS \
                     (SELECT 1 FROM trials WHERE id = $1 AND lease_id = $5 AND status = $6) \
                   ON CONFLICT (trial_id) DO UPDATE SET epoch = excluded.epoch, data = excluded.data, \
                     created_ms = excluded.created_ms";
        let stored = sqlx::query(sql)
            .bind(trial_id)
            .bind(i64::from(epoch))
            .bind(data)
            .bind(now_ms())
            .bind(lease_id)
            .bind(status::RUNNING)
            .execute(&self.pool)
            .await?;
        if stored.rows_affected() > 0 {
            Ok(LeaseState::Held)
        } else {
            self.lease_state(trial_id).await
        }
    }

    /// Keeps `data` (an encoded BoardSamples) as a trial's predictions at
    /// `epoch`, unless it has some of a later epoch.
    pub async fn put_samples(&self, trial_id: i64, epoch: u32, data: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO samples (trial_id, epoch, data) VALUES ($1, $2, $3) \
             ON CONFLICT (trial_id) DO UPDATE SET epoch = excluded.epoch, data = excluded.data \
             WHERE samples.epoch <= excluded.epoch",
        )
        .bind(trial_id)
        .bind(i64::from(epoch))
        .bind(data)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The epoch of the latest predictions of each trial of a sweep that
    /// has some: (trial, epoch).
    pub async fn sweep_sample_epochs(&self, sweep_id: i64) -> Result<Vec<(i64, u32)>> {
        let rows = sqlx::query(
            "SELECT s.trial_id, s.epoch FROM samples s JOIN trials t ON t.id = s.trial_id \
             WHERE t.sweep_id = $1",
        )
        .bind(sweep_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("trial_id")?, r.try_get::<i64, _>("epoch")? as u32)))
            .collect()
    }

    /// The latest predictions of the trials `ids` that have some: (trial,
    /// data).
    pub async fn samples_of(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let rows = sqlx::query(&format!(
            "SELECT trial_id, data FROM samples WHERE trial_id IN ({})",
            list.join(", ")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("trial_id")?, r.try_get("data")?)))
            .collect()
    }

    /// The latest checkpoint of a trial: (epoch, data).
    pub async fn checkpoint(&self, trial_id: i64) -> Result<Option<(u32, Vec<u8>)>> {
        let row = sqlx::query("SELECT epoch, data FROM checkpoints WHERE trial_id = $1")
            .bind(trial_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get::<i64, _>("epoch")? as u32, r.try_get("data")?)))
            .transpose()
    }

    /// Metrics of a trial from epoch `after + 1` on, in epoch order.
    pub async fn metrics_after(&self, trial_id: i64, after: u32) -> Result<Vec<MetricRow>> {
        let rows = sqlx::query(
            "SELECT trial_id, epoch, metrics, CAST(0 AS BIGINT) AS epoch_count FROM epochs \
             WHERE trial_id = $1 AND epoch > $2 \
             UNION ALL SELECT trial_id, first_epoch, metrics, epoch_count FROM epoch_blocks \
             WHERE trial_id = $1 AND first_epoch + epoch_count > $2",
        )
        .bind(trial_id)
        .bind(i64::from(after))
        .fetch_all(&self.pool)
        .await?;
        let mut epochs = Vec::new();
        for r in &rows {
            epochs.extend(stored_epochs(r)?.into_iter().filter(|e| e.1 > after));
        }
        epochs.sort_unstable_by_key(|e| e.1);
        let mut out = Vec::new();
        for (trial_id, epoch, bytes) in epochs {
            let mut metrics = metric_rows(trial_id, epoch, &bytes)?;
            metrics.sort_by_key(|m| (m.value.split.name(), m.value.metric.name()));
            out.extend(metrics);
        }
        Ok(out)
    }

    /// One metric's values at every stored epoch of the trials of a sweep
    /// (of the given configurations; every one when None), in no
    /// particular order.
    pub async fn metric_values(
        &self,
        sweep_id: i64,
        split: Split,
        metric: Metric,
        config_keys: Option<&[&str]>,
    ) -> Result<Vec<MetricRow>> {
        let Some((of_keys, params)) = of_keys(sweep_id, config_keys) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT e.trial_id, e.epoch, e.metrics, CAST(0 AS BIGINT) AS epoch_count FROM trials t \
             JOIN epochs e ON e.trial_id = t.id WHERE t.sweep_id = $1{of_keys} \
             UNION ALL SELECT b.trial_id, b.first_epoch, b.metrics, b.epoch_count FROM trials t \
             JOIN epoch_blocks b ON b.trial_id = t.id WHERE t.sweep_id = $1{of_keys}"
        );
        let slot = packed::slot_of(split, metric);
        // One value read from the bytes where it lies.
        let rows = self
            .bulk(&sql, &params, |r| {
                let mut out = Vec::new();
                for (trial_id, epoch, bytes) in stored_epochs(r)? {
                    let value = packed::value_of(&bytes, slot)
                        .ok_or_else(|| unreadable(trial_id, epoch))?;
                    out.extend(value.map(|value| MetricRow {
                        trial_id,
                        epoch,
                        value: MetricValue {
                            split,
                            metric,
                            value,
                        },
                    }));
                }
                Ok(out)
            })
            .await?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// Every metric of the trials of a sweep (of the given configurations;
    /// every one when None) at the given epochs, packed, in no particular
    /// order.
    ///
    /// A trial's last epoch is read from last_epochs; an earlier one from
    /// the copies of the sweep's stopping epochs where it is one of them,
    /// else from epochs.
    pub async fn epoch_metrics(
        &self,
        sweep: &SweepRow,
        epochs: &[u32],
        config_keys: Option<&[&str]>,
    ) -> Result<Vec<EpochMetrics>> {
        if epochs.is_empty() {
            return Ok(Vec::new());
        }
        let Some((of_keys, params)) = of_keys(sweep.id, config_keys) else {
            return Ok(Vec::new());
        };
        let (at_copies, at_epochs): (Vec<u32>, Vec<u32>) =
            epochs.iter().partition(|e| sweep.stop_epochs.contains(e));
        let list = |epochs: &[u32]| {
            let list: Vec<String> = epochs.iter().map(u32::to_string).collect();
            list.join(", ")
        };
        let mut sql = format!(
            "SELECT l.trial_id, l.epoch, l.metrics, CAST(0 AS BIGINT) AS epoch_count FROM trials t \
             JOIN last_epochs l ON l.trial_id = t.id \
             WHERE t.sweep_id = $1 AND l.epoch IN ({}){of_keys}",
            list(epochs)
        );
        // Earlier epochs, of the trials that went past the first asked for.
        for (table, at) in [("stop_epoch_rows", &at_copies), ("epochs", &at_epochs)] {
            let Some(first) = at.iter().min() else {
                continue;
            };
            sql += &format!(
                " UNION ALL SELECT e.trial_id, e.epoch, e.metrics, CAST(0 AS BIGINT) FROM trials t \
                 JOIN last_epochs l ON l.trial_id = t.id JOIN {table} e ON e.trial_id = t.id \
                 WHERE t.sweep_id = $1 AND l.epoch > {first} AND e.epoch IN ({}) \
                 AND e.epoch < l.epoch{of_keys}",
                list(at)
            );
        }
        // The same from the blocks that hold them, each epoch cut out of
        // its block by the database.
        if let Some(first) = at_epochs.iter().min() {
            let asked: Vec<String> = at_epochs
                .iter()
                .map(|&e| {
                    let block = blocks::first_of(e);
                    format!("SELECT CAST({e} AS BIGINT) AS epoch, CAST({block} AS BIGINT) AS block")
                })
                .collect();
            sql += &format!(
                " UNION ALL SELECT b.trial_id, a.epoch, {}, CAST(1 AS BIGINT) \
                 FROM trials t JOIN last_epochs l ON l.trial_id = t.id \
                 JOIN epoch_blocks b ON b.trial_id = t.id JOIN ({}) a ON b.first_epoch = a.block \
                 WHERE t.sweep_id = $1 AND l.epoch > {first} AND a.epoch < l.epoch \
                 AND a.epoch < b.first_epoch + b.epoch_count{of_keys}",
                blocks::slice_sql("a.epoch"),
                asked.join(" UNION ALL ")
            );
        }
        let rows = self
            .bulk(&sql, &params, |r| {
                stored_epochs(r)?
                    .into_iter()
                    .map(|(trial_id, epoch, bytes)| {
                        Ok(EpochMetrics {
                            trial_id,
                            epoch,
                            metrics: Packed::new(bytes)
                                .ok_or_else(|| unreadable(trial_id, epoch))?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// The sweep's stopping epochs (`stop_epochs`), whose rows the
    /// database copies as they are stored.
    async fn stop_epochs(&self, sweep_id: i64) -> Result<Vec<u32>> {
        sqlx::query("SELECT epoch FROM sweep_stop_epochs WHERE sweep_id = $1 ORDER BY epoch")
            .bind(sweep_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok(r.try_get::<i64, _>("epoch")? as u32))
            .collect()
    }

    /// A sweep's configuration keys, in order of their first trial.
    pub async fn config_keys(&self, sweep_id: i64) -> Result<Vec<String>> {
        sqlx::query(
            "SELECT config_key, MIN(id) AS first FROM trials WHERE sweep_id = $1 \
             GROUP BY config_key ORDER BY first",
        )
        .bind(sweep_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get("config_key")?))
        .collect()
    }

    /// The running summary of one slot (see [`packed::slots`]) at every
    /// stored epoch of every configuration of a sweep: the points with
    /// the deltas not yet folded into them.
    pub async fn curve_points(
        &self,
        sweep_id: i64,
        slot: usize,
    ) -> Result<Vec<(String, u32, Running)>> {
        let column = format!(
            "substr(sums, {}, {}) AS slot",
            aggregates::sql_offset(slot),
            aggregates::SLOT_BYTES
        );
        let sql = format!(
            "SELECT config_key, epoch, {column} FROM curve_points WHERE sweep_id = $1 \
             UNION ALL SELECT config_key, epoch, {column} FROM curve_deltas WHERE sweep_id = $1"
        );
        let mut points: HashMap<(String, u32), Running> = HashMap::new();
        for r in sqlx::query(&sql)
            .bind(sweep_id)
            .fetch_all(&self.pool)
            .await?
        {
            let epoch = r.try_get::<i64, _>("epoch")? as u32;
            let running =
                Running::from_bytes(&r.try_get::<Vec<u8>, _>("slot")?).ok_or_else(|| {
                    StoreError::Unreadable(format!(
                        "sweep {sweep_id} epoch {epoch}: unreadable curve point"
                    ))
                })?;
            points
                .entry((r.try_get("config_key")?, epoch))
                .or_default()
                .merge(&running);
        }
        Ok(points
            .into_iter()
            .map(|((key, epoch), running)| (key, epoch, running))
            .collect())
    }

    /// Folds recorded curve deltas into the points, a few thousand per
    /// transaction, until none is left; how many were folded. On Postgres
    /// one coordinator folds at a time (the others find the advisory lock
    /// taken and leave it to that one).
    pub async fn fold_curve_deltas(&self) -> Result<u64> {
        const CHUNK: i64 = 5000;
        let mut folded = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            if self.backend == Backend::Postgres {
                let mine: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1) AS mine")
                    .bind(FOLD_LOCK)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("mine")?;
                if !mine {
                    return Ok(folded);
                }
            }
            let rows = sqlx::query(
                "DELETE FROM curve_deltas WHERE id IN \
                 (SELECT id FROM curve_deltas ORDER BY id LIMIT $1) \
                 RETURNING sweep_id, config_key, epoch, sums",
            )
            .bind(CHUNK)
            .fetch_all(&mut *tx)
            .await?;
            let mut points: BTreeMap<PointKey, Point> = BTreeMap::new();
            for r in &rows {
                let key: PointKey = (
                    r.try_get("sweep_id")?,
                    r.try_get("config_key")?,
                    r.try_get::<i64, _>("epoch")? as u32,
                );
                let delta = point_of(&key, &r.try_get::<Vec<u8>, _>("sums")?)?;
                points.entry(key).or_default().merge(&delta);
            }
            add_points(&mut tx, self.backend, &points).await?;
            tx.commit().await?;
            folded += rows.len() as u64;
            if (rows.len() as i64) < CHUNK {
                return Ok(folded);
            }
        }
    }

    /// Folds the stored epochs of trials that will not run again into
    /// blocks (see [`crate::blocks`]), a few dozen trials per transaction,
    /// until none is left; how many trials were folded. Safe beside
    /// reports and readers, and beside another coordinator folding: each
    /// trial is marked folded first, in the statement that locks its row,
    /// and reads see an epoch in one table or the other, never both.
    ///
    /// A trial's epochs from 1 on are folded as far as they follow each
    /// other and read as packings; any after (which no coordinator stores)
    /// stay as rows, read beside the blocks.
    pub async fn fold_epochs(&self) -> Result<u64> {
        const TRIALS: usize = 64;
        let mut folded = 0;
        loop {
            // The states are written out, as the index of trials to fold
            // names them, so that the planner can match that index.
            let ended = [
                status::COMPLETED,
                status::FAILED,
                status::CANCELLED,
                status::STOPPED,
            ]
            .map(|s| format!("'{s}'"))
            .join(", ");
            // Planned each time, not cached: a plan made while the table
            // was small, or before Postgres had its statistics, is a seq
            // scan each second, or, with the marking in the same statement,
            // a join that read every trial once per trial to fold (two
            // minutes a batch when 100,000 trials ended at once). Picked
            // outside the transaction, whose first statement takes the
            // write lock on SQLite.
            let picked: Vec<i64> = sqlx::query(&format!(
                "SELECT id FROM trials WHERE epochs_folded = 0 AND status IN ({ended}) LIMIT {TRIALS}"
            ))
            .persistent(false)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
            if picked.is_empty() {
                return Ok(folded);
            }
            let list: Vec<String> = picked.iter().map(i64::to_string).collect();
            let mut tx = self.pool.begin().await?;
            // Reports of a trial lock its row and need it running: once
            // this has its row, still ended, no epoch of it is stored
            // again. Locked in id order (an index scan of the list), so that two
            // coordinators folding at once wait for each other instead of
            // deadlocking; a trial the other marked first is skipped.
            let ids: Vec<i64> = sqlx::query(&format!(
                "UPDATE trials SET epochs_folded = 1 WHERE epochs_folded = 0 AND status IN ({ended}) \
                 AND id IN ({}) RETURNING id",
                list.join(", ")
            ))
            .persistent(false)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
            if ids.is_empty() {
                tx.rollback().await?;
                continue;
            }
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            let rows = sqlx::query(&format!(
                "SELECT trial_id, epoch, metrics FROM epochs WHERE trial_id IN ({}) \
                 ORDER BY trial_id, epoch",
                list.join(", ")
            ))
            .fetch_all(&mut *tx)
            .await?;
            let mut by_trial: BTreeMap<i64, Vec<(u32, Vec<u8>)>> = BTreeMap::new();
            for r in &rows {
                let (trial_id, epoch, bytes) = epoch_row(r)?;
                by_trial.entry(trial_id).or_default().push((epoch, bytes));
            }
            let mut made: Vec<(i64, u32, usize, Vec<u8>)> = Vec::new();
            let mut moved: Vec<(i64, u32)> = Vec::new();
            for (&trial_id, epochs) in &by_trial {
                let run = epochs
                    .iter()
                    .zip(1..)
                    .take_while(|((epoch, bytes), want)| {
                        epoch == want && packed::split_mask(bytes).is_some()
                    })
                    .count();
                for block in epochs[..run].chunks(blocks::EPOCHS as usize) {
                    let packings: Vec<&[u8]> = block.iter().map(|(_, b)| b.as_slice()).collect();
                    let bytes = blocks::pack(&packings).expect("checked to be packings");
                    made.push((trial_id, block[0].0, block.len(), bytes));
                }
                if run > 0 {
                    moved.push((trial_id, run as u32));
                }
            }
            for chunk in made.chunks(1000) {
                let sql = format!(
                    "INSERT INTO epoch_blocks (trial_id, first_epoch, epoch_count, metrics) VALUES {}",
                    tuples(1, 4, chunk.len())
                );
                let mut insert = sqlx::query(&sql);
                for (trial_id, first, count, bytes) in chunk {
                    insert = insert
                        .bind(*trial_id)
                        .bind(i64::from(*first))
                        .bind(*count as i64)
                        .bind(bytes.as_slice());
                }
                insert.execute(&mut *tx).await?;
            }
            if !moved.is_empty() {
                let which: Vec<String> = (0..moved.len())
                    .map(|i| format!("(trial_id = ${} AND epoch <= ${})", 2 * i + 1, 2 * i + 2))
                    .collect();
                let sql = format!("DELETE FROM epochs WHERE {}", which.join(" OR "));
                let mut delete = sqlx::query(&sql);
                for (trial_id, last) in &moved {
                    delete = delete.bind(*trial_id).bind(i64::from(*last));
                }
                delete.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            folded += ids.len() as u64;
            if picked.len() < TRIALS {
                return Ok(folded);
            }
        }
    }

    /// Stores a token's hash under `name` with `role`.
    pub async fn create_token(&self, name: &str, role: Role, hash: &str) -> Result<TokenRow> {
        let taken = sqlx::query("SELECT id FROM tokens WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        if taken.is_some() {
            return Err(StoreError::TokenNameTaken(name.to_string()));
        }
        let row = sqlx::query(
            "INSERT INTO tokens (name, role, hash, created_ms) VALUES ($1, $2, $3, $4) \
             RETURNING id, name, role, created_ms, revoked_ms",
        )
        .bind(name)
        .bind(role.name())
        .bind(hash)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        token_row(&row)
    }

    /// The token with this hash, revoked or not.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        let generation = match self.tokens.get(hash) {
            Ok(token) => return Ok(Some(token)),
            Err(generation) => generation,
        };
        let row = sqlx::query(
            "SELECT id, name, role, created_ms, revoked_ms FROM tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let token = row.as_ref().map(token_row).transpose()?;
        if let (Some(generation), Some(token)) = (generation, &token) {
            self.tokens.put(generation, hash, token);
        }
        Ok(token)
    }

    /// Every token, oldest first.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        let rows =
            sqlx::query("SELECT id, name, role, created_ms, revoked_ms FROM tokens ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(token_row).collect()
    }

    /// Revokes the token named `name`; false when there is none or it was
    /// revoked already.
    pub async fn revoke_token(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("UPDATE tokens SET revoked_ms = $1 WHERE name = $2 AND revoked_ms IS NULL")
                .bind(now_ms())
                .bind(name)
                .execute(&mut *tx)
                .await?;
        if self.backend == Backend::Postgres {
            // Sent at commit: every coordinator empties its token cache.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(TOKENS_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // This coordinator's own cache at once, not when the notification
        // comes back.
        self.tokens.empty();
        Ok(done.rows_affected() > 0)
    }
}

/// Inserts planned trials of a sweep, queued.
async fn insert_trials(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sweep_id: i64,
    trials: &[PlannedTrial],
    now: i64,
) -> Result<()> {
    for trial in trials {
        sqlx::query(
            "INSERT INTO trials (sweep_id, config, config_key, repeat_index, seed, status, created_ms, \
             updated_ms, proposal, proposed_by, pack_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)",
        )
        .bind(sweep_id)
        .bind(trial.config.encode_to_vec())
        .bind(&trial.config_key)
        .bind(i64::from(trial.repeat))
        .bind(trial.config.seed as i64)
        .bind(status::QUEUED)
        .bind(now)
        .bind(i64::from(trial.proposal))
        .bind(trial.proposed_by)
        .bind(proto::config::pack_key(&trial.config))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_from_the_first() {
        assert_eq!(tuples(1, 3, 2), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(tuples(3, 4, 1), "($3, $4, $5, $6)");
        assert_eq!(tuples(5, 2, 0), "");
    }

    #[tokio::test]
    async fn postgres_connections_run_without_jit() {
        for db in crate::testing::databases().await {
            let store = Store::connect(&db.url).await.unwrap();
            let Some(native) = &store.native else {
                continue;
            };
            for _ in 0..3 {
                let any: String = sqlx::query("SHOW jit")
                    .fetch_one(&store.pool)
                    .await
                    .unwrap()
                    .get("jit");
                let native: String = sqlx::query("SHOW jit")
                    .fetch_one(native)
                    .await
                    .unwrap()
                    .get("jit");
                assert_eq!((any.as_str(), native.as_str()), ("off", "off"));
            }
        }
    }
}
