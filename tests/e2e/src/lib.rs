//! A small WebDriver client (the W3C protocol over HTTP/1.1 to a local chromedriver) and
//! helpers to run the real `imprint` binary. No browser download, no async runtime: the
//! Debian chromium and chromedriver that `cargo xtask test` installs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
pub fn wait_port(port: u16, within: Duration) -> Result<()> {
    let end = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > end {
            return Err(HarnessError(format!("nothing listens on port {port}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// One HTTP/1.1 request to loopback; returns status and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(err)?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).map_err(err)?;
    // Read the head, then exactly the body it announces: some servers (chromedriver) keep the
    // connection open despite `Connection: close`.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut buf).map_err(err)?;
        if n == 0 {
            return Err(HarnessError(
                "connection closed before the response head".into(),
            ));
        }
        raw.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    };
    let head = String::from_utf8_lossy(raw.get(..head_end).unwrap_or(&[])).to_string();
    let status = head
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HarnessError(format!("no HTTP status in {head:.80}")))?;
    let lower = head.to_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        let have = raw.len() - head_end;
        let done = match length {
            Some(n) => have >= n,
            None if chunked => raw.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    }
    let body = String::from_utf8_lossy(raw.get(head_end..).unwrap_or(&[])).to_string();
    let body = if chunked { unchunk(&body) } else { body };
    Ok((status, body))
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(rest.get(..n).unwrap_or(""));
        s = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// A running process that is killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `imprint` binary with `args` in `cwd`.
pub fn imprint(bin: &str, cwd: &std::path::Path, args: &[&str]) -> Result<Proc> {
    let child = Command::new(bin)
        .current_dir(cwd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| HarnessError(format!("cannot start {bin}: {e}")))?;
    Ok(Proc(child))
}

/// A WebDriver session on a local chromedriver.
pub struct Browser {
    port: u16,
    session: String,
    _driver: Proc,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub fn start(chromedriver: &str) -> Result<Browser> {
        let port = free_port()?;
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| HarnessError(format!("cannot start {chromedriver}: {e}")))?;
        let driver = Proc(driver);
        wait_port(port, Duration::from_secs(20))?;
        let profile = std::env::temp_dir().join(format!("imprint-e2e-profile-{port}"));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--window-size=1400,1300", format!("--user-data-dir={}", profile.display())
        ]}}}});
        let (status, body) = http(port, "POST", "/session", &[], Some(&caps.to_string()))?;
        let v: Value = serde_json::from_str(&body).map_err(err)?;
        let session = v
            .pointer("/value/sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| HarnessError(format!("no session ({status}): {body}")))?
            .to_string();
        Ok(Browser {
            port,
            session,
            _driver: driver,
        })
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        let p = format!("/session/{}{path}", self.session);
        let b = if body.is_null() {
            None
        } else {
            Some(body.to_string())
        };
        let (status, text) = http(self.port, method, &p, &[], b.as_deref())?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| HarnessError(format!("{e}: {text:.200}")))?;
        if status >= 400 {
            return Err(HarnessError(format!(
                "{method} {path}: {}",
                v.pointer("/value/message").unwrap_or(&Value::Null)
            )));
        }
        Ok(v.get("value").cloned().unwrap_or(Value::Null))
    }

    /// Opens a URL.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", json!({ "url": url })).map(|_| ())
    }

    /// Runs JavaScript in the page and returns its result.
    pub fn js(&self, script: &str) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    /// Runs an asynchronous script in the page: it gets a callback as its last argument and
    /// calls it with the result. Lets a test drive the page from inside, without polling
    /// it from outside (each WebDriver call is a task on the page's main thread too).
    pub fn js_async(&self, script: &str) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/async",
            json!({ "script": script, "args": [] }),
        )
    }

    fn find(&self, css: &str) -> Result<String> {
        let v = self.cmd(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        )?;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| HarnessError(format!("no element {css}")))
    }

    /// Clicks the first element matching `css`.
    pub fn click(&self, css: &str) -> Result<()> {
        let id = self.find(css)?;
        self.cmd("POST", &format!("/element/{id}/click"), json!({}))
            .map(|_| ())
    }

    /// Types into the first element matching `css` (after clearing it).
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let id = self.find(css)?;
        self.cmd("POST", &format!("/element/{id}/clear"), json!({}))?;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .map(|_| ())
    }

    /// Waits until `script` (a JS expression) is truthy.
    pub fn wait_for(&self, script: &str, within: Duration) -> Result<Value> {
        let end = Instant::now() + within;
        loop {
            let v = self.js(&format!("return !!({script});"))?;
            if v.as_bool() == Some(true)
                || (v.is_number() && v.as_f64() != Some(0.0))
                || v.as_str().is_some_and(|s| !s.is_empty())
            {
                return Ok(v);
            }
            if Instant::now() > end {
                let log = self
                    .js("return (document.getElementById('log')||{}).innerText || ''")
                    .unwrap_or_default();
                return Err(HarnessError(format!(
                    "timed out waiting for {script}; station log:\n{}",
                    log.as_str().unwrap_or("")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG screenshot.
    pub fn screenshot(&self, path: &std::path::Path) -> Result<()> {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", Value::Null)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(err)?;
        std::fs::write(path, png).map_err(err)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            &[],
            None,
        );
    }
}

impl Browser {
    /// Signs in on the portal at `url` as the demo technician, at station `station`.
    pub fn sign_in(&self, url: &str, station: &str, within: Duration) -> Result<()> {
        self.goto(url)?;
        self.wait_for("document.getElementById('user')", within)?;
        self.fill("#user", "tech-ana")?;
        self.fill("#pass", "demo-tech-pass")?;
        self.fill("#station", station)?;
        self.click("#signin")?;
        self.wait_for("document.getElementById('fetch')", within)
            .map(|_| ())
    }

    /// The station's own cycle times (ms, sorted) of the units that ended well, from the
    /// outcomes it saved in localStorage.
    pub fn cycle_times(&self) -> Result<Vec<u64>> {
        let text = self.js("return localStorage.getItem('imprint.outcomes.v1') || '[]'")?;
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
