//! The dashboard through real parts: a coordinator on SQLite, its
//! dashboard on an ephemeral 127.0.0.1 port asking for tokens, workers that
//! report over gRPC, and the pages loaded in headless Chromium (driven over
//! WebDriver by chromedriver): the rendered DOM is checked against the API,
//! a new epoch must appear without a reload, and screenshots are saved.
//!
//! Needs `chromium` and `chromedriver` on PATH (Debian's `chromium` and
//! `chromium-driver`); without them the browser test says SKIPPED, unless
//! EXP025_REQUIRE_BROWSER=1 (as in CI), where their absence fails it.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use coordinator::auth::{self, Auth, Gate, Role};
use coordinator::report;
use coordinator::testing::{self, wait_for, wait_until};
use fantoccini::{Client, ClientBuilder};
use proto::v1 as pb;
use serde_json::{Value, json};

/// A sweep that learns visibly: board accuracy grows with the epoch, more
/// for a larger learning rate, with a spread across seeds.
fn report(config: &pb::TrialConfig, epoch: u32) -> Vec<pb::Metric> {
    let metric = |split: &str, name: &str, value: f64| pb::Metric {
        split: split.into(),
        name: name.into(),
        value,
    };
    let spread = f64::from((config.seed % 3) as u32) * 0.02;
    let rate = config.lr * 100.0;
    let accuracy = 1.0 - (-(f64::from(epoch)) * rate).exp() * 0.9 - spread;
    vec![
        metric("test", "board_accuracy", accuracy),
        metric("test", "cell_accuracy", 0.5 + accuracy / 2.0),
        metric("test", "spawn_precision", f64::NAN),
        metric("train", "disc_loss", 0.7 - f64::from(epoch) * 0.01),
    ]
}

const FINISHED: &str = "name: finished\nrepeats: 3\n\
    dataset: {generated: {seed: 1, train: 16, test: 8}}\n\
    metric: {name: board_accuracy, split: test}\n\
    parameters:\n  lr: {values: [0.001, 0.003, 0.01]}\n  epochs: {value: 6}\n\
    stop_epochs: [2, 4, 6]\n";

const RANDOM: &str = "name: random\nmethod: random\nbudget: 5\nsearch_seed: 7\n\
    dataset: {generated: {seed: 1, train: 16, test: 8}}\n\
    parameters:\n  lr: {distribution: log_uniform, min: 0.0001, max: 0.01}\n\
    \x20 beta1: {distribution: uniform, min: 0.5, max: 0.9}\n  epochs: {value: 3}\n\
    metric_precision: float32\n";

const RUNNING: &str = "name: running\nrepeats: 1\n\
    dataset: {generated: {seed: 1, train: 16, test: 8}}\n\
    parameters:\n  epochs: {value: 5}\n";

