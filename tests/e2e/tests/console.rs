//! The console in headless Chromium against the real server: an admin adds a factory, sets
//! its quota, adds its technician, disables and enables a user, imports a CSV file with a bad line (sees the line, nothing
//! imported), fixes it and imports it, and rotates a product's key there and back; the new
//! factory's technician provisions simulated units at the station; the auditor finds those
//! installs in the audit log by station, the log verifies and the installed devices export;
//! the admin revokes one of them. Nothing secret reaches the page.
//! Screenshots of each console page go to docs/screenshots/.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use imprint_api::{FactoryList, ListFactories};
use imprint_core::ProductCode;
use imprint_e2e::{Browser, Loopback, Setup, WAIT, imprint_file_custody, wait_port};

/// Signs in on the portal's form as `user`; the console opens.
async fn sign_in(b: &Browser, url: &str, user: &str, password: &str) {
    b.goto(url).await.unwrap();
    b.wait_for("document.getElementById('user')", WAIT)
        .await
        .unwrap();
    b.fill("#user", user).await.unwrap();
    b.fill("#pass", password).await.unwrap();
    b.click("#signin").await.unwrap();
    b.wait_for("document.getElementById('nav-overview')", WAIT)
        .await
        .unwrap();
}

async fn wait_text(b: &Browser, css: &str, has: &str) {
    let script = format!(
        "(document.querySelector({css:?}) || {{innerText: ''}}).innerText.includes({has:?})"
    );
    if let Err(e) = b.wait_for(&script, WAIT).await {
        let now = b.text(css).await.unwrap_or_default();
        panic!("{css} never said {has:?} (it says {now:?}): {e}");
    }
}

