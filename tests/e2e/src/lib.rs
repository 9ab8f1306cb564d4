//! Helpers for the end-to-end tests: run the real `imprint` binary, call it over HTTP
//! (hyper-util's client), and drive headless Chromium through the Debian chromedriver with
//! `fantoccini` (WebDriver over plain HTTP to loopback: no TLS, no browser download).
//! Everything is async on tokio; the tests run on a multi-threaded runtime, which
//! [`Browser`]'s `Drop` needs to end the browser session.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use imprint_portal::client::Transport;
use serde_json::{Value, json};

/// A failure in the harness itself (not in the system under test).
#[derive(Debug)]
pub struct HarnessError(pub String);

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

/// Result of a harness step.
pub type Result<T> = std::result::Result<T, HarnessError>;

fn err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError(e.to_string())
}

/// A free port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(err)?
        .local_addr()
        .map_err(err)?
        .port())
}

/// Waits until something listens on `port`.
pub async fn wait_port(port: u16, within: Duration) -> Result<()> {
    let end = Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > end {
            return Err(HarnessError(format!("nothing listens on port {port}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// How long one HTTP request may take, answer included.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request to loopback; returns status and body.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(u16, String)> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    let typed = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !typed && body.is_some_and(|b| !b.is_empty()) {
        req = req.header("Content-Type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .map_err(err)?;
    let exchange = async {
        let res = client.request(req).await.map_err(err)?;
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.map_err(err)?.to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| HarnessError(format!("{method} {path}: no answer in {HTTP_TIMEOUT:?}")))?
}

/// The server on a loopback port as a [`Transport`] of the portal's own client
/// (`imprint_portal::client`), so the test reads the server's answers through the contract's
/// types, with the code the page runs.
#[derive(Clone, Copy, Debug)]
pub struct Loopback(pub u16);

impl Transport for Loopback {
    async fn send(
        &self,
        method: imprint_api::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<imprint_client::Payload>,
    ) -> std::result::Result<(u16, String), String> {
        let mut headers = Vec::new();
        if let Some(b) = bearer {
            headers.push(("Authorization", b));
        }
        if let Some(p) = &body {
            headers.push(("Content-Type", p.content_type()));
        }
        http(
            self.0,
            method.as_str(),
            path,
            &headers,
            body.as_ref().map(|p| p.text.as_str()),
        )
        .await
        .map_err(|e| e.0)
    }
}

/// How long a test waits for the page or the server before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// What an end-to-end test runs against, from what `cargo xtask test` sets: the `imprint`
/// binary (`IMPRINT_BIN`), the built portal (`IMPRINT_PORTAL`), chromedriver (`CHROMEDRIVER`,
/// else on the PATH); a fresh work folder, a free port, and `docs/screenshots/`.
pub struct Setup {
    /// The `imprint` binary.
    pub bin: String,
    /// The built portal's folder.
    pub portal: String,
    /// chromedriver.
    pub driver: String,
    /// Where the screenshots go.
    pub shots: std::path::PathBuf,
    /// A fresh folder for the server's data and the test's files.
    pub work: std::path::PathBuf,
    /// The server's port on 127.0.0.1.
    pub port: u16,
    /// `127.0.0.1:PORT`.
    pub listen: String,
    /// The portal's address.
    pub url: String,
}

impl Setup {
    /// The set-up of the test named `tag` (its work folder is named after it).
    pub fn from_env(tag: &str) -> Result<Setup> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                HarnessError(format!(
                    "{name} is not set: run this through `cargo xtask test`"
                ))
            })
        };
        let shots =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&shots).map_err(err)?;
        let work = std::env::temp_dir().join(format!("imprint-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(err)?;
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        Ok(Setup {
            bin: var("IMPRINT_BIN")?,
            portal: var("IMPRINT_PORTAL")?,
            driver: std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()),
            shots,
            work,
            port,
            url: format!("http://{listen}/"),
            listen,
        })
    }

    /// `imprint demo` on this set-up's port, serving its portal.
    pub fn demo_args(&self) -> [&str; 5] {
        ["demo", "--listen", &self.listen, "--portal", &self.portal]
    }
}

/// A running process that is killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `imprint` binary with `args` in `cwd`, with the keys in the token `cargo xtask
/// test` made for the end-to-end test when it gave one (`IMPRINT_PKCS11_*`).
pub fn imprint(bin: &str, cwd: &std::path::Path, args: &[&str]) -> Result<Proc> {
    spawn(Command::new(bin).current_dir(cwd).args(args), bin)
}

/// [`imprint`] with the keys in a `kek.key` of its own, whatever the environment says: for a
/// test that runs beside the one using the token (a token holds one demo's keys at a time).
pub fn imprint_file_custody(bin: &str, cwd: &std::path::Path, args: &[&str]) -> Result<Proc> {
    let mut cmd = Command::new(bin);
    for var in [
        "IMPRINT_PKCS11_MODULE",
        "IMPRINT_PKCS11_TOKEN",
        "IMPRINT_PKCS11_PIN",
        "IMPRINT_PKCS11_PIN_FILE",
    ] {
        cmd.env_remove(var);
    }
    spawn(cmd.current_dir(cwd).args(args), bin)
}

fn spawn(cmd: &mut Command, bin: &str) -> Result<Proc> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| HarnessError(format!("cannot start {bin}: {e}")))?;
    Ok(Proc(child))
}

