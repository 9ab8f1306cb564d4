//! A throwaway PostgreSQL 15 cluster for the server's tests: installed when missing (Debian's
//! `postgresql-15`), created fresh under `target/postgres/<xtask's pid>`, started on a free port
//! of 127.0.0.1 and stopped when the [`Cluster`] is dropped.
//!
//! `initdb`, `pg_ctl` and `postgres` refuse to run as root: as root they run as the `postgres`
//! user the package creates (`runuser -u postgres --`), on a folder that user owns.
//!
//! Drop does not run when xtask is killed (Ctrl-C kills it, and `pg_ctl` detaches the server
//! from the terminal, so the server would outlive it). A guard process does the stop then: it
//! ignores SIGINT, reads its stdin (a pipe only xtask holds) to the end, which comes when xtask
//! exits however it exits, then runs `pg_ctl stop`.

use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::tools::{is_root, output, which};
use crate::{Failure, Result, root, sh};

/// The Debian package that brings the server.
const PACKAGE: &str = "postgresql-15";
/// Where that package puts its binaries.
const DEBIAN_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The user the server runs as when xtask runs as root (the package creates it).
const RUN_AS: &str = "postgres";
/// The superuser initdb creates, with trust authentication.
const SUPERUSER: &str = "imprint";
/// A Unix socket's path must fit `sun_path` (108 bytes, with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The folder holding PostgreSQL's binaries (`initdb`, `pg_ctl`, `postgres`, `psql`): the one
/// `IMPRINT_PG_BIN` names, else Debian's, else `pg_config --bindir`'s. When none is there it
/// installs `postgresql-15` with apt as root, or else says what to install.
pub(crate) fn ensure_postgres() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("IMPRINT_PG_BIN").map(PathBuf::from) {
        if !bin.join("initdb").is_file() {
            return Err(Failure(format!(
                "IMPRINT_PG_BIN={} has no initdb: point it at PostgreSQL's bin folder",
                bin.display()
            )));
        }
        return Ok(found(bin));
    }
    let find = || {
        let debian = PathBuf::from(DEBIAN_BIN);
        if debian.join("initdb").is_file() {
            return Some(debian);
        }
        output("pg_config", &["--bindir"])
            .map(|d| PathBuf::from(d.trim()))
            .filter(|d| d.join("initdb").is_file())
    };
    if let Some(bin) = find() {
        return Ok(found(bin));
    }
    if crate::tools::apt_install(&[PACKAGE])?
        && let Some(bin) = find()
    {
        return Ok(found(bin));
    }
    Err(Failure(format!(
        "the server's PostgreSQL tests need PostgreSQL 15: on Debian/Ubuntu `sudo apt-get install --no-install-recommends {PACKAGE}`, elsewhere install PostgreSQL 15 and set IMPRINT_PG_BIN to its bin folder (the one holding initdb)"
    )))
}

/// Says which server was found, and returns its folder.
fn found(bin: PathBuf) -> PathBuf {
    let version = output(&bin.join("postgres").to_string_lossy(), &["--version"])
        .unwrap_or_else(|| "postgres (version unknown)".into());
    eprintln!("{} in {}", version.trim(), bin.display());
    bin
}

/// A running PostgreSQL cluster of its own, stopped (`pg_ctl stop -m fast`) on drop. Its data
/// folder (and its log, `log` in it) stays until the next start sweeps it, to be read after a
/// failed run.
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `postgres` when xtask runs as root, so initdb and pg_ctl run as that user.
    run_as: Option<&'static str>,
    /// Stops the server if xtask dies without dropping us (see the module's doc).
    guard: Option<Child>,
    /// Whether `pg_ctl start` was run (so drop knows to stop).
    started: bool,
}