/// The pool of CAM-X100 as the server counts it.
async fn pool(port: u16) -> u64 {
    let t = imprint_client::login(&Loopback(port), "admin", "demo-admin-pass")
        .await
        .unwrap()
        .token;
    let o: FactoryList = imprint_client::call(&Loopback(port), Some(&t), &ListFactories)
        .await
        .unwrap();
    let code = ProductCode::new("CAM-X100").unwrap();
    o.pools
        .iter()
        .find(|p| p.product_code == code)
        .unwrap()
        .available
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built portal, the imprint binary and chromedriver: `cargo xtask test` runs it"]
async fn an_operator_and_an_auditor_run_the_line_from_the_console() {
    let setup = Setup::from_env("console").unwrap();
    let Setup {
        bin,
        driver,
        shots,
        work,
        port,
        url,
        ..
    } = &setup;
    let (port, url) = (*port, url.as_str());
    // Keys in a file: the station's test has the token (one demo's keys at a time).
    let _server = imprint_file_custody(bin, work, &setup.demo_args()).unwrap();
    wait_port(port, WAIT).await.unwrap();
    let b = Browser::start(driver).await.unwrap();

    // The admin's console: the demo's two factories, their quotas as bars, the pools.
    sign_in(&b, url, "admin", "demo-admin-pass").await;
    b.wait_for("document.getElementById('factory-acme-sz')", WAIT)
        .await
        .unwrap();
    wait_text(&b, "#factory-acme-sz", "CAM-X100: 0 of 1000 used").await;
    wait_text(&b, "#pools", "CAM-X100: 3000 entries in the pool").await;
    // The console survives a reload of the page, as the station does.
    b.goto(url).await.unwrap();
    b.wait_for("document.getElementById('factory-contoso-pl')", WAIT)
        .await
        .unwrap();

    // A new factory, its quota and its technician.
    b.fill("#factory-id", "delta-mx").await.unwrap();
    b.fill("#factory-name", "Delta Monterrey").await.unwrap();
    b.click("#add-factory button[type=submit]").await.unwrap();
    wait_text(&b, "#add-factory-said", "Factory delta-mx added.").await;
    b.wait_for("document.getElementById('factory-delta-mx')", WAIT)
        .await
        .unwrap();
    wait_text(&b, "#factory-delta-mx", "No quota yet").await;
    b.select("#quota-factory", "delta-mx").await.unwrap();
    b.select("#quota-product", "CAM-X100").await.unwrap();
    b.fill("#quota-limit", "abc").await.unwrap();
    b.click("#set-quota button[type=submit]").await.unwrap();
    wait_text(&b, "#set-quota-said", "a whole number").await;
    b.fill("#quota-limit", "11").await.unwrap();
    b.click("#set-quota button[type=submit]").await.unwrap();
    wait_text(&b, "#set-quota-said", "set to 11").await;
    wait_text(&b, "#factory-delta-mx", "CAM-X100: 0 of 11 used").await;
    b.screenshot(&shots.join("console-factories.png"))
        .await
        .unwrap();
    b.click("#nav-users").await.unwrap();
    b.fill("#user-name", "tech-dee").await.unwrap();
    b.fill("#user-password", "demo-tech-pass").await.unwrap();
    b.select("#user-role", "technician").await.unwrap();
    b.select("#user-factory", "delta-mx").await.unwrap();
    b.click("#add-user button[type=submit]").await.unwrap();
    wait_text(&b, "#add-user-said", "tech-dee added as technician").await;
    wait_text(&b, "#user-tech-dee", "technician of delta-mx").await;
    // A user disabled from the console cannot sign in until enabled again.
    b.click("#user-tech-ben button.toggle").await.unwrap();
    wait_text(&b, "#user-said", "tech-ben disabled; their sessions ended").await;
    wait_text(&b, "#user-tech-ben", "disabled").await;
    b.screenshot(&shots.join("console-users.png"))
        .await
        .unwrap();
    let refused = imprint_client::login(&Loopback(port), "tech-ben", "demo-tech-pass").await;
    assert!(
        matches!(&refused, Err(imprint_client::ServerError::Refused { message, .. }) if message.contains("disabled")),
        "{refused:?}"
    );
    b.click("#user-tech-ben button.toggle").await.unwrap();
    wait_text(&b, "#user-said", "tech-ben enabled").await;
    assert!(
        imprint_client::login(&Loopback(port), "tech-ben", "demo-tech-pass")
            .await
            .is_ok()
    );

    // A CSV file with one bad line: the line is shown, nothing is imported.
    let before = pool(port).await;
    b.click("#nav-entries").await.unwrap();
    let good = "apparatus_id,pass_phrase,key_id\nCSV-0000000001,console-pass-phrase-one,1\nCSV-0000000002,console-pass-phrase-two,1\n";
    let bad_file = work.join("entries-bad.csv");
    std::fs::write(
        &bad_file,
        format!("{good}CSV-0000000003,tooshort7,1\nCSV-0000000001,console-pass-phrase-dup,1\n"),
    )
    .unwrap();
    b.upload("#csv-file", &bad_file).await.unwrap();
    b.click("#import button[type=submit]").await.unwrap();
    wait_text(&b, "#import-said", "nothing was imported").await;
    let lines = b.text("#bad-lines").await.unwrap();
    assert!(
        lines.contains("4\t") && lines.contains("5\t"),
        "each bad line by its number: {lines}"
    );
    assert!(lines.contains("also on line 2"), "{lines}");
    assert!(
        !lines.contains("tooshort7"),
        "no pass phrase shown: {lines}"
    );
    b.screenshot(&shots.join("console-import.png"))
        .await
        .unwrap();
    assert_eq!(pool(port).await, before, "nothing imported");
    let fixed = work.join("entries.csv");
    std::fs::write(&fixed, good).unwrap();
    b.upload("#csv-file", &fixed).await.unwrap();
    b.click("#import button[type=submit]").await.unwrap();
    wait_text(&b, "#import-said", "2 entries imported").await;
    assert_eq!(pool(port).await, before + 2);

    // A guided key rotation: CAM-X100 to key 2 and back to key 1, with what it re-seals.
    b.click("#nav-products").await.unwrap();
    wait_text(&b, "#keys", "1, 2").await;
    b.select("#rotate-product", "CAM-X100").await.unwrap();
    b.select("#rotate-key", "1").await.unwrap();
    wait_text(&b, "#rotate-preview", "already on key 1").await;
    b.select("#rotate-key", "2").await.unwrap();
    wait_text(&b, "#rotate-preview", "CAM-X100 moves from key 1 to key 2").await;
    b.click("#rotate").await.unwrap();
    b.wait_for("document.getElementById('rotate-confirm')", WAIT)
        .await
        .unwrap();
    b.screenshot(&shots.join("console-rotation.png"))
        .await
        .unwrap();
    b.click("#rotate-confirm").await.unwrap();
    wait_text(&b, "#rotate-said", "CAM-X100 is now on key 2 (was 1)").await;
    b.select("#rotate-key", "1").await.unwrap();
    // The button is live once the page has read the product's new key.
    wait_text(&b, "#rotate-preview", "CAM-X100 moves from key 2 to key 1").await;
    b.click("#rotate").await.unwrap();
    b.wait_for("document.getElementById('rotate-confirm')", WAIT)
        .await
        .unwrap();
    b.click("#rotate-confirm").await.unwrap();
    wait_text(&b, "#rotate-said", "CAM-X100 is now on key 1 (was 2)").await;
    b.click("#signout").await.unwrap();
    b.wait_for("document.getElementById('user')", WAIT)
        .await
        .unwrap();

    // The new factory's technician provisions three simulated units.
    b.sign_in_as(url, "tech-dee", "delta-1", Some("CAM-X100"), WAIT)
        .await
        .unwrap();
    b.click("#fetch").await.unwrap();
    b.wait_for(
        "document.getElementById('pool').innerText.startsWith('10 ')",
        WAIT,
    )
    .await
    .unwrap();
    b.click("#training").await.unwrap();
    b.wait_for("document.getElementById('sim-demo')", WAIT)
        .await
        .unwrap();
    for _ in 0..3 {
        b.click("#sim-demo").await.unwrap();
    }
    b.wait_for(
        "document.querySelectorAll('.tile.ok, .done-row.ok').length === 3 && document.querySelectorAll('.tile.working').length === 0",
        WAIT,
    )
    .await
    .unwrap();
    b.sign_out(WAIT).await.unwrap();

    // The auditor: the new factory's installs at a glance, then in the log by station.
    sign_in(&b, url, "auditor", "demo-audit-pass").await;
    assert_eq!(
        b.js("return !!document.getElementById('nav-entries')")
            .await
            .unwrap(),
        serde_json::Value::Bool(false),
        "an auditor gets no admin pages"
    );
    wait_text(&b, "#factory-delta-mx", "3 units installed").await;
    wait_text(&b, "#factory-delta-mx", "CAM-X100: 10 of 11 used, 7 open").await;
    wait_text(&b, "#alerts", "delta-mx: quota for CAM-X100 nearly used").await;
    b.wait_for(
        "document.querySelectorAll('#chart-installs path').length >= 1",
        WAIT,
    )
    .await
    .unwrap();
    wait_text(&b, "#chart-installs", "delta-mx / delta-1").await;
    b.screenshot(&shots.join("console-overview.png"))
        .await
        .unwrap();
    b.click("#nav-audit").await.unwrap();
    b.wait_for("document.querySelectorAll('#audit tr').length > 1", WAIT)
        .await
        .unwrap();
    b.select("#audit-field", "station").await.unwrap();
    b.fill("#audit-term", "delta-1").await.unwrap();
    b.click("#audit-search button[type=submit]").await.unwrap();
    b.wait_for(
        // The search's page, not the one before it: every row from station delta-1.
        "(() => { const d = [...document.querySelectorAll('#audit td:nth-child(5)')]; const a = [...document.querySelectorAll('#audit td:nth-child(4)')]; return d.length > 0 && d.every(t => t.innerText.includes('\"station\":\"delta-1\"')) && a.filter(t => t.innerText === 'report').length === 3; })()",
        WAIT,
    )
    .await
    .unwrap();
    let found = b.text("#audit").await.unwrap();
    assert!(found.contains("tech-dee"), "{found}");
    assert!(
        !found.contains("acme-sz"),
        "only the search's station: {found}"
    );
    b.click("#verify").await.unwrap();
    wait_text(&b, "#verify-said", "Verified:").await;
    // The search's entries exported: its three reports and three locks.
    b.click("#audit-export").await.unwrap();
    wait_text(&b, "#audit-export-said", "6 entries exported.").await;
    b.screenshot(&shots.join("console-audit.png"))
        .await
        .unwrap();

    b.click("#nav-overview").await.unwrap();
    b.click("#export-installed").await.unwrap();
    wait_text(&b, "#export-said", "3 installed device(s) exported.").await;

    // The admin revokes one of the new factory's units; the export says so.
    let t = imprint_client::login(&Loopback(port), "auditor", "demo-audit-pass")
        .await
        .unwrap()
        .token;
    let page = imprint_client::call(
        &Loopback(port),
        Some(&t),
        &imprint_api::AuditQuery {
            station: Some("delta-1".into()),
            action: Some("report".into()),
            before: Some(u64::MAX),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let detail: serde_json::Value = serde_json::from_str(&page.entries[0].detail).unwrap();
    let unit = detail["apparatus_id"].as_str().unwrap().to_string();
    b.click("#signout").await.unwrap();
    b.wait_for("document.getElementById('user')", WAIT)
        .await
        .unwrap();
    sign_in(&b, url, "admin", "demo-admin-pass").await;
    b.fill("#revoke-id", &unit).await.unwrap();
    b.click("#revoke button[type=submit]").await.unwrap();
    b.click("#revoke-confirm").await.unwrap();
    wait_text(&b, "#revoke-said", &format!("{unit} revoked")).await;
    let csv = imprint_client::call_text(&Loopback(port), Some(&t), &imprint_api::ExportInstalled)
        .await
        .unwrap();
    let row = csv.lines().find(|l| l.starts_with(&unit)).unwrap();
    let revoked_at = row.split(',').nth(7).unwrap();
    assert!(!revoked_at.is_empty(), "{row}");

    // Nothing secret reached the page or its storage: not the imported pass phrases, not a
    // key, not a conversion value (the API gives the console none of them).
    let page = b
        .js("return document.documentElement.outerHTML + JSON.stringify(sessionStorage) + JSON.stringify(localStorage)")
        .await
        .unwrap();
    let page = page.as_str().unwrap();
    for secret in [
        "console-pass-phrase-one",
        "console-pass-phrase-two",
        "tooshort7",
    ] {
        assert!(!page.contains(secret), "{secret} reached the page");
    }
    b.close().await.unwrap();
}
