//! Twenty simulated units provisioned through the real portal in headless Chromium against
//! the real server, with faults: cables pulled mid-write, a power cut, a unit answering
//! garbage, the server killed and restarted mid-batch, and the page reloaded mid-batch.
//! Afterwards the server's tables must show each of the twenty installed exactly once, with
//! a verified receipt and the technician's name; two technicians of two factories take turns
//! on the one browser profile (neither is offered the other's records or units); a reload
//! keeps the session, the log and training mode; a report refused for good is shown as
//! refused; then a chip-bound line (records fetched per unit for its chip; a unit reporting
//! another chip's ID set aside). Screenshots go to docs/screenshots/.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashSet;
use std::time::Duration;

use imprint_e2e::{Browser, Loopback, Setup, WAIT, imprint, quantile, wait_port};
use imprint_portal::client::Transport;

async fn count(b: &Browser, css: &str) -> u64 {
    b.js(&format!("return document.querySelectorAll('{css}').length"))
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

async fn sign_in(b: &Browser, url: &str) {
    b.sign_in(url, "line-1-station-3", WAIT).await.unwrap();
}

/// Waits until the header says `n` records are ready.
async fn ready(b: &Browser, n: u32) {
    b.wait_for(
        &format!("document.getElementById('pool').innerText.startsWith('{n} ')"),
        WAIT,
    )
    .await
    .unwrap();
}

async fn click_all(b: &Browser, css: &str) {
    b.js(&format!(
        "document.querySelectorAll('{css}').forEach(x => x.click()); return true"
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built portal, the imprint binary and chromedriver: `cargo xtask test` runs it"]
async fn twenty_units_through_the_real_portal_with_faults() {
    let setup = Setup::from_env("station").unwrap();
    let Setup {
        bin,
        portal,
        driver,
        shots,
        work,
        port,
        listen,
        url,
    } = &setup;
    let (port, url) = (*port, url.clone());
    let mut server = imprint(bin, work, &setup.demo_args()).unwrap();
    wait_port(port, WAIT).await.unwrap();

    let b = Browser::start(driver).await.unwrap();
    b.goto(&url).await.unwrap();
    b.wait_for("document.getElementById('user')", WAIT)
        .await
        .unwrap();
    b.screenshot(&shots.join("login.png")).await.unwrap();
    let fcp = b
        .js("const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : -1")
        .await
        .unwrap();
    println!("portal first contentful paint: {fcp} ms (loopback, headless Chromium)");
    // As shipped: the module under its content's hash, compressed on the wire (brotli, from
    // the file `cargo xtask portal` precompressed).
    let wasm = b
        .js("const e = performance.getEntriesByType('resource').find(e => /imprint_portal-[0-9a-f]{16}_bg\\.wasm$/.test(e.name)); return e ? [e.encodedBodySize, e.decodedBodySize] : null")
        .await
        .unwrap();
    let (wire, body) = (wasm[0].as_u64().unwrap(), wasm[1].as_u64().unwrap());
    assert!(
        wire * 2 < body,
        "the module came compressed: {wire} of {body} bytes"
    );
    println!("station module: {wire} bytes on the wire for {body}");
    sign_in(&b, &url).await;
    // No record yet: fetching is what to do first, and the page says so.
    assert_eq!(count(&b, "#fetch-first").await, 1);
    assert_eq!(count(&b, "#fetch.primary").await, 1);
    b.click("#fetch").await.unwrap();
    ready(&b, 10).await;
    b.click("#fetch").await.unwrap();
    ready(&b, 20).await;
    b.click("#training").await.unwrap();
    b.wait_for("document.getElementById('sim-demo')", WAIT)
        .await
        .unwrap();

    // Batch 1: eight good units, two cables pulled mid-write, one power cut, one garbage unit.
    for _ in 0..8 {
        b.click("#sim-demo").await.unwrap();
    }
    b.click("#sim-unplug").await.unwrap();
    b.click("#sim-unplug").await.unwrap();
    b.click("#sim-power").await.unwrap();
    b.click("#sim-garbage").await.unwrap();
    b.wait_for("document.querySelectorAll('.tile.ok, .done-row.ok').length === 8 && document.querySelectorAll('.tile.working').length === 0", WAIT).await.unwrap();
    assert_eq!(
        count(&b, ".tile.retry").await,
        3,
        "the pulled and power-cut units wait to be plugged back"
    );
    // The station finds its eight reported units in the server's audit log, checked from the
    // signed checkpoint (docs/portal.md, "The audit log, checked by the station").
    b.wait_for(
        "(parseInt((document.getElementById('in-log') || {}).textContent) || 0) >= 8",
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(count(&b, "#audit-alarm").await, 0, "no audit alarm");
    assert_eq!(
        count(&b, ".tile.bad").await,
        1,
        "the garbage unit is set aside"
    );
    b.screenshot(&shots.join("station-faults.png"))
        .await
        .unwrap();
    // Plug them back: each resumes (asks the unit, then writes or takes its receipt).
    assert_eq!(count(&b, "#fetch-first").await, 0);
    // Tiles lead with the unit's product serial; a green tile offers no button, a red one
    // (set aside) none either.
    let label = b
        .js("return document.querySelector('.tile .label').innerText")
        .await
        .unwrap();
    assert!(label.as_str().unwrap().starts_with("SIM-"), "{label}");
    assert_eq!(count(&b, ".tile.ok button").await, 0);
    assert_eq!(count(&b, ".tile.bad button:not(.set-aside)").await, 0);
    // The red unit is set aside: its tile goes to the done list, red.
    b.click(".tile.bad button.set-aside").await.unwrap();
    b.wait_for("document.querySelectorAll('.done-row.bad').length === 1 && document.querySelectorAll('.tile.bad').length === 0", WAIT)
        .await
        .unwrap();
    click_all(&b, ".tile.retry button.plug").await;
    b.wait_for(
        "document.querySelectorAll('.tile.ok, .done-row.ok').length === 11",
        WAIT,
    )
    .await
    .unwrap();

    // Batch 2: the server dies mid-batch. Units are written, their receipts kept.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    for _ in 0..3 {
        b.click("#sim-demo").await.unwrap();
    }
    b.wait_for("document.querySelectorAll('.tile.retry').length === 3 && document.querySelectorAll('.tile.working').length === 0", WAIT).await.unwrap();
    let log = b
        .js("return document.getElementById('log').innerText")
        .await
        .unwrap();
    assert!(
        log.as_str().unwrap().contains("Server unreachable"),
        "{log}"
    );
    b.wait_for(
        "(document.getElementById('pending') || {innerText: ''}).innerText.startsWith('3 ')",
        WAIT,
    )
    .await
    .unwrap();
    b.screenshot(&shots.join("station-offline.png"))
        .await
        .unwrap();
    server = imprint(
        bin,
        work,
        &[
            "--data-dir",
            "imprint-demo",
            "serve",
            "--listen",
            listen,
            "--portal",
            portal,
        ],
    )
    .unwrap();
    wait_port(port, WAIT).await.unwrap();
    // The station reports what it kept by itself once the server answers...
    b.wait_for("!document.getElementById('pending')", WAIT)
        .await
        .unwrap();
    // A PC shared by two factories. Ana signs out with the three units reported but not yet
    // checked, still plugged in: the station says they stay with acme-sz.
    b.click("#sign-out").await.unwrap();
    b.wait_for("document.getElementById('sign-out-mid')", WAIT)
        .await
        .unwrap();
    let said = b
        .js("return document.getElementById('sign-out-panel').innerText")
        .await
        .unwrap();
    assert!(
        said.as_str()
            .unwrap()
            .contains("3 unit(s) of acme-sz are mid-way"),
        "{said}"
    );
    b.screenshot(&shots.join("station-sign-out.png"))
        .await
        .unwrap();
    b.click("#sign-out-keep").await.unwrap();
    b.wait_for("document.getElementById('user')", WAIT)
        .await
        .unwrap();
    // Ben of contoso-pl signs in at the same station: none of ana's records are offered to
    // him, and her three units, found plugged in, are set aside as hers, untouched.
    b.sign_in_as(&url, "tech-ben", "line-1-station-3", None, WAIT)
        .await
        .unwrap();
    ready(&b, 0).await;
    // Signing out of training put the real USB back: training is turned on again, and the
    // simulated units still plugged in come back with it.
    assert_eq!(count(&b, "#sim-demo").await, 0, "a sign-out ends training");
    b.click("#training").await.unwrap();
    b.wait_for("document.querySelectorAll('.tile.bad').length === 3", WAIT)
        .await
        .unwrap();
    let bad = b
        .js("return document.querySelector('.tile.bad').innerText")
        .await
        .unwrap();
    assert!(
        bad.as_str().unwrap().contains("mid-way for acme-sz"),
        "{bad}"
    );
    b.wait_for("document.getElementById('sim-demo')", WAIT)
        .await
        .unwrap();
    b.click("#fetch").await.unwrap();
    ready(&b, 10).await;
    b.click("#sim-demo").await.unwrap();
    b.wait_for(
        "document.querySelectorAll('.tile.ok, .done-row.ok').length === 1",
        WAIT,
    )
    .await
    .unwrap();
    // The demo's model product locks its units after their check. A unit whose flash fails
    // the lock's write is shown with its fix; retried, it is locked without a second install,
    // report or check.
    b.click("#sim-lock-fails").await.unwrap();
    b.wait_for(
        "document.querySelectorAll('.tile.retry').length === 1 && document.querySelector('.tile.retry').innerText.includes('Lock not written')",
        WAIT,
    )
    .await
    .unwrap();
    b.screenshot(&shots.join("station-lock-failed.png"))
        .await
        .unwrap();
    click_all(&b, ".tile.retry button.retry").await;
    b.wait_for(
        "document.querySelectorAll('.tile.ok, .done-row.ok').length === 2",
        WAIT,
    )
    .await
    .unwrap();
    // He signs out handing his eight unused records back to the server.
    b.click("#sign-out").await.unwrap();
    b.wait_for("document.getElementById('sign-out-release')", WAIT)
        .await
        .unwrap();
    b.click("#sign-out-release").await.unwrap();
    b.wait_for("document.getElementById('user')", WAIT)
        .await
        .unwrap();
    let bens = b
        .js("return JSON.parse(localStorage.getItem('imprint.journal.v3.contoso-pl')).entries.map(e => Object.keys(e.step)[0] + '')")
        .await
        .unwrap();
    assert_eq!(
        bens,
        serde_json::json!(["locked", "locked"]),
        "ben's journal: his two units, locked, no record left"
    );
    // Ana again: her three units resume where they were and pass the closed-loop check.
    sign_in(&b, &url).await;
    b.click("#training").await.unwrap();
    b.wait_for(
        "document.querySelectorAll('.tile.ok, .done-row.ok').length === 3",
        WAIT,
    )
    .await
    .unwrap();

    // The page reloads mid-batch, while a unit is mid-install: a slow unit has taken the
    // install (its flash holds the record) but its answer is still on the way.
    b.click("#sim-slow").await.unwrap();
    b.wait_for(
        "(localStorage.getItem('imprint.journal.v3.acme-sz') || '').includes('install_sent')",
        WAIT,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The session, the journal, the log and training mode come back, the unit is still
    // plugged in, the line carries on: no sign-in, no click.
    b.goto(&url).await.unwrap();
    b.wait_for(
        "document.getElementById('pool') && document.getElementById('pool').innerText.startsWith('5 ')",
        WAIT,
    )
    .await
    .unwrap();
    b.wait_for("document.getElementById('sim-demo')", WAIT)
        .await
        .unwrap();
    let kept = b
        .js("return [document.querySelector('.who').innerText, document.getElementById('log').innerText]")
        .await
        .unwrap();
    assert!(kept[0].as_str().unwrap().contains("tech-ana"), "{kept}");
    assert!(
        kept[1].as_str().unwrap().contains("Server unreachable"),
        "the log from before the reload is kept: {kept}"
    );
    // The unit answers "I already hold it" and the station finishes it without a second write.
    // The bench came back too: the three units finished before the reload, and this one.
    b.wait_for(
        "document.querySelectorAll('.tile.ok, .done-row.ok').length === 4",
        WAIT,
    )
    .await
    .unwrap();
    let log = b
        .js("return document.getElementById('log').innerText")
        .await
        .unwrap();
    assert!(
        log.as_str().unwrap().contains("already holds"),
        "the reloaded station asked the unit before writing again"
    );
    for _ in 0..5 {
        b.click("#sim-demo").await.unwrap();
    }
    b.click("#sim-wrong").await.unwrap();
    b.wait_for("document.querySelectorAll('.tile.ok, .done-row.ok').length === 9 && document.querySelectorAll('.tile.working').length === 0", WAIT).await.unwrap();
    ready(&b, 0).await;
    // The header stays pinned with the record count however far the bench is scrolled.
    let pinned = b
        .js("window.scrollTo(0, document.body.scrollHeight); const top = document.querySelector('header.top').getBoundingClientRect().top; const pool = document.getElementById('pool').getBoundingClientRect(); window.scrollTo(0, 0); return [window.innerHeight < document.body.scrollHeight, top, pool.bottom <= window.innerHeight]")
        .await
        .unwrap();
    assert_eq!(
        pinned,
        serde_json::json!([true, 0, true]),
        "scrolled, the header stays on top"
    );
    b.screenshot(&shots.join("station.png")).await.unwrap();
    // The line's figures: a chart per measure over the shift, with axes, the clock and a
    // legend; retries counted by their kind (pulled cables, a power cut, the reload).
    let figures = b
        .js("const u = document.getElementById('chart-units'); return [u.querySelectorAll('path').length, u.querySelectorAll('text.tick').length, u.querySelector('.legend').innerText, document.getElementById('retries-by-kind').innerText]")
        .await
        .unwrap();
    assert!(figures[0].as_u64().unwrap() >= 1, "{figures}");
    // The last hour's units per hour are every unit done in the last hour, the ones of the
    // last second included.
    let uph = b
        .js("return [Number(document.getElementById('uph').innerText), JSON.parse(localStorage.getItem('imprint.outcomes.v1')).filter(o => o.ok && o.at_ms > Date.now() - 3600000).length]")
        .await
        .unwrap();
    assert_eq!(uph[0], uph[1], "{uph}");
    // Green tiles of a few seconds ago have folded into the done list (the page's clock ticks).
    b.wait_for("document.querySelectorAll('.done-row.ok').length > 0", WAIT)
        .await
        .unwrap();
    assert!(
        figures[1].as_u64().unwrap() >= 6,
        "ticks on both axes: {figures}"
    );
    assert!(
        figures[2].as_str().unwrap().contains("line-1-station-3"),
        "{figures}"
    );
    let kinds = figures[3].as_str().unwrap();
    assert!(
        kinds.contains("cable pulled or power lost") && kinds.contains("page reloaded"),
        "{kinds}"
    );
    b.screenshot_of(".figures", &shots.join("station-figures.png"))
        .await
        .unwrap();
    let page = b
        .js("return document.body.innerText")
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(page.contains("Wrong model"), "the wrong-model unit says so");

    // An offline lease: signed records the station checks with the key it pinned at sign-in.
    b.click("#lease").await.unwrap();
    b.wait_for(
        "document.getElementById('log').innerText.includes('signature checked')",
        WAIT,
    )
    .await
    .unwrap();
    ready(&b, 20).await;
    let badge = b
        .js("return document.getElementById('lease-badge').innerText")
        .await
        .unwrap();
    assert!(
        badge
            .as_str()
            .unwrap()
            .starts_with("offline lease: 20 left, until "),
        "{badge}"
    );
    let log = b
        .js("return document.getElementById('log').innerText")
        .await
        .unwrap();
    assert!(log.as_str().unwrap().contains("(8 h)"), "{log}");

    // A unit with a duplicated serial label: written, and its report refused for good by the
    // server (one identity per product serial). Shown as refused, not as pending.
    b.click("#sim-demo").await.unwrap();
    b.wait_for(
        "document.querySelectorAll('.tile.ok, .done-row.ok').length === 10",
        WAIT,
    )
    .await
    .unwrap();
    b.click("#sim-duplicate").await.unwrap();
    b.wait_for(
        "(document.getElementById('refused') || {innerText: ''}).innerText.startsWith('1 ')",
        WAIT,
    )
    .await
    .unwrap();
    let refused = b
        .js("return [Array.from(document.querySelectorAll('.tile.bad')).map(t => t.innerText).join('|'), !!document.getElementById('pending')]")
        .await
        .unwrap();
    assert!(
        refused[0].as_str().unwrap().contains("Report refused"),
        "{refused}"
    );
    assert_eq!(
        refused[1],
        serde_json::json!(false),
        "a refusal is not pending"
    );
    b.screenshot(&shots.join("station-refused.png"))
        .await
        .unwrap();

    // A chip-bound line: each unit's record is fetched for the chip it reports as it is plugged
    // in; a unit that reports another unit's chip ID cannot open the record fetched for it.
    b.sign_in_for(&url, "line-2-station-1", Some("CAM-C200"), WAIT)
        .await
        .unwrap();
    b.wait_for(
        "document.getElementById('pool').innerText.includes('chip-bound')",
        WAIT,
    )
    .await
    .unwrap();
    let disabled = b
        .js("return [document.getElementById('fetch').disabled, document.getElementById('lease').disabled]")
        .await
        .unwrap();
    assert_eq!(
        disabled,
        serde_json::json!([true, true]),
        "no pool, no lease for a chip-bound product"
    );
    b.click("#training").await.unwrap();
    b.wait_for("document.getElementById('sim-clone')", WAIT)
        .await
        .unwrap();
    for _ in 0..3 {
        b.click("#sim-demo").await.unwrap();
    }
    b.click("#sim-clone").await.unwrap();
    b.wait_for("document.querySelectorAll('.tile.ok, .done-row.ok').length === 3 && document.querySelectorAll('.tile.bad').length === 1 && document.querySelectorAll('.tile.working').length === 0", WAIT).await.unwrap();
    let bad = b
        .js("return document.querySelector('.tile.bad').innerText")
        .await
        .unwrap();
    assert!(
        bad.as_str()
            .unwrap()
            .contains("Record does not open in this unit"),
        "{bad}"
    );
    b.screenshot(&shots.join("station-chip-bound.png"))
        .await
        .unwrap();

    // Cycle time per unit as the station measured it (plug-in to done), good units only.
    let times = b.cycle_times().await.unwrap();
    let p = |q: f64| quantile(&times, q);
    println!(
        "per-unit station time over {} units: p50 {} ms, p99 {} ms, max {} ms",
        times.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );

    // The server's word: twenty installed, each once, by tech-ana, receipts verified (the server
    // records nothing without a valid receipt), audit chain intact.
    // Through the portal's own client and the contract's types.
    let api = Loopback(port);
    let signed_in = imprint_portal::client::login(&api, "auditor", "demo-audit-pass")
        .await
        .unwrap();
    assert_eq!(signed_in.user.role, imprint_api::Role::Auditor);
    let auth = signed_in.token.bearer();
    let (s, csv) = api
        .send(
            imprint_api::Op::ExportInstalled.route().method,
            &imprint_api::Op::ExportInstalled.path(),
            Some(&auth),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 26, "{csv}");
    let ids: HashSet<&str> = rows.iter().map(|r| r[0]).collect();
    let serials: HashSet<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!((ids.len(), serials.len()), (26, 26));
    let (chip, model): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r[0].starts_with("IMPC-"));
    assert_eq!((model.len(), chip.len()), (23, 3), "{csv}");
    let by = |who: &str| model.iter().filter(|r| r[3] == who).count();
    assert_eq!((by("tech-ana"), by("tech-ben")), (21, 2), "{csv}");
    // Every unit of the locking product was locked after its check, and the server recorded
    // it (the export's last column, locked_at_ms); the chip-bound product does not lock.
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let locked_at = header.iter().position(|h| *h == "locked_at_ms").unwrap();
    assert!(
        model.iter().all(|r| r[locked_at].parse::<u64>().is_ok()),
        "{csv}"
    );
    assert!(chip.iter().all(|r| r[locked_at].is_empty()), "{csv}");
    assert!(
        model
            .iter()
            .all(|r| r[4] == "line-1-station-3" && r[5].len() == 64)
    );
    assert!(
        chip.iter()
            .all(|r| r[3] == "tech-ana" && r[4] == "line-2-station-1" && r[5].len() == 64)
    );
    let (s, text) = api
        .send(
            imprint_api::Method::Get,
            &imprint_api::Op::VerifyAudit.path(),
            Some(&auth),
            None,
        )
        .await
        .unwrap();
    let verified: imprint_api::AuditVerification = imprint_portal::client::read(s, &text).unwrap();
    assert!(verified.ok, "{verified:?}");
    // No pass phrase ever reached the station: not its page, not its log, not what it stores.
    // The test reads the twenty installed units' pass phrases back from the server's database
    // (with its key-encryption key) and looks for each.
    let seen = b
        .js("return [document.body.innerText, document.getElementById('log').innerText, JSON.stringify(localStorage), JSON.stringify(sessionStorage)].join('\\n')")
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();

    // A damaged journal stops the station after a reload: the message and a download, no
    // sign-in, and the stored text exactly as it was; setting it aside keeps the text under a
    // key of its own and starts empty.
    let damaged = r#"{"entries":[{"record":{"apparatus_id":"IMP-1","key_id":1,"sealed":"00"#;
    b.js(&format!(
        "localStorage.setItem('imprint.journal.v3.acme-sz', {}); return true",
        serde_json::to_string(damaged).unwrap()
    ))
    .await
    .unwrap();
    b.goto(&url).await.unwrap();
    b.wait_for("document.getElementById('journal-damaged')", WAIT)
        .await
        .unwrap();
    b.screenshot(&shots.join("journal-damaged.png"))
        .await
        .unwrap();
    assert_eq!(
        count(&b, "#user").await,
        0,
        "no sign-in over a damaged journal"
    );
    let stored = b
        .js("return localStorage.getItem('imprint.journal.v3.acme-sz')")
        .await
        .unwrap();
    assert_eq!(
        stored.as_str(),
        Some(damaged),
        "the damaged journal was changed"
    );
    click_all(&b, "#set-aside").await;
    // The session was kept over the reload: the station starts again with an empty journal.
    b.wait_for(
        "document.getElementById('pool') && document.getElementById('pool').innerText.includes('chip-bound')",
        WAIT,
    )
    .await
    .unwrap();
    let kept = b
        .js("return Object.keys(localStorage).filter(k => k.startsWith('imprint.journal.damaged.')).map(k => localStorage.getItem(k))")
        .await
        .unwrap();
    assert_eq!(kept, serde_json::json!([damaged]));
    b.close().await.unwrap();
    drop(server);
    let secrets = installed_pass_phrases(&work.join("imprint-demo")).await;
    assert_eq!(secrets.len(), 26);
    for (id, pass) in &secrets {
        assert!(pass.len() >= 16);
        assert!(
            !seen.contains(pass.as_str()),
            "the pass phrase of {id} reached the station"
        );
    }
    let _ = std::fs::remove_dir_all(work);
}

/// The pass phrases of the installed units, read from the stopped server's database and opened
/// with its keys (table 702 seals each under the context "702/<apparatus ID>"): the token's
/// when `cargo xtask test` gave the server one (IMPRINT_PKCS11_MODULE), else its KEK file.
async fn installed_pass_phrases(data: &std::path::Path) -> Vec<(String, String)> {
    use sqlx::Row;
    let kek = match std::env::var_os("IMPRINT_PKCS11_MODULE") {
        Some(module) => {
            assert!(
                !data.join("kek.key").exists(),
                "a server with its keys in a token wrote a key file"
            );
            let token = imprint_server::pkcs11::Token::open(
                std::path::Path::new(&module),
                &std::env::var("IMPRINT_PKCS11_TOKEN")
                    .expect("IMPRINT_PKCS11_TOKEN set with IMPRINT_PKCS11_MODULE"),
                &std::env::var("IMPRINT_PKCS11_PIN")
                    .expect("IMPRINT_PKCS11_PIN set with IMPRINT_PKCS11_MODULE"),
            )
            .unwrap();
            println!(
                "the server's keys were in the PKCS#11 token '{}'",
                token.label()
            );
            imprint_server::custody::Custody::in_token(token).unwrap()
        }
        None => imprint_server::kek::Kek::load_file(&data.join("kek.key"))
            .unwrap()
            .into(),
    };
    let pool = imprint_server::store::Store::open_sqlite(&data.join("imprint.db"))
        .await
        .unwrap();
    let rows =
        sqlx::query("SELECT apparatus_id, pass_sealed FROM auth_info WHERE state = 'installed'")
            .fetch_all(pool.pool())
            .await
            .unwrap();
    let secrets = rows
        .iter()
        .map(|r| {
            let id: String = r.get("apparatus_id");
            let sealed: Vec<u8> = r.get("pass_sealed");
            let pass = kek.open(&format!("702/{id}"), &sealed).unwrap();
            (id, String::from_utf8(pass.to_vec()).unwrap())
        })
        .collect();
    pool.close().await;
    secrets
}
