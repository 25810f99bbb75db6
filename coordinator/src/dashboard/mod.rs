//! The dashboard: the sweeps in a browser, live. `coordinator serve` and
//! `coordinator run` serve it over HTTP beside the gRPC port.
//!
//! One page (its script and style are served from here, so it works with
//! no internet) reads a small JSON API whose documents are the CLI's own
//! `--json` output: the sweep list, a sweep with its trials, results by
//! configuration (with 95% confidence intervals), every pair's Welch
//! p-value as a matrix,
//! learning curves (aggregated on the server from the running summaries,
//! downsampled), one configuration's repeats, the latest predictions on
//! the sample items per configuration, and a stream of trial changes
//! (server-sent events) so that the page follows a running sweep without
//! reloading.
//!
//! Reading needs a token of role `reader` (or `user`) when the coordinator
//! checks tokens: `Authorization: Bearer TOKEN`, or once `/?token=TOKEN`,
//! which keeps it in an HTTP-only cookie for the pages that follow.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::serve::{Listener, ListenerExt};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::{Gate, Role};
use crate::error::Error;
use crate::report::{self, Format};
use crate::stats::{self, Alternative};
use crate::store::Store;
use crate::{convert, results, service};

/// The cookie that keeps a token given as `/?token=`.
const TOKEN_COOKIE: &str = "exp025_token";

/// How often the event stream looks for changed trials.
const EVENTS_POLL: Duration = Duration::from_millis(500);

/// Points per curve the page asks for at most (every epoch up to that).
const CURVE_POINTS: usize = 200;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

#[derive(Debug, Clone)]
struct Dashboard {
    store: Store,
    gate: Gate,
}

/// Serves the dashboard on `listener` until `shutdown` resolves, admitting
/// readers through `gate`.
pub async fn serve(
    gate: Gate,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(Dashboard {
        store: gate.store.clone(),
        gate,
    });
    axum::serve(sending_at_once(listener), app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The connections `listener` accepts, each sending every answer and live
/// event at once (`TCP_NODELAY`; [`crate::server::serve`] says why).
fn sending_at_once(listener: TcpListener) -> impl Listener<Io = TcpStream, Addr = SocketAddr> {
    listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "a dashboard connection without TCP_NODELAY");
        }
    })
}

/// Where the dashboard is served unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// A listener on `addr`; without one, on [`DEFAULT_ADDR`] or, when that is
/// taken (another coordinator on this machine), on a free port beside it.
pub async fn bind(addr: Option<SocketAddr>) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    if let Some(addr) = addr {
        return TcpListener::bind(addr)
            .await
            .with_context(|| format!("serving the dashboard on {addr}"));
    }
    let default: SocketAddr = DEFAULT_ADDR.parse().expect("a socket address");
    match TcpListener::bind(default).await {
        Ok(listener) => Ok(listener),
        Err(e) => {
            tracing::warn!(error = %e, "{DEFAULT_ADDR} is taken; the dashboard takes a free port");
            Ok(TcpListener::bind((default.ip(), 0)).await?)
        }
    }
}

fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(|| asset("text/javascript", SCRIPT)))
        .route("/app.css", get(|| asset("text/css", STYLE)))
        .route("/api/sweeps", get(sweeps))
        .route("/api/sweeps/{id}", get(sweep))
        .route("/api/sweeps/{id}/results", get(results_of))
        .route("/api/sweeps/{id}/compare", get(compare))
        .route("/api/sweeps/{id}/curves", get(curves))
        .route("/api/sweeps/{id}/repeats", get(repeats))
        .route("/api/sweeps/{id}/predictions", get(predictions))
        .route("/api/sweeps/{id}/events", get(events))
        .with_state(dashboard)
}

async fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    token: Option<String>,
}

/// The page; `?token=` is kept in a cookie and taken out of the address.
async fn page(jar: CookieJar, Query(q): Query<PageQuery>) -> Response {
    if let Some(token) = q.token {
        let cookie = Cookie::build((TOKEN_COOKIE, token))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/");
        return (jar.add(cookie), Redirect::to("/")).into_response();
    }
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

/// A failed API call: its status and message, as JSON.
#[derive(Debug)]
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self(Error::Store(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::Spec { .. } | Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) | Error::UnknownWorker(_) => StatusCode::NOT_FOUND,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Error::LeaseLost(_) | Error::Protocol { .. } => StatusCode::CONFLICT,
            Error::Store(inner) => {
                tracing::error!(error = ?inner, "store failure");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, axum::Json(json!({"error": self.0.to_string()}))).into_response()
    }
}

/// A caller admitted as a reader.
#[derive(Debug)]
struct Reader;