impl Cluster {
    /// Creates a fresh cluster in `target/postgres/<pid>` with `bin`'s initdb (superuser
    /// `imprint`, trust authentication, UTF8) and starts it on a free port of 127.0.0.1, with
    /// its Unix socket in the data folder too.
    pub(crate) fn start(bin: &Path) -> Result<Cluster> {
        let run_as = is_root().then_some(RUN_AS);
        if run_as.is_some() && which("runuser").is_none() {
            return Err(Failure(
                "as root, initdb and pg_ctl run as the `postgres` user through `runuser` (util-linux), which is not here: install it, or run xtask as an ordinary user".into(),
            ));
        }
        let base = root().join("target/postgres");
        std::fs::create_dir_all(&base)
            .map_err(|e| Failure(format!("cannot create {}: {e}", base.display())))?;
        sweep(&base, bin, run_as);
        let dir = base.join(std::process::id().to_string());
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Failure(format!("cannot wipe {}: {e}", dir.display())))?;
        }
        std::fs::create_dir(&dir)
            .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
        if let Some(user) = run_as {
            hand_over(&dir, user)?;
        }
        if dir.join(".s.PGSQL.65535.lock").as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Failure(format!(
                "the server's Unix socket would live in {}, whose path is too long for a socket (over {MAX_SOCKET_PATH} bytes): move the repository to a shorter path",
                dir.display()
            )));
        }
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            dir,
            port: free_port()?,
            run_as,
            guard: None,
            started: false,
        };
        sh(cluster
            .tool("initdb")
            .arg("-D")
            .arg(&cluster.dir)
            .args(["-A", "trust", "-U", SUPERUSER, "--no-sync", "-E", "UTF8"])
            // The caller's locale may not exist here; C sorts by bytes, the same everywhere.
            .arg("--locale=C"))?;
        // The same settings as the command line's, so a test that stops the server
        // (`pg_ctl stop -m immediate`) restarts it as it was with a plain
        // `pg_ctl -D DIR -l DIR/log start`.
        let settings = cluster.settings();
        let conf = cluster.dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .map_err(|e| Failure(format!("cannot read {}: {e}", conf.display())))?;
        text.push_str("\n# Written by cargo xtask (the same as pg_ctl's -o).\n");
        for (name, value) in &settings {
            text.push_str(&format!("{name} = '{value}'\n"));
        }
        std::fs::write(&conf, text)
            .map_err(|e| Failure(format!("cannot write {}: {e}", conf.display())))?;
        cluster.guard = Some(cluster.spawn_guard()?);
        let options: Vec<String> = settings
            .iter()
            .map(|(name, value)| format!("-c {name}={}", quote(value)))
            .collect();
        let log = cluster.log();
        cluster.started = true;
        let start = sh(cluster
            .tool("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&cluster.dir)
            .arg("-o")
            .arg(options.join(" "))
            .arg("-l")
            .arg(&log)
            .arg("start"));
        if let Err(Failure(m)) = start {
            return Err(Failure(format!(
                "PostgreSQL did not start ({m}); the end of {}:\n{}",
                log.display(),
                tail(&log, 4000)
            )));
        }
        eprintln!("PostgreSQL is up: {}", cluster.url());
        Ok(cluster)
    }

    /// `postgres://imprint@127.0.0.1:PORT/postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The data folder (`-D`); the server's log is `log` in it.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of `initdb`, `pg_ctl`, `postgres` and `psql`.
    pub(crate) fn bin(&self) -> &Path {
        &self.bin
    }

    /// What the tests read: `IMPRINT_TEST_POSTGRES` (the URL), `IMPRINT_TEST_PG_BIN`,
    /// `IMPRINT_TEST_PG_DATA` and `IMPRINT_TEST_PG_RUNAS` (`postgres` when pg_ctl must run as
    /// that user, `runuser -u postgres -- pg_ctl ...`; empty when it runs as the test's user).
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![
            ("IMPRINT_TEST_POSTGRES".into(), self.url()),
            (
                "IMPRINT_TEST_PG_BIN".into(),
                self.bin().to_string_lossy().into_owned(),
            ),
            (
                "IMPRINT_TEST_PG_DATA".into(),
                self.data_dir().to_string_lossy().into_owned(),
            ),
            (
                "IMPRINT_TEST_PG_RUNAS".into(),
                self.run_as.unwrap_or_default().into(),
            ),
        ]
    }

    fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The server's settings, given both on pg_ctl's command line and in postgresql.conf.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("port", self.port.to_string()),
            (
                "unix_socket_directories",
                self.dir.to_string_lossy().into_owned(),
            ),
            ("listen_addresses", "127.0.0.1".into()),
            ("fsync", "on".into()),
            ("max_connections", "300".into()),
        ]
    }

    /// One of PostgreSQL's programs, as the user that may run it, from the cluster's parent
    /// folder (which that user can enter).
    fn tool(&self, name: &str) -> Command {
        tool(
            &self.bin,
            name,
            self.run_as,
            self.dir.parent().unwrap_or(&self.dir),
        )
    }

    /// The guard: ignores Ctrl-C, waits for the end of its stdin, then stops the server.
    fn spawn_guard(&self) -> Result<Child> {
        let stop = self.tool("pg_ctl");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(
                "trap '' INT TERM HUP; cat >/dev/null; \
                 \"$@\" >/dev/null 2>&1 && echo \"xtask: stopped PostgreSQL in $DIR\" >&2; :",
            )
            .arg("xtask-postgres-guard")
            .arg(stop.get_program())
            .args(stop.get_args())
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "stop"])
            .env("DIR", &self.dir)
            .current_dir(self.dir.parent().unwrap_or(&self.dir))
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        cmd.spawn()
            .map_err(|e| Failure(format!("cannot start the guard that stops PostgreSQL: {e}")))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let _ = sh(self
                .tool("pg_ctl")
                .arg("-D")
                .arg(&self.dir)
                .args(["-m", "fast", "stop"]));
        }
        if let Some(mut guard) = self.guard.take() {
            // Its stdin closes: it tries a stop of its own, which finds nothing, and exits.
            drop(guard.stdin.take());
            let _ = guard.wait();
        }
    }
}

