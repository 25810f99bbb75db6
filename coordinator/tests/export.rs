//! `coordinator export --tensorboard` through the real binary and a real
//! server (SQLite, and Postgres when given): every stored value of every
//! trial is in the event files, read back by our reader and, where the
//! `tensorboard` Python package is installed, by TensorBoard's own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coordinator::tensorboard::{What, read_events, run_dir};
use coordinator::testing;
use proto::v1 as pb;

fn report(config: &pb::TrialConfig, epoch: u32) -> Vec<pb::Metric> {
    let metric = |split: &str, name: &str, value: f64| pb::Metric {
        split: split.into(),
        name: name.into(),
        value,
    };
    let spread = f64::from((config.seed % 5) as u32) * 0.01;
    vec![
        metric("test", "board_accuracy", f64::from(epoch) / 10.0 + spread),
        metric("train", "disc_loss", 0.7 - f64::from(epoch) * 0.01),
        metric("test", "spawn_precision", f64::NAN),
    ]
}

/// A sweep of `yaml` submitted to `server` and run to its end by one
/// simulated worker reporting [`report`]'s metrics: its id, and the epochs
/// reported.
async fn drained(server: &testing::Running, yaml: &str) -> (i64, u64) {
    let sweep = testing::submit(&server.url(), yaml).await.id;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let reporter: Arc<testing::Reporter> = Arc::new(report);
    let worker = tokio::spawn(testing::simulated_worker(server.url(), reporter, stopping));
    testing::wait_until("the sweep to end", Duration::from_secs(60), || async {
        server.store.sweep(sweep).await.unwrap().unwrap().is_done()
    })
    .await;
    stop.send(true).unwrap();
    (sweep, worker.await.unwrap())
}