impl FromRequestParts<Dashboard> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, d: &Dashboard) -> Result<Self, ApiError> {
        let mut headers = HeaderMap::new();
        if let Some(given) = parts.headers.get(header::AUTHORIZATION) {
            headers.insert(header::AUTHORIZATION, given.clone());
        } else if let Some(cookie) = CookieJar::from_headers(&parts.headers).get(TOKEN_COOKIE)
            && let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", cookie.value()))
        {
            headers.insert(header::AUTHORIZATION, value);
        }
        let metadata = tonic::metadata::MetadataMap::from_headers(headers);
        d.gate
            .admit(&metadata, "the dashboard", Role::Reader)
            .await?;
        Ok(Reader)
    }
}

fn json_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn sweeps(_: Reader, State(d): State<Dashboard>) -> Result<Response, ApiError> {
    let list = service::list_sweeps(&d.store).await?;
    Ok(json_text(report::sweeps(&list.sweeps, Format::Json)))
}

#[derive(Debug, Deserialize)]
struct SweepQuery {
    /// Only this many trials: running first, then queued, failed, stopped,
    /// completed and cancelled, each by id (all without it).
    trials: Option<usize>,
}

/// A sweep with its trials (`trials=N`: the N the page shows first), every
/// metric's name, the most epochs of any trial, its declared stopping
/// epochs and its newest change.
async fn sweep(
    _: Reader,
    State(d): State<Dashboard>,
    Path(id): Path<i64>,
    Query(q): Query<SweepQuery>,
) -> Result<Response, ApiError> {
    use crate::store::status;
    let sweep = service::stored_sweep(&d.store, id).await?;
    let mut trials = d.store.trials(id).await?;
    let changed_ms = trials.iter().map(|t| t.updated_ms).max().unwrap_or(-1);
    let longest = trials.iter().map(|t| t.config.epochs).max().unwrap_or(0);
    if let Some(shown) = q.trials {
        let order = [
            status::RUNNING,
            status::QUEUED,
            status::FAILED,
            status::STOPPED,
            status::COMPLETED,
            status::CANCELLED,
        ];
        let rank = |s: &str| order.iter().position(|o| *o == s).unwrap_or(order.len());
        trials.sort_by_key(|t| (rank(&t.status), t.id));
        trials.truncate(shown);
    }
    let mut doc = report::detail_json(&service::detail(sweep, &trials));
    doc["metrics"] = json!(metric_names());
    doc["longest_epochs"] = json!(longest);
    // Where the page's event stream starts: changes from then on.
    doc["changed_ms"] = json!(changed_ms);
    Ok(axum::Json(doc).into_response())
}

/// Every metric's name, per split as the sweep file and the API spell it.
fn metric_names() -> Value {
    use proto::metrics::{Metric, Split};
    let names =
        |split: Split| -> Vec<&'static str> { Metric::of_split(split).map(Metric::name).collect() };
    json!({"train": names(Split::Train), "test": names(Split::Test)})
}

/// Which epoch a table reads: `epoch=N`, or `stop=E1,E2,...` for each
/// configuration's stopping epoch among those candidates (by the sweep's
/// metric); neither means each configuration's last epoch.
#[derive(Debug, Deserialize)]
struct Reading {
    #[serde(default)]
    split: String,
    metric: Option<String>,
    epoch: Option<u32>,
    stop: Option<String>,
    /// The p-value matrix: only the best this many configurations by mean.
    top: Option<usize>,
}