/// `bin/name`, through `runuser -u USER --` when `run_as` names one, in `dir`.
fn tool(bin: &Path, name: &str, run_as: Option<&str>, dir: &Path) -> Command {
    let program = bin.join(name);
    let mut cmd = match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    // Their chatter goes with xtask's (stderr), leaving stdout to what `serve` prints.
    cmd.current_dir(dir).stdout(std::io::stderr());
    cmd
}

/// Gives `dir` to `user` and checks that the user can reach it: every folder above it must
/// let others through (`o+x`), as `target/` normally does.
fn hand_over(dir: &Path, user: &str) -> Result {
    let id = |flag: &str| {
        output("id", &[flag, user])
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or_else(|| {
                Failure(format!(
                    "as root, initdb runs as the `{user}` user, which {PACKAGE} creates; there is none: create it, or run xtask as an ordinary user"
                ))
            })
    };
    let (uid, gid) = (id("-u")?, id("-g")?);
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(|e| Failure(format!("cannot give {} to {user}: {e}", dir.display())))?;
    let reachable = Command::new("runuser")
        .args(["-u", user, "--", "test", "-w"])
        .arg(dir)
        .arg("-a")
        .arg("-x")
        .arg(dir)
        .current_dir("/")
        .status()
        .is_ok_and(|s| s.success());
    if reachable {
        return Ok(());
    }
    let closed = dir
        .ancestors()
        .skip(1)
        .find(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0));
    Err(Failure(match closed {
        Some(a) => format!(
            "the `{user}` user cannot reach {}: {} does not let others through (its mode lacks o+x); `chmod o+x {}`, or run xtask as an ordinary user",
            dir.display(),
            a.display(),
            a.display()
        ),
        None => format!("the `{user}` user cannot write to {}", dir.display()),
    }))
}

/// Removes the clusters earlier runs left in `base`: those whose xtask (the folder's name) is
/// gone, stopping any server still running there first. Only where /proc tells live processes.
fn sweep(base: &Path, bin: &Path, run_as: Option<&str>) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let dir = entry.path();
        if dir.join("postmaster.pid").exists() {
            let _ = tool(bin, "pg_ctl", run_as, base)
                .arg("-D")
                .arg(&dir)
                .args(["-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A port of 127.0.0.1 free a moment ago.
fn free_port() -> Result<u16> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure(format!("cannot find a free port on 127.0.0.1: {e}")))
}

/// A value for the shell that runs pg_ctl's `-o` (single-quoted).
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The last `bytes` of a file, or why it could not be read.
fn tail(path: &Path, bytes: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(bytes)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("(cannot read it: {e})"))
}

/// `cargo xtask postgres`: a cluster for running the PostgreSQL tests by hand, until Ctrl-C
/// or the end of stdin.
pub(crate) fn serve() -> Result {
    let bin = ensure_postgres()?;
    let cluster = Cluster::start(&bin)?;
    println!("{}", cluster.url());
    for (name, value) in cluster.env() {
        println!("export {name}={}", quote(&value));
    }
    println!("export IMPRINT_TEST_DATABASE=postgres");
    eprintln!(
        "\nPaste the lines above into a shell, then for instance `cargo test -p imprint-server --test it`.\nThe server's log: {}. Ctrl-C (or Ctrl-D) stops it.",
        cluster.data_dir().join("log").display()
    );
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    Ok(())
}
