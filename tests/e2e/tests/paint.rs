//! First contentful paint of the portal beside a bare Leptos page built with the same
//! pipeline, served by the same server, in the same browser run. Prints figures for
//! docs/benchmarks.md; asserts nothing about speed (that belongs to the benchmark record).
//! Run: `cargo xtask bench-portal`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use imprint_e2e::{Browser, free_port, imprint, quantile, wait_port};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run `cargo xtask bench-portal`"))
}

async fn median_fcp(b: &Browser, url: &str, runs: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..runs {
        b.goto("about:blank").await.unwrap();
        b.goto(url).await.unwrap();
        b.wait_for(
            "performance.getEntriesByName('first-contentful-paint').length > 0",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let x = b
            .js("return performance.getEntriesByName('first-contentful-paint')[0].startTime")
            .await
            .unwrap();
        v.push(x.as_f64().unwrap());
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: `cargo xtask bench-portal` runs it"]
async fn first_paint_beside_a_bare_leptos_page() {
    let bin = env("IMPRINT_BIN");
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let b = Browser::start(&driver).await.unwrap();
    let mut results = Vec::new();
    for (label, dir) in [
        ("portal", env("IMPRINT_PORTAL")),
        ("bare Leptos", env("BARE_LEPTOS")),
    ] {
        let work = std::env::temp_dir().join(format!(
            "imprint-paint-{}-{}",
            std::process::id(),
            results.len()
        ));
        std::fs::create_dir_all(&work).unwrap();
        let port = free_port().unwrap();
        let listen = format!("127.0.0.1:{port}");
        let _server = imprint(
            &bin,
            &work,
            &[
                "demo",
                "--entries",
                "10",
                "--listen",
                &listen,
                "--portal",
                &dir,
            ],
        )
        .unwrap();
        wait_port(port, Duration::from_secs(30)).await.unwrap();
        let fcp = median_fcp(&b, &format!("http://{listen}/"), 7).await;
        println!("first contentful paint, {label}: median of 7 = {fcp:.0} ms");
        results.push(fcp);
        let _ = std::fs::remove_dir_all(&work);
    }
    println!("portal / bare Leptos = {:.2}", results[0] / results[1]);
    b.close().await.unwrap();
}

/// The station's own time per unit with one unit at a time (no queueing behind other units),
/// against the server built for release: the software overhead of a provisioning cycle
/// (6 device calls to the simulated unit and 3 server calls over loopback).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: `cargo xtask bench-portal` runs it"]
async fn station_time_per_unit_one_at_a_time() {
    let bin = env("IMPRINT_BIN");
    let portal = env("IMPRINT_PORTAL");
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let work = std::env::temp_dir().join(format!("imprint-cycle-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let _server = imprint(
        &bin,
        &work,
        &[
            "demo",
            "--entries",
            "100",
            "--listen",
            &listen,
            "--portal",
            &portal,
        ],
    )
    .unwrap();
    wait_port(port, Duration::from_secs(30)).await.unwrap();
    let b = Browser::start(&driver).await.unwrap();
    let wait = Duration::from_secs(60);
    b.sign_in(&format!("http://{listen}/"), "bench-station", wait)
        .await
        .unwrap();
    for n in [10, 20, 30, 40, 50] {
        b.click("#fetch").await.unwrap();
        b.wait_for(
            &format!("document.getElementById('pool').innerText.startsWith('{n} ')"),
            wait,
        )
        .await
        .unwrap();
    }
    b.click("#training").await.unwrap();
    b.wait_for("document.getElementById('sim-demo')", wait)
        .await
        .unwrap();
    // Resource timing for every server call of the run (the default buffer keeps only 250).
    b.js("performance.clearResourceTimings(); performance.setResourceTimingBufferSize(5000); return true").await
        .unwrap();
    // Plug 50 units one after the other from inside the page, each as soon as the one before
    // is green, so that no WebDriver poll lands on the page's main thread during a cycle.
    let units: u64 = 50;
    let finished = b
        .js_async(&format!(
            r#"const done = arguments[arguments.length - 1];
        const tiles = document.getElementById('tiles');
        const count = (c) => tiles.querySelectorAll('.tile.' + c).length;
        (async () => {{
          for (let i = 1; i <= {units}; i++) {{
            await new Promise((ok) => {{
              const o = new MutationObserver(() => {{
                if (count('ok') + count('bad') + count('retry') >= i) {{ o.disconnect(); ok(); }}
              }});
              o.observe(tiles, {{ subtree: true, childList: true, attributes: true }});
              document.getElementById('sim-demo').click();
            }});
          }}
          done(count('ok'));
        }})();"#
        ))
        .await;
    match finished {
        Ok(v) if v.as_u64() == Some(units) => {}
        other => {
            let log = b
                .js("return document.getElementById('log').innerText")
                .await
                .unwrap();
            panic!("not every unit went green ({other:?}); station log:\n{log}")
        }
    }
    let t = b.cycle_times().await.unwrap();
    let p = |q: f64| quantile(&t, q);
    println!(
        "station time per unit, one at a time, {} units: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        t.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0)
    );
    // Where the time goes: the server calls of each unit (request sent to answer read, as the
    // page's fetch sees it, loopback included), and what is left for the page and the device.
    // The server's own part of each call comes from its Server-Timing header.
    let calls = b
        .js("return JSON.stringify(performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/')).map(e => [new URL(e.name).pathname, e.duration, (e.serverTiming.find(t => t.name === 'app') || {duration: 0}).duration]))")
        .await
        .unwrap();
    let calls: Vec<(String, f64, f64)> = serde_json::from_str(calls.as_str().unwrap()).unwrap();
    let mut per_path: std::collections::BTreeMap<&str, (Vec<u64>, Vec<u64>)> = Default::default();
    for (path, ms, app) in &calls {
        let e = per_path.entry(path.as_str()).or_default();
        e.0.push(ms.round() as u64);
        e.1.push((app * 10.0).round() as u64);
    }
    for (path, (v, app)) in &mut per_path {
        v.sort_unstable();
        app.sort_unstable();
        println!(
            "  {path}: {} calls, p50 {} ms, p99 {} ms as the page sees it; in the server p50 {:.1} ms, p99 {:.1} ms",
            v.len(),
            quantile(v, 0.5),
            quantile(v, 0.99),
            quantile(app, 0.5) as f64 / 10.0,
            quantile(app, 0.99) as f64 / 10.0,
        );
    }
    let server_ms: f64 = calls.iter().map(|(_, ms, _)| ms).sum();
    let cycle_ms: u64 = t.iter().sum();
    println!(
        "  server calls: {:.0} ms of {} ms over all units ({:.0}%): per unit {:.1} ms server, {:.1} ms page + device",
        server_ms,
        cycle_ms,
        100.0 * server_ms / cycle_ms.max(1) as f64,
        server_ms / t.len().max(1) as f64,
        (cycle_ms as f64 - server_ms) / t.len().max(1) as f64
    );
    b.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&work);
}