/// A WebDriver session (fantoccini) on a chromedriver of its own.
pub struct Browser {
    client: Client,
    closed: bool,
    _driver: Proc,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start(chromedriver: &str) -> Result<Browser> {
        let port = free_port()?;
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| HarnessError(format!("cannot start {chromedriver}: {e}")))?;
        let driver = Proc(driver);
        wait_port(port, Duration::from_secs(20)).await?;
        let profile = std::env::temp_dir().join(format!("imprint-e2e-profile-{port}"));
        let caps = json!({"browserName": "chrome", "goog:chromeOptions": {"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--window-size=1400,1300", format!("--user-data-dir={}", profile.display())
        ]}});
        let Value::Object(caps) = caps else {
            return Err(HarnessError("capabilities are not an object".into()));
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| HarnessError(format!("no WebDriver session: {e}")))?;
        Ok(Browser {
            client,
            closed: false,
            _driver: driver,
        })
    }

    /// Opens a URL.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .map_err(|e| HarnessError(format!("goto {url}: {e}")))
    }

    /// Runs JavaScript in the page and returns its result.
    pub async fn js(&self, script: &str) -> Result<Value> {
        self.client
            .execute(script, Vec::new())
            .await
            .map_err(|e| HarnessError(format!("execute: {e}")))
    }

    /// Runs an asynchronous script in the page: it gets a callback as its last argument and
    /// calls it with the result. Lets a test drive the page from inside, without polling
    /// it from outside (each WebDriver call is a task on the page's main thread too).
    pub async fn js_async(&self, script: &str) -> Result<Value> {
        self.client
            .execute_async(script, Vec::new())
            .await
            .map_err(|e| HarnessError(format!("execute async: {e}")))
    }

    async fn find(&self, css: &str) -> Result<fantoccini::elements::Element> {
        self.client
            .find(Locator::Css(css))
            .await
            .map_err(|e| HarnessError(format!("no element {css}: {e}")))
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) -> Result<()> {
        let e = self.find(css).await?;
        // To the middle of the window first, as a person scrolls to what they click: WebDriver
        // scrolls it to the top edge, under the station's pinned header.
        self.client
            .execute(
                "arguments[0].scrollIntoView({block: 'center'})",
                vec![serde_json::to_value(&e).map_err(err)?],
            )
            .await
            .map_err(|e| HarnessError(format!("scroll to {css}: {e}")))?;
        e.click()
            .await
            .map_err(|e| HarnessError(format!("click {css}: {e}")))
    }

    /// Types into the first element matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.find(css).await?;
        e.clear()
            .await
            .map_err(|e| HarnessError(format!("clear {css}: {e}")))?;
        e.send_keys(text)
            .await
            .map_err(|e| HarnessError(format!("type into {css}: {e}")))
    }

    /// Puts the file at `path` into the file input matching `css`, as a person picking it.
    pub async fn upload(&self, css: &str, path: &std::path::Path) -> Result<()> {
        let e = self.find(css).await?;
        e.send_keys(&path.to_string_lossy())
            .await
            .map_err(|e| HarnessError(format!("upload into {css}: {e}")))
    }

    /// Picks `value` in the select matching `css` (and tells the page, as a person's pick does).
    pub async fn select(&self, css: &str, value: &str) -> Result<()> {
        let e = self.find(css).await?;
        let picked = self
            .client
            .execute(
                "const s = arguments[0]; s.value = arguments[1]; s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === arguments[1];",
                vec![serde_json::to_value(&e).map_err(err)?, Value::from(value)],
            )
            .await
            .map_err(|e| HarnessError(format!("select {value} in {css}: {e}")))?;
        if picked != Value::Bool(true) {
            return Err(HarnessError(format!("{css} offers no {value}")));
        }
        Ok(())
    }

    /// The text of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> Result<String> {
        let v = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                vec![Value::from(css)],
            )
            .await
            .map_err(|e| HarnessError(format!("text of {css}: {e}")))?;
        Ok(v.as_str().unwrap_or("").to_string())
    }

    /// Waits until `script` (a JS expression) is truthy.
    pub async fn wait_for(&self, script: &str, within: Duration) -> Result<Value> {
        let end = Instant::now() + within;
        loop {
            let v = self.js(&format!("return !!({script});")).await?;
            if v.as_bool() == Some(true)
                || (v.is_number() && v.as_f64() != Some(0.0))
                || v.as_str().is_some_and(|s| !s.is_empty())
            {
                return Ok(v);
            }
            if Instant::now() > end {
                let log = self
                    .js("return (document.getElementById('log')||{}).innerText || ''")
                    .await
                    .unwrap_or_default();
                return Err(HarnessError(format!(
                    "timed out waiting for {script}; station log:\n{}",
                    log.as_str().unwrap_or("")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG screenshot.
    pub async fn screenshot(&self, path: &std::path::Path) -> Result<()> {
        let png = self
            .client
            .screenshot()
            .await
            .map_err(|e| HarnessError(format!("screenshot: {e}")))?;
        std::fs::write(path, png).map_err(err)
    }

    /// Saves a PNG of the first element matching `css` alone.
    pub async fn screenshot_of(&self, css: &str, path: &std::path::Path) -> Result<()> {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .map_err(|e| HarnessError(format!("{css}: {e}")))?;
        let png = e
            .screenshot()
            .await
            .map_err(|e| HarnessError(format!("screenshot of {css}: {e}")))?;
        std::fs::write(path, png).map_err(err)
    }

    /// Ends the WebDriver session (Chromium quits); chromedriver is stopped when `self` drops.
    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        self.client
            .clone()
            .close()
            .await
            .map_err(|e| HarnessError(format!("closing the session: {e}")))
    }
}

impl Drop for Browser {
    /// A test that failed before [`Browser::close`] still ends its session, so that no
    /// Chromium outlives its chromedriver: on a multi-threaded runtime this blocks on the
    /// close while fantoccini's session task runs on a worker.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if rt.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        let client = self.client.clone();
        tokio::task::block_in_place(|| {
            let _ = rt.block_on(tokio::time::timeout(
                Duration::from_secs(10),
                client.close(),
            ));
        });
    }
}

impl Browser {
    /// Signs in on the portal at `url` as the demo technician, at station `station`.
    pub async fn sign_in(&self, url: &str, station: &str, within: Duration) -> Result<()> {
        self.sign_in_for(url, station, None, within).await
    }

    /// [`Browser::sign_in`] for the line of `product` (else the product the form remembers).
    pub async fn sign_in_for(
        &self,
        url: &str,
        station: &str,
        product: Option<&str>,
        within: Duration,
    ) -> Result<()> {
        self.sign_in_as(url, "tech-ana", station, product, within)
            .await
    }

    /// Signs in as the demo technician `user` (password `demo-tech-pass`) at `station`, for
    /// `product` (else the product the form remembers). A session the tab kept is signed out
    /// first, keeping its factory's records on the station.
    pub async fn sign_in_as(
        &self,
        url: &str,
        user: &str,
        station: &str,
        product: Option<&str>,
        within: Duration,
    ) -> Result<()> {
        self.goto(url).await?;
        self.wait_for(
            "document.getElementById('user') || document.getElementById('sign-out')",
            within,
        )
        .await?;
        if self
            .js("return !!document.getElementById('sign-out')")
            .await?
            == Value::Bool(true)
        {
            self.sign_out(within).await?;
        }
        self.fill("#user", user).await?;
        self.fill("#pass", "demo-tech-pass").await?;
        self.fill("#station", station).await?;
        if let Some(p) = product {
            self.fill("#product", p).await?;
        }
        self.click("#signin").await?;
        self.wait_for("document.getElementById('fetch')", within)
            .await
            .map(|_| ())
    }

    /// Signs out of the station; when it says what becomes of units mid-way and unused
    /// records, keeps them on the station for the factory.
    pub async fn sign_out(&self, within: Duration) -> Result<()> {
        self.click("#sign-out").await?;
        self.wait_for(
            "document.getElementById('user') || document.getElementById('sign-out-keep')",
            within,
        )
        .await?;
        if self
            .js("return !!document.getElementById('sign-out-keep')")
            .await?
            == Value::Bool(true)
        {
            self.click("#sign-out-keep").await?;
        }
        self.wait_for("document.getElementById('user')", within)
            .await
            .map(|_| ())
    }

    /// The station's own cycle times (ms, sorted) of the units that ended well, from the
    /// outcomes it saved in localStorage.
    pub async fn cycle_times(&self) -> Result<Vec<u64>> {
        let text = self
            .js("return localStorage.getItem('imprint.outcomes.v1') || '[]'")
            .await?;
        let v: Value = serde_json::from_str(text.as_str().unwrap_or("[]")).map_err(err)?;
        let mut t: Vec<u64> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|o| o.get("ok") == Some(&Value::Bool(true)))
                    .filter_map(|o| o.get("duration_ms").and_then(Value::as_u64))
                    .collect()
            })
            .unwrap_or_default();
        t.sort_unstable();
        Ok(t)
    }
}

/// The `q` quantile of sorted values (nearest rank); 0 for none.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(0)
}