impl Reading {
    fn selection(&self) -> Result<Option<pb::EpochSelection>, Error> {
        use pb::epoch_selection::Choice;
        let choice = match (self.epoch, &self.stop) {
            (Some(e), _) => Choice::Epoch(e),
            (None, Some(list)) => Choice::StopEpochs(pb::StopEpochs {
                candidates: list
                    .split(',')
                    .map(|e| {
                        e.trim().parse().map_err(|_| {
                            Error::InvalidArgument(format!("candidate epoch {e:?} is not a number"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                by: String::new(),
            }),
            (None, None) => return Ok(None),
        };
        Ok(Some(pb::EpochSelection {
            choice: Some(choice),
        }))
    }
}

async fn results_of(
    _: Reader,
    State(d): State<Dashboard>,
    Path(id): Path<i64>,
    Query(q): Query<Reading>,
) -> Result<Response, ApiError> {
    let (_, split) = metric_and_split(&d.store, id, &q.metric, &q.split).await?;
    let selection = q.selection()?;
    let answer = results::results(
        &d.store,
        &pb::ResultsRequest {
            sweep_id: id,
            split,
            epoch: selection.clone(),
            summaries_only: true,
        },
    )
    .await?;
    Ok(json_text(report::results(
        &answer,
        selection.as_ref(),
        &[],
        Format::Json,
    )))
}

/// Every pair's two-sided Welch p-value as a matrix, its configurations best
/// first by their mean, `top=N` of them (the values themselves are in
/// `results`): a sweep of hundreds of configurations has tens of thousands
/// of pairs.
async fn compare(
    _: Reader,
    State(d): State<Dashboard>,
    Path(id): Path<i64>,
    Query(q): Query<Reading>,
) -> Result<Response, ApiError> {
    let (metric, split) = metric_and_split(&d.store, id, &q.metric, &q.split).await?;
    let selection = q.selection()?;
    let (metric, split, groups) = results::configuration_groups(
        &d.store,
        &pb::CompareRequest {
            sweep_id: id,
            metric,
            split,
            epoch: selection,
            ..Default::default()
        },
    )
    .await?;
    let configurations = groups.len();
    let mut ranked: Vec<(String, f64, Vec<f64>)> = groups
        .into_iter()
        .map(|g| (g.label, g.summary.map_or(f64::NAN, |s| s.mean), g.values))
        .collect();
    // Best first by mean, NaN last.
    ranked.sort_by(|(_, x, _), (_, y, _)| x.is_nan().cmp(&y.is_nan()).then(y.total_cmp(x)));
    ranked.truncate(q.top.unwrap_or(configurations));
    let n = ranked.len();
    let mut rows: Vec<Vec<Option<f64>>> = vec![vec![None; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let p = stats::welch(&ranked[i].2, &ranked[j].2, Alternative::TwoSided).pvalue;
            rows[i][j] = Some(p);
            rows[j][i] = Some(p);
        }
    }
    let (labels, means): (Vec<String>, Vec<f64>) = ranked
        .into_iter()
        .map(|(label, mean, _)| (label, mean))
        .unzip();
    Ok(axum::Json(json!({
        "metric": metric, "split": split, "configurations": configurations,
        "labels": labels, "means": means, "pvalues": rows,
    }))
    .into_response())
}

/// The metric and split asked for; where one is not given, the sweep's own
/// metric or that metric's split (NOT_FOUND for an unknown sweep). The page
/// can then ask for everything at once, before it has read the sweep.
async fn metric_and_split(
    store: &Store,
    id: i64,
    metric: &Option<String>,
    split: &str,
) -> Result<(String, String), Error> {
    let sweep = service::stored_sweep(store, id).await?;
    let metric = metric
        .clone()
        .unwrap_or_else(|| sweep.objective.metric.name().to_string());
    let split = if split.is_empty() {
        sweep.objective.split.name().to_string()
    } else {
        split.to_string()
    };
    Ok((metric, split))
}

/// Curves with at most [`CURVE_POINTS`] points each: every epoch when there
/// are no more, else evenly spread ones and always the first and last.
async fn curves(
    _: Reader,
    State(d): State<Dashboard>,
    Path(id): Path<i64>,
    Query(q): Query<Reading>,
) -> Result<Response, ApiError> {
    let (metric, split) = metric_and_split(&d.store, id, &q.metric, &q.split).await?;
    let mut answer = results::learning_curves(
        &d.store,
        &pb::LearningCurvesRequest {
            sweep_id: id,
            metric,
            split,
        },
    )
    .await?;
    for curve in &mut answer.curves {
        curve.points = downsample(std::mem::take(&mut curve.points), CURVE_POINTS);
    }
    Ok(json_text(report::curves(&answer, Format::Json)))
}

/// At most `most` of `points`, evenly spread, keeping the first and last.
fn downsample<T>(points: Vec<T>, most: usize) -> Vec<T> {
    let n = points.len();
    if n <= most || most < 2 {
        return points;
    }
    let keep: Vec<usize> = (0..most).map(|i| i * (n - 1) / (most - 1)).collect();
    points
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.binary_search(i).is_ok())
        .map(|(_, p)| p)
        .collect()
}

#[derive(Debug, Deserialize)]
struct RepeatsQuery {
    config: String,
    metric: Option<String>,
    #[serde(default)]
    split: String,
}

/// One configuration's trials, each metric value per epoch of one metric.
async fn repeats(
    _: Reader,
    State(d): State<Dashboard>,
    Path(id): Path<i64>,
    Query(q): Query<RepeatsQuery>,
) -> Result<Response, ApiError> {
    use proto::metrics::Metric;
    let (metric, split) = metric_and_split(&d.store, id, &q.metric, &q.split).await?;
    let split = results::split_or_default(&split)?;
    let metric = Metric::parse(&metric, split).map_err(Error::InvalidArgument)?;
    // Every value of the configuration's trials in one read, by trial.
    let mut points: HashMap<i64, Vec<(u32, f64)>> = HashMap::new();
    for r in d
        .store
        .metric_values(id, split, metric, Some(&[q.config.as_str()]))
        .await?
    {
        points
            .entry(r.trial_id)
            .or_default()
            .push((r.epoch, r.value.value));
    }
    let trials: Vec<Value> = d
        .store
        .trials(id)
        .await?
        .into_iter()
        .filter(|t| t.config_key == q.config)
        .map(|t| {
            let mut points = points.remove(&t.id).unwrap_or_default();
            points.sort_by_key(|(epoch, _)| *epoch);
            json!({"id": t.id, "repeat": t.repeat, "points": points})
        })
        .collect();
    Ok(axum::Json(json!({"config_key": q.config, "trials": trials})).into_response())
}

#[derive(Debug, Deserialize)]
struct PredictionsQuery {
    /// The boards of this configuration only (empty: of the first with
    /// predictions); every configuration is still listed. All without it.
    config: Option<String>,
}

/// Per configuration, the latest predictions on the sample items; each
/// board a string of 220 `0`/`1` cells, row by row from the top.
async fn predictions(
    _: Reader,
    State(d): State<Dashboard>,
    Path(id): Path<i64>,
    Query(q): Query<PredictionsQuery>,
) -> Result<Response, ApiError> {
    let answer = results::predictions(&d.store, &pb::PredictionsRequest { sweep_id: id }).await?;
    let shown = match q.config.as_deref() {
        Some("") => answer.configurations.first().map(|c| c.config_key.as_str()),
        other => other,
    };
    let cells =
        |b: &[u8]| -> String { b.iter().map(|c| if *c == 1 { '1' } else { '0' }).collect() };
    let configurations: Vec<Value> = answer
        .configurations
        .iter()
        .map(|c| {
            let boards = q.config.is_none() || shown == Some(c.config_key.as_str());
            let samples: Vec<Value> = c
                .samples
                .iter()
                .take(if boards { c.samples.len() } else { 0 })
                .map(|s| {
                    json!({
                        "item": s.item, "kind": s.kind, "input": cells(&s.input),
                        "predicted": cells(&s.predicted), "truth": cells(&s.truth),
                    })
                })
                .collect();
            json!({
                "configuration": c.label, "config_key": c.config_key, "trial": c.trial_id,
                "repeat": c.repeat, "epoch": c.epoch, "samples": samples,
            })
        })
        .collect();
    Ok(axum::Json(json!({"configurations": configurations})).into_response())
}

type Events = dyn Stream<Item = Result<Event, Infallible>> + Send;

#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// The sweep document's `changed_ms`: only changes from then on are
    /// sent. Without it, every trial first.
    since: Option<i64>,
}

/// Server-sent events of a sweep: every trial changed since `since`, then
/// each trial as it changes (`trials`), with the sweep's counts after each
/// change (`sweep`).
async fn events(
    _: Reader,
    State(d): State<Dashboard>,
    Path(id): Path<i64>,
    Query(q): Query<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    service::stored_sweep(&d.store, id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let since = q.since.unwrap_or(-1);
    tokio::spawn(async move {
        if let Err(e) = send_events(&d.store, id, since, &tx).await {
            tracing::warn!(error = %e, sweep = id, "dashboard events ended");
        }
    });
    let stream: std::pin::Pin<Box<Events>> = Box::pin(ReceiverStream::new(rx));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn send_events(
    store: &Store,
    sweep_id: i64,
    since: i64,
    tx: &tokio::sync::mpsc::Sender<Result<Event, Infallible>>,
) -> Result<(), Error> {
    let mut changes = service::TrialChanges::new(sweep_id, since);
    loop {
        let trials: Vec<Value> = changes
            .next(store)
            .await?
            .iter()
            .map(|t| report::trial_json(&convert::trial(t)))
            .collect();
        if !trials.is_empty() {
            let sweep = store.sweep(sweep_id).await?.as_ref().map(convert::sweep);
            let events = [
                Event::default().event("trials").json_data(trials),
                Event::default()
                    .event("sweep")
                    .json_data(sweep.as_ref().map(report::sweep_json)),
            ];
            for event in events {
                let event = event.expect("JSON values serialize");
                if tx.send(Ok(event)).await.is_err() {
                    return Ok(());
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVENTS_POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    use super::{downsample, sending_at_once};
    use crate::server::tests::listener_with_client;

    #[tokio::test]
    async fn accepted_connections_send_at_once() {
        let (listener, _client) = listener_with_client().await;
        let (accepted, _) = sending_at_once(listener).accept().await;
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn downsampling_keeps_the_ends_and_spreads_the_rest() {
        let all: Vec<u32> = (1..=300).collect();
        let kept = downsample(all.clone(), 200);
        assert_eq!(kept.len(), 200);
        assert_eq!((kept[0], kept[199]), (1, 300));
        assert!(kept.windows(2).all(|w| w[0] < w[1] && w[1] - w[0] <= 2));
        assert_eq!(downsample(all[..150].to_vec(), 200), all[..150].to_vec());
    }
}
