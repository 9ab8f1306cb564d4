//! The audit log page: a search (one field and a term) turned into `GET /audit`'s query, and
//! paging newest first by sequence number, so that a page of a log of any length is one
//! indexed read on the server.

use imprint_api::{AuditEntry, AuditPage, AuditQuery};

/// Entries per page.
pub const PAGE: u64 = 50;

/// Entries an export reads per request (the most `GET /audit` gives).
pub const EXPORT_PAGE: u64 = 1000;

/// The most entries one export holds; a search that finds more is exported newest first up to
/// this many, and the page says so.
pub const EXPORT_MAX: usize = 100_000;

/// What the search term is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Every entry (the term is ignored).
    All,
    /// A unit: its apparatus ID or its product serial.
    Unit,
    /// The actor: a technician's or an operator's user name, `device`, `cli`, `system`.
    Actor,
    /// The station that sent a report, a refused report or a lock.
    Station,
    /// The action (`report`, `report.refused`, `issue`, `lock`, ...).
    Action,
}

impl Field {
    /// Every field, in the order the page offers them.
    pub const ALL: [Field; 5] = [
        Field::All,
        Field::Unit,
        Field::Actor,
        Field::Station,
        Field::Action,
    ];

    /// Its value in the page's select.
    pub fn key(self) -> &'static str {
        match self {
            Field::All => "all",
            Field::Unit => "unit",
            Field::Actor => "actor",
            Field::Station => "station",
            Field::Action => "action",
        }
    }

    /// What the page calls it.
    pub fn label(self) -> &'static str {
        match self {
            Field::All => "Everything",
            Field::Unit => "Unit (apparatus ID or product serial)",
            Field::Actor => "Technician or user",
            Field::Station => "Station",
            Field::Action => "Action",
        }
    }

    /// The field of a select's value.
    pub fn of_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }
}

/// A search: a field and the term to match it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// What the term is matched against.
    pub field: Field,
    /// The term (surrounding spaces ignored).
    pub term: String,
}

impl Search {
    /// The query for the page below sequence number `before`, or why the search cannot run.
    pub fn query(&self, before: u64) -> Result<AuditQuery, String> {
        self.query_of(before, PAGE)
    }

    /// The query for `limit` entries below sequence number `before` (an export reads the
    /// search's entries [`EXPORT_PAGE`] at a time).
    pub fn query_of(&self, before: u64, limit: u64) -> Result<AuditQuery, String> {
        let term = self.term.trim().to_string();
        let mut q = AuditQuery {
            before: Some(before),
            limit: Some(limit),
            ..AuditQuery::default()
        };
        if self.field == Field::All {
            return Ok(q);
        }
        if term.is_empty() {
            return Err(format!("Type what to look for: {}.", self.field.label()));
        }
        match self.field {
            Field::All => {}
            Field::Unit => q.unit = Some(term),
            Field::Actor => q.actor = Some(term),
            Field::Station => q.station = Some(term),
            Field::Action => q.action = Some(term),
        }
        Ok(q)
    }
}

/// Where the reader is in the log: the pages above the current one, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pager {
    /// The `before` of each page read so far; the last is the current page's.
    stack: Vec<u64>,
}

impl Default for Pager {
    fn default() -> Self {
        Pager::new()
    }
}

impl Pager {
    /// At the newest page.
    pub fn new() -> Pager {
        Pager {
            stack: vec![u64::MAX],
        }
    }

    /// The current page's `before`.
    pub fn before(&self) -> u64 {
        self.stack.last().copied().unwrap_or(u64::MAX)
    }

    /// Whether this is the newest page.
    pub fn at_newest(&self) -> bool {
        self.stack.len() <= 1
    }

    /// Whether `page` (the current one) has older entries after it: it is full.
    pub fn has_older(page: &AuditPage) -> bool {
        page.entries.len() as u64 >= PAGE
    }

    /// Goes to the page older than `page`, if there is one.
    pub fn older(&mut self, page: &AuditPage) -> bool {
        match page.entries.last() {
            Some(last) if Pager::has_older(page) => {
                self.stack.push(last.seq);
                true
            }
            _ => false,
        }
    }

    /// Goes back to the newer page, if not at the newest.
    pub fn newer(&mut self) -> bool {
        if self.at_newest() {
            return false;
        }
        self.stack.pop();
        true
    }

    /// Which page this is, from 1 (newest).
    pub fn number(&self) -> usize {
        self.stack.len()
    }
}

/// An entry's time as the page shows it: the server's decimal Unix ms, or the text as stored
/// when it is not a number (the page never hides what the log holds).
pub fn at_ms(e: &AuditEntry) -> Option<u64> {
    e.at.parse().ok()
}

/// The entries as CSV (seq, at, actor, action, detail, hash), for an auditor's export of
/// what the search found. Cells are quoted where they need it, and one that a spreadsheet
/// would take for a formula starts with `'`; the detail never holds a secret (the server
/// writes none into the log).
pub fn to_csv(entries: &[AuditEntry]) -> String {
    fn cell(s: &str) -> String {
        // A spreadsheet runs a cell that starts like a formula: such a cell starts with '.
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    }
    let mut out = String::from("seq,at_ms,actor,action,detail,hash\n");
    for e in entries {
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            e.seq,
            cell(&e.at),
            cell(&e.actor),
            cell(&e.action),
            cell(&e.detail),
            cell(&e.hash)
        ));
    }
    out
}