/// A dashboard in front of `store` that asks for tokens; its address.
async fn dashboard(store: &coordinator::store::Store) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = Gate {
        store: store.clone(),
        auth: Auth::Required,
    };
    tokio::spawn(coordinator::dashboard::serve(
        gate,
        listener,
        std::future::pending(),
    ));
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_asks_for_a_reader_token_and_answers_as_the_cli() {
    let db = testing::databases().await.remove(0);
    let server = testing::start(&db.url, Duration::from_secs(60), 1).await;
    let store = &server.store;
    let base = dashboard(store).await;
    let reader = auth::new_token();
    store
        .create_token("reader", Role::Reader, &auth::hash(&reader))
        .await
        .unwrap();
    let worker = auth::new_token();
    store
        .create_token("worker", Role::Worker, &auth::hash(&worker))
        .await
        .unwrap();

    // The page and its assets are open; the data is not.
    assert_eq!(testing::http_get(&base, "/", None).await.0, 200);
    assert_eq!(testing::http_get(&base, "/app.js", None).await.0, 200);
    let (status, body) = testing::http_get(&base, "/api/sweeps", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    assert_eq!(
        testing::http_get(&base, "/api/sweeps", Some("exp025_nope"))
            .await
            .0,
        401
    );
    let (status, body) = testing::http_get(&base, "/api/sweeps", Some(&worker)).await;
    assert_eq!(status, 403, "a worker token may not read: {body}");
    store.revoke_token("worker").await.unwrap();
    assert_eq!(
        testing::http_get(&base, "/api/sweeps", Some(&worker))
            .await
            .0,
        401
    );

    let sweep = testing::submit(&server.url(), FINISHED).await.id;
    let (status, body) = testing::http_get(&base, "/api/sweeps", Some(&reader)).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["id"], json!(sweep));
    assert_eq!(list[0]["trials"], json!(9));

    // Unknown sweeps and bad parameters are refused plainly.
    let (status, body) = testing::http_get(&base, "/api/sweeps/999/curves", Some(&reader)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("sweep 999 not found"), "{body}");
    let path = format!("/api/sweeps/{sweep}/curves?metric=no_such_metric");
    let (status, body) = testing::http_get(&base, &path, Some(&reader)).await;
    assert_eq!(status, 400, "{body}");
    let path = format!("/api/sweeps/{sweep}/results?split=sideways");
    assert_eq!(testing::http_get(&base, &path, Some(&reader)).await.0, 400);

    // A sweep's documents are the CLI's JSON.
    drain(&server, sweep).await;
    let path = format!("/api/sweeps/{sweep}/results");
    let (status, body) = testing::http_get(&base, &path, Some(&reader)).await;
    assert_eq!(status, 200, "{body}");
    let shown: Value = serde_json::from_str(&body).unwrap();
    let answer = coordinator::results::results(
        store,
        &pb::ResultsRequest {
            sweep_id: sweep,
            summaries_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(answer.configurations.len(), 3);
    for (c, shown) in answer
        .configurations
        .iter()
        .zip(shown["configurations"].as_array().unwrap())
    {
        let board = c.metrics.iter().find(|m| m.name == "board_accuracy");
        let s = board.unwrap().summary.unwrap();
        assert_eq!(shown["config_key"], json!(c.config_key));
        assert_eq!(shown["metrics"]["board_accuracy"]["mean"], json!(s.mean));
        let (low, high) = coordinator::report::html::confidence_interval(&s).unwrap();
        assert_eq!(
            shown["metrics"]["board_accuracy"]["ci95"],
            json!([low, high])
        );
    }
    // Curves at most 200 points each, aggregated on the server.
    let path = format!("/api/sweeps/{sweep}/curves?metric=board_accuracy");
    let curves: Value =
        serde_json::from_str(&testing::http_get(&base, &path, Some(&reader)).await.1).unwrap();
    assert_eq!(curves["curves"].as_array().unwrap().len(), 3);
    assert_eq!(curves["curves"][0]["points"].as_array().unwrap().len(), 6);
    // One configuration's repeats, value by value.
    let key = answer.configurations[0].config_key.clone();
    let path = format!(
        "/api/sweeps/{sweep}/repeats?metric=board_accuracy&config={}",
        key.replace(' ', "%20").replace('=', "%3D")
    );
    let (status, body) = testing::http_get(&base, &path, Some(&reader)).await;
    assert_eq!(status, 200, "{body}");
    let repeats: Value = serde_json::from_str(&body).unwrap();
    let trials = repeats["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    for t in trials {
        let stored = store
            .metrics_after(t["id"].as_i64().unwrap(), 0)
            .await
            .unwrap();
        let values: Vec<Value> = stored
            .iter()
            .filter(|r| r.value.metric.name() == "board_accuracy")
            .map(|r| json!([r.epoch, r.value.value]))
            .collect();
        assert_eq!(t["points"].as_array().unwrap(), &values);
    }

    // Without split= and metric=, the sweep's own metric and its split.
    for (plain, explicit) in [
        ("results", "results?split=test"),
        ("curves", "curves?split=test&metric=board_accuracy"),
        ("compare", "compare?split=test&metric=board_accuracy"),
    ] {
        let get = async |path: &str| {
            let path = format!("/api/sweeps/{sweep}/{path}");
            testing::http_get(&base, &path, Some(&reader)).await
        };
        let (plain, explicit) = (get(plain).await, get(explicit).await);
        assert_eq!(plain.0, 200, "{}", plain.1);
        assert_eq!(plain, explicit);
    }
    // The p-value matrix of the best two configurations by mean: the
    // p-values of compare's own tests between them.
    let path = format!("/api/sweeps/{sweep}/compare?top=2");
    let matrix: Value =
        serde_json::from_str(&testing::http_get(&base, &path, Some(&reader)).await.1).unwrap();
    let mut by_mean: Vec<&pb::ConfigurationResult> = answer.configurations.iter().collect();
    let mean = |c: &pb::ConfigurationResult| {
        let board = c.metrics.iter().find(|m| m.name == "board_accuracy");
        board.unwrap().summary.unwrap().mean
    };
    by_mean.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
    assert_eq!(matrix["configurations"], json!(3));
    assert_eq!(
        matrix["labels"],
        json!([by_mean[0].label, by_mean[1].label])
    );
    let pair = coordinator::results::compare(
        store,
        &pb::CompareRequest {
            sweep_id: sweep,
            metric: "board_accuracy".into(),
            a: by_mean[0].label.split(' ').map(String::from).collect(),
            b: by_mean[1].label.split(' ').map(String::from).collect(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let p = pair.comparisons[0].pvalue;
    assert_eq!(matrix["pvalues"], json!([[null, p], [p, null]]));
    // The sweep with the first trials the page shows, the most epochs of
    // any, its declared stopping epochs, and its newest change, where the
    // page's event stream starts.
    let path = format!("/api/sweeps/{sweep}?trials=2");
    let doc: Value =
        serde_json::from_str(&testing::http_get(&base, &path, Some(&reader)).await.1).unwrap();
    let stored = store.trials(sweep).await.unwrap();
    let ids: Vec<i64> = doc["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [stored[0].id, stored[1].id]);
    assert_eq!(doc["sweep"]["trials"], json!(stored.len()));
    assert_eq!(doc["longest_epochs"], json!(6));
    assert_eq!(doc["sweep"]["stop_epochs"], json!([2, 4, 6]));
    let newest = stored.iter().map(|t| t.updated_ms).max().unwrap();
    assert_eq!(doc["changed_ms"], json!(newest));
    // Predictions: with config=, every configuration listed and only the
    // one asked for (empty: the first) with its boards.
    for (asked, shown) in [
        (String::new(), 0),
        (answer.configurations[2].config_key.clone(), 2),
    ] {
        let path = format!(
            "/api/sweeps/{sweep}/predictions?config={}",
            asked.replace(' ', "%20").replace('=', "%3D")
        );
        let doc: Value =
            serde_json::from_str(&testing::http_get(&base, &path, Some(&reader)).await.1).unwrap();
        let listed = doc["configurations"].as_array().unwrap();
        assert_eq!(listed.len(), 3);
        for (i, c) in listed.iter().enumerate() {
            let boards = c["samples"].as_array().unwrap().len();
            assert_eq!(boards > 0, i == shown, "{asked:?}: configuration {i}");
        }
    }
    server.stop().await;
}

/// Runs `sweep` to its end with a simulated worker.
async fn drain(server: &testing::Running, sweep: i64) {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let reporter: Arc<testing::Reporter> = Arc::new(report);
    let worker = tokio::spawn(testing::simulated_worker(server.url(), reporter, stopping));
    wait_until("the sweep to end", Duration::from_secs(60), || async {
        server.store.sweep(sweep).await.unwrap().unwrap().is_done()
    })
    .await;
    stop.send(true).unwrap();
    worker.await.unwrap();
}

/// chromedriver on a free port, and a headless Chromium session through it.
struct Browser {
    driver: Child,
    client: Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where `program` is on PATH.
fn on_path(program: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A browser, or None (with SKIPPED said) where chromium or chromedriver is
/// missing and EXP025_REQUIRE_BROWSER is not set.
async fn browser() -> Option<Browser> {
    let (Some(_), Some(chromium)) = (on_path("chromedriver"), on_path("chromium")) else {
        assert!(
            std::env::var("EXP025_REQUIRE_BROWSER").is_err(),
            "EXP025_REQUIRE_BROWSER is set but chromium or chromedriver is not on PATH"
        );
        eprintln!(
            "SKIPPED: the dashboard in a browser needs chromium and chromedriver \
             (Debian: apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let capabilities: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,2200"],
        }
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = wait_for("chromedriver to start", Duration::from_secs(30), || {
        let capabilities = capabilities.clone();
        let url = url.clone();
        async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
                .ok()
        }
    })
    .await;
    Some(Browser { driver, client })
}

/// Evaluates `script` (a function body that returns) in the page.
async fn eval(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// Waits until `script` returns true in the page.
async fn wait_in_page(client: &Client, what: &str, script: &str) {
    let limit = Duration::from_secs(30);
    wait_until(what, limit, || async {
        eval(client, script).await == json!(true)
    })
    .await;
}

fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_and_a_running_sweep_in_headless_chromium() {
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    let db = testing::databases().await.remove(0);
    let server = testing::start(&db.url, Duration::from_secs(60), 1).await;
    let store = &server.store;
    let base = dashboard(store).await;
    let token = auth::new_token();
    store
        .create_token("reader", Role::Reader, &auth::hash(&token))
        .await
        .unwrap();

    // A finished sweep: a curve per configuration with a point per epoch,
    // and table cells equal to the results the CLI prints.
    let finished = testing::submit(&server.url(), FINISHED).await.id;
    drain(&server, finished).await;
    client
        .goto(&format!("{base}/?token={token}#/sweep/{finished}"))
        .await
        .unwrap();
    let url = client.current_url().await.unwrap();
    assert!(
        !url.as_str().contains("token"),
        "the token left the address: {url}"
    );
    wait_in_page(
        client,
        "three curves of six points",
        "const g = document.querySelectorAll('#curves-svg g.curve'); \
         return g.length === 3 && [...g].every(c => c.dataset.points === '6');",
    )
    .await;
    wait_in_page(
        client,
        "the results table and the p-values",
        "return document.querySelectorAll('#results-table tr[data-config]').length === 3 \
         && document.querySelectorAll('#pvalues-table td[data-a]').length === 6;",
    )
    .await;
    let answer = coordinator::results::results(
        store,
        &pb::ResultsRequest {
            sweep_id: finished,
            summaries_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cells = eval(
        client,
        "return [...document.querySelectorAll('#results-table tr[data-config]')].map(r => \
         [r.dataset.config, ...[...r.querySelectorAll('td[data-metric]')].map(td => [td.dataset.metric, td.textContent])]);",
    )
    .await;
    let rows = cells.as_array().unwrap();
    assert_eq!(rows.len(), answer.configurations.len());
    let mut checked = 0;
    for (c, row) in answer.configurations.iter().zip(rows) {
        let row = row.as_array().unwrap();
        assert_eq!(row[0], json!(c.config_key));
        for cell in &row[1..] {
            let name = cell[0].as_str().unwrap();
            let shown = cell[1].as_str().unwrap();
            match c.metrics.iter().find(|m| m.name == name) {
                Some(m) => assert_eq!(shown, report::mean_std(m.summary.as_ref()), "{name}"),
                None => assert_eq!(shown, "-", "{name}"),
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        3 * 5,
        "the notebook's five metrics per configuration"
    );
    // The p-value cells are the API's Welch tests.
    let compared = coordinator::results::compare(
        store,
        &pb::CompareRequest {
            sweep_id: finished,
            metric: "board_accuracy".into(),
            all_pairs: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let shown = eval(
        client,
        "return [...document.querySelectorAll('#pvalues-table td[data-a]')].map(td => \
         [td.dataset.a, td.dataset.b, td.textContent]);",
    )
    .await;
    for c in &compared.comparisons {
        let (a, b) = (&c.a.as_ref().unwrap().label, &c.b.as_ref().unwrap().label);
        let cell = shown
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s[0] == json!(a) && s[1] == json!(b))
            .unwrap_or_else(|| panic!("no cell for {a} against {b}"));
        let p: f64 = cell[2].as_str().unwrap().parse().unwrap();
        assert!(
            testing::close(p, c.pvalue, 5e-3),
            "{a} vs {b}: {p} against {}",
            c.pvalue
        );
    }
    // Stopping epochs on demand: the candidates, by default the sweep's
    // declared ones (epochs 2, 4, 6), as dashed lines, each configuration's
    // chosen one as a circle on its curve: the last, where board accuracy
    // is highest.
    client
        .execute(
            "const c = document.getElementById('curve-stops'); c.click();",
            vec![],
        )
        .await
        .unwrap();
    wait_in_page(
        client,
        "the stopping epochs marked",
        "return document.querySelectorAll('#curves-svg line.candidate').length === 3 \
         && document.getElementById('candidates').value === '2,4,6' \
         && [...document.querySelectorAll('#curves-svg circle.stop')].map(c => c.dataset.epoch).join() === '6,6,6';",
    )
    .await;
    // Repeats on demand: one dashed line per trial of the configuration.
    let key = &answer.configurations[0].config_key;
    client
        .execute(
            "const s = document.getElementById('curve-repeats'); s.value = arguments[0]; \
             s.dispatchEvent(new Event('change'));",
            vec![json!(key)],
        )
        .await
        .unwrap();
    wait_in_page(
        client,
        "three repeats drawn",
        "return document.querySelectorAll('#curves-svg polyline.repeat').length === 3;",
    )
    .await;
    // Each configuration's predictions, those of its repeat 0 (all at the
    // last epoch).
    wait_in_page(
        client,
        "the finished sweep's predictions",
        "const s = document.querySelector('#predictions .samples'); \
         return s !== null && s.dataset.epoch === '6' \
         && s.querySelectorAll('figure.sample').length === 2;",
    )
    .await;
    let options = eval(
        client,
        "return [...document.querySelectorAll('#prediction-config option')].map(o => o.value);",
    )
    .await;
    let keys: Vec<&str> = answer
        .configurations
        .iter()
        .map(|c| c.config_key.as_str())
        .collect();
    assert_eq!(options, json!(keys));
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join("finished.png"), &png).unwrap();

    // The sweep list shows it.
    client.goto(&format!("{base}/#/")).await.unwrap();
    wait_in_page(
        client,
        "the sweep list",
        &format!(
            "return document.querySelector('#sweeps tr[data-sweep=\"{finished}\"]') !== null;"
        ),
    )
    .await;

    // A random search: parallel coordinates, a line per configuration
    // across an axis per parameter that varies and one for the metric.
    let random = testing::submit(&server.url(), RANDOM).await.id;
    drain(&server, random).await;
    client
        .goto(&format!("{base}/#/sweep/{random}"))
        .await
        .unwrap();
    wait_in_page(
        client,
        "parallel coordinates of five configurations",
        "const p = document.getElementById('parallel-svg'); \
         return p !== null && p.querySelectorAll('polyline.configuration').length === 5;",
    )
    .await;
    let axes = eval(
        client,
        "return [...document.querySelectorAll('#parallel-svg > text')].map(t => t.textContent) \
         .filter(t => ['lr', 'beta1', 'board_accuracy'].includes(t));",
    )
    .await;
    assert_eq!(axes, json!(["beta1", "lr", "board_accuracy"]));
    let summary = eval(
        client,
        "return document.getElementById('summary').textContent;",
    )
    .await;
    assert!(
        summary
            .as_str()
            .unwrap()
            .contains("Values stored rounded to 32-bit floats"),
        "{summary}"
    );

    // A running sweep: a new epoch appears without a reload.
    let running = testing::submit(&server.url(), RUNNING).await.id;
    let (mut worker, worker_id) = testing::worker(&server.url()).await;
    let lease = testing::lease(&mut worker, worker_id).await.unwrap();
    let trial = lease.trial.clone().unwrap();
    let config = trial.config.clone().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut acks = worker
        .report_progress(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let epoch_report = |epoch: u32| pb::ProgressReport {
        trial_id: trial.id,
        lease_id: lease.lease_id.clone(),
        epoch,
        metrics: report(&config, epoch),
    };
    tx.send(epoch_report(1)).await.unwrap();
    acks.message().await.unwrap().unwrap();
    // Predictions sent with a checkpoint: the first cell of the prediction
    // is wrong, and the second sample is exact.
    let mut truth = vec![0u8; 220];
    truth[3] = 1;
    let mut wrong = truth.clone();
    wrong[0] = 1;
    let sample = |item, kind: &str, predicted: &Vec<u8>| pb::BoardSample {
        item,
        kind: kind.into(),
        input: vec![0; 220],
        predicted: predicted.clone(),
        truth: truth.clone(),
    };
    worker
        .put_checkpoint(pb::PutCheckpointRequest {
            trial_id: trial.id,
            lease_id: lease.lease_id.clone(),
            epoch: 1,
            data: vec![1],
            samples: vec![sample(5, "spawn", &wrong), sample(6, "spawn", &truth)],
        })
        .await
        .unwrap();
    client
        .goto(&format!("{base}/#/sweep/{running}"))
        .await
        .unwrap();
    let row = format!(
        "document.querySelector('#trials-table tr[data-trial=\"{}\"]')",
        trial.id
    );
    wait_in_page(
        client,
        "the running trial at epoch 1",
        &format!(
            "const r = {row}; const c = document.querySelector('#curves-svg g.curve'); \
             return r !== null && r.dataset.epochs === '1' && c !== null && c.dataset.lastEpoch === '1';"
        ),
    )
    .await;
    wait_in_page(
        client,
        "the predictions at epoch 1",
        "const s = document.querySelector('#predictions .samples'); \
         return s !== null && s.dataset.epoch === '1' \
         && s.querySelectorAll('figure.sample').length === 2 \
         && s.querySelectorAll('figure.sample svg.board').length === 6;",
    )
    .await;
    let captions = eval(
        client,
        "return [...document.querySelectorAll('#predictions figcaption')].map(f => f.textContent);",
    )
    .await;
    assert_eq!(
        captions,
        json!(["spawn · item 5", "spawn · item 6 · exact"])
    );
    // The one wrong cell is red in the predicted board, and only there.
    let red = eval(
        client,
        "const b = document.querySelectorAll('#predictions figure.sample')[0].querySelectorAll('svg.board')[1]; \
         return [...b.querySelectorAll('rect')].filter(r => r.getAttribute('fill') === '#d62728').length;",
    )
    .await;
    assert_eq!(red, json!(1));
    let summary = eval(
        client,
        "return document.getElementById('summary').textContent;",
    )
    .await;
    assert!(
        !summary.as_str().unwrap().contains("32-bit"),
        "a float64 sweep says nothing of precision: {summary}"
    );
    eval(client, "window.exp025Marker = 'same page'; return true;").await;
    tx.send(epoch_report(2)).await.unwrap();
    acks.message().await.unwrap().unwrap();
    wait_in_page(
        client,
        "epoch 2 in the trials table and the curve",
        &format!(
            "const r = {row}; const c = document.querySelector('#curves-svg g.curve'); \
             return r.dataset.epochs === '2' && r.querySelector('.epochs').textContent === '2/5' \
             && c.dataset.lastEpoch === '2';"
        ),
    )
    .await;
    assert_eq!(
        eval(client, "return window.exp025Marker === 'same page';").await,
        json!(true),
        "the page was reloaded"
    );
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join("running.png"), &png).unwrap();
    drop(tx);
    browser.client.clone().close().await.unwrap();
    server.stop().await;
}