/// Runs of a TensorBoard log directory as TensorBoard reads them: run ->
/// tag -> (step, value) pairs; None without the `tensorboard` package.
fn tensorboard_reads(dir: &std::path::Path) -> Option<serde_json::Value> {
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
m = EventMultiplexer().AddRunsFromDirectory(sys.argv[1])
m.Reload()
out = {}
for run in m.Runs():
    acc = m.GetAccumulator(run)
    out[run] = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    for tag in acc.Tags()["images"]:
        out[run]["image:" + tag] = [[e.step, e.width, e.height] for e in acc.Images(tag)]
print(json.dumps(out).replace("NaN", "null"))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'tensorboard'") {
            return None;
        }
        panic!("tensorboard could not read the export: {err}");
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Checks the prediction image of `path` against the samples it shows:
/// its size, and its pixels cell by cell (filled cells dark, cells of the
/// prediction that differ from the truth red when filled and pink when
/// not), counted per colour.
fn check_image(path: &std::path::Path, samples: &[pb::BoardSample]) {
    let events = read_events(path).unwrap();
    let image = events
        .iter()
        .find_map(|e| match &e.what {
            Some(What::Summary(s)) => s.value.iter().find_map(|v| v.image.clone()),
            _ => None,
        })
        .expect("an image event");
    assert_eq!(events.last().unwrap().step, 3);
    let decoder = png::Decoder::new(std::io::Cursor::new(&image.encoded_image_string));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(
        (info.width as i32, info.height as i32),
        (image.width, image.height)
    );
    assert_eq!((image.width, image.height), (152, 200));
    let count = |rgb: [u8; 3]| pixels.chunks_exact(3).filter(|p| *p == rgb).count();
    let filled = |b: &[u8]| b.iter().filter(|&&c| c == 1).count();
    let (mut dark, mut red, mut pink) = (0, 0, 0);
    for s in samples {
        dark += filled(&s.input) + filled(&s.truth);
        for (p, t) in s.predicted.iter().zip(&s.truth) {
            match (*p == 1, p == t) {
                (true, true) => dark += 1,
                (true, false) => red += 1,
                (false, false) => pink += 1,
                (false, true) => {}
            }
        }
    }
    // A cell is 3 x 3 pixels (4 with its gap).
    assert_eq!(count([51, 51, 68]), dark * 9);
    assert_eq!(count([214, 39, 40]), red * 9);
    assert_eq!(count([247, 182, 182]), pink * 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_value_is_exported_as_a_tensorboard_scalar() {
    for db in testing::databases().await {
        let server = testing::start(&db.url, Duration::from_secs(60), 1).await;
        let (sweep, reported) = drained(&server, &testing::sweep_yaml(2, 2, 3)).await;
        assert_eq!(reported, 4 * 3);

        let dir = tempfile::tempdir().unwrap();
        let out = testing::client_command(
            env!("CARGO_BIN_EXE_coordinator"),
            &server.url(),
            &[
                "export",
                &sweep.to_string(),
                "--tensorboard",
                &dir.path().display().to_string(),
            ],
        );
        assert!(
            out.contains("4 runs, 36 scalars and 2 prediction images written"),
            "{}: {out}",
            db.name
        );

        // Each trial's run holds each stored value, as a 32-bit float.
        let trials = server.store.trials(sweep).await.unwrap();
        let labels = coordinator::results::labels_by_key(&trials);
        let mut expected: BTreeMap<String, BTreeMap<String, Vec<(i64, f32)>>> = BTreeMap::new();
        for t in &trials {
            let run = format!("{}/repeat-{}", run_dir(&labels[&t.config_key]), t.repeat);
            let scalars = expected.entry(run.clone()).or_default();
            for (split, metric) in coordinator::packed::slots() {
                for v in server
                    .store
                    .metric_values(sweep, split, metric, None)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|v| v.trial_id == t.id)
                {
                    scalars
                        .entry(format!("{split}/{}", v.value.metric))
                        .or_default()
                        .push((i64::from(v.epoch), v.value.value as f32));
                }
            }
            let (files, images): (Vec<_>, Vec<_>) = std::fs::read_dir(dir.path().join(&run))
                .unwrap()
                .map(|e| e.unwrap().path())
                .partition(|p| !p.display().to_string().ends_with("-predictions"));
            assert_eq!(files.len(), 1, "{run}: {files:?}");
            // Each configuration's predictions are one image, in the run of
            // its trial furthest along (all at epoch 3: repeat 0).
            assert_eq!(
                images.len(),
                usize::from(t.repeat == 0),
                "{run}: {images:?}"
            );
            for path in &images {
                check_image(path, &testing::board_samples(&t.config));
            }
            let mut found: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
            for event in read_events(&files[0]).unwrap() {
                if let Some(What::Summary(s)) = event.what {
                    for v in s.value {
                        found
                            .entry(v.tag)
                            .or_default()
                            .push((event.step, v.simple_value));
                    }
                }
            }
            for list in scalars.values_mut() {
                list.sort_by_key(|(step, _)| *step);
            }
            let bits = |m: &BTreeMap<String, Vec<(i64, f32)>>| -> Vec<(String, i64, u32)> {
                m.iter()
                    .flat_map(|(tag, l)| l.iter().map(move |(s, v)| (tag.clone(), *s, v.to_bits())))
                    .collect()
            };
            assert_eq!(bits(&found), bits(scalars), "{}: {run}", db.name);
        }
        assert_eq!(expected.len(), 4);

        // Exporting again replaces the files rather than adding to them.
        testing::client_command(
            env!("CARGO_BIN_EXE_coordinator"),
            &server.url(),
            &[
                "export",
                &sweep.to_string(),
                "--tensorboard",
                &dir.path().display().to_string(),
            ],
        );

        // TensorBoard's own reader, as a second opinion.
        match tensorboard_reads(dir.path()) {
            Some(read) => {
                let runs = read.as_object().unwrap();
                assert_eq!(runs.len(), 4, "{read}");
                let images: Vec<&serde_json::Value> = runs
                    .values()
                    .filter_map(|tags| tags.get("image:predictions"))
                    .collect();
                assert_eq!(images.len(), 2, "{read}");
                for image in images {
                    assert_eq!(image, &serde_json::json!([[3, 152, 200]]), "{read}");
                }
                for (run, tags) in &expected {
                    for (tag, values) in tags {
                        let got = &read[run][tag];
                        let got: Vec<(i64, Option<f64>)> = got
                            .as_array()
                            .unwrap_or_else(|| panic!("{run} {tag} missing: {read}"))
                            .iter()
                            .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64()))
                            .collect();
                        let want: Vec<(i64, Option<f64>)> = values
                            .iter()
                            .map(|(s, v)| (*s, (!v.is_nan()).then_some(f64::from(*v))))
                            .collect();
                        assert_eq!(got, want, "{run} {tag}");
                    }
                }
            }
            None if std::env::var_os("EXP025_REQUIRE_TENSORBOARD").is_some() => {
                panic!("EXP025_REQUIRE_TENSORBOARD is set but the tensorboard package is missing")
            }
            None => eprintln!("SKIPPED: TensorBoard's reader (pip install tensorboard)"),
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_holds_curves_results_and_p_values_and_loads_nothing() {
    let db = testing::databases().await.remove(0);
    let server = testing::start(&db.url, Duration::from_secs(60), 1).await;
    let (sweep, _) = drained(&server, &testing::sweep_yaml(2, 3, 4)).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    let id = sweep.to_string();
    let path = file.display().to_string();
    testing::client_command(
        env!("CARGO_BIN_EXE_coordinator"),
        &server.url(),
        &["report", &id, "--out", &path, "--metric", "board_accuracy"],
    );
    let html = std::fs::read_to_string(&file).unwrap();
    // Predictions: per configuration, its samples' three boards each, the
    // spawn of repeat 0 (an even seed) with one cell missing and one too
    // many in the predicted board.
    assert_eq!(html.matches("<svg class=\"board\"").count(), 2 * 2 * 3);
    assert_eq!(html.matches("height=\"5\" fill=\"#d62728\"").count(), 2);
    assert_eq!(html.matches("height=\"5\" fill=\"#f7b6b6\"").count(), 2);
    for outside in ["<script", "src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(outside),
            "the report loads nothing: {outside}"
        );
    }

    let mut api = proto::v1::sweep_service_client::SweepServiceClient::connect(server.url())
        .await
        .unwrap();
    let results = api
        .results(pb::ResultsRequest {
            sweep_id: sweep,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(results.configurations.len(), 2);
    for c in &results.configurations {
        // A curve per configuration, a point per epoch.
        let group = format!("<g data-configuration=\"{}\">", c.label);
        let at = html
            .find(&group)
            .unwrap_or_else(|| panic!("no curve for {}", c.label));
        let polyline = &html[at..];
        let points = polyline
            .split("class=\"mean\" points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 4, "{points}");
        // The results row: the same summary as the API's.
        let row_at = html
            .find(&format!("<tr data-configuration=\"{}\">", c.label))
            .unwrap();
        let row = html[row_at..].split("</tr>").next().unwrap();
        let s = c
            .metrics
            .iter()
            .find(|m| m.name == "board_accuracy")
            .unwrap()
            .summary
            .unwrap();
        let cell = format!(
            "<td data-metric=\"board_accuracy\">{:.4} ± {:.4} [",
            s.mean, s.std
        );
        assert!(row.contains(&cell), "{row} lacks {cell}");
        assert!(row.contains("<td>4</td><td>3 / 3</td>"), "{row}");
    }

    // The p-value matrix: the same p-values as compare's, off the diagonal.
    let pairs = api
        .compare(pb::CompareRequest {
            sweep_id: sweep,
            metric: "board_accuracy".into(),
            all_pairs: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let matrix = html.split("<table class=\"pvalues\">").nth(1).unwrap();
    let matrix = matrix.split("</table>").next().unwrap();
    for c in &pairs.comparisons {
        let a = &c.a.as_ref().unwrap().label;
        let row = matrix
            .split("<tr>")
            .find(|r| r.starts_with(&format!("<th>{a}</th>")))
            .unwrap();
        let shown = if c.pvalue < 1e-4 {
            format!("{:.3e}", c.pvalue)
        } else {
            format!("{:.4}", c.pvalue)
        };
        assert!(
            row.contains(&format!(">{shown}</td>")),
            "{row} lacks {shown}"
        );
        assert!(row.contains("<td>-</td>"), "the diagonal: {row}");
    }

    // An unknown sweep: a clear error, and nothing written.
    for args in [
        vec!["report", "404", "--out", path.as_str()],
        vec!["export", "404", "--tensorboard", path.as_str()],
    ] {
        std::fs::remove_file(&file).unwrap_or_default();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .args(&args)
            .args(["--coordinator", &server.url()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains("sweep 404 not found"), "{args:?}: {err}");
        assert!(!file.exists(), "{args:?} wrote something");
    }
    server.stop().await;
}
