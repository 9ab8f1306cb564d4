//! Every failure mapped to what the technician sees: a title, what happened, and the fix.
//!
//! Why one place: the browser flashers' most common complaint is an error with no explanation
//! (a hang on Firefox, "NetworkError" on a permission problem, "transfer error" that is really
//! an unplug). Each cause here has its fix on screen.

use imprint_api::ErrorCode as ServerCode;
use imprint_core::{ErrorCode, KeyId, Reply};

use serde::{Deserialize, Serialize};

use crate::error::{LinkError, ServerError};

/// How bad it is, for the colour of the tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Fix it and carry on (replug, retry).
    Retry,
    /// Set the unit aside.
    SetAside,
    /// The station itself needs attention (browser, permissions, server).
    Station,
}

/// What kind of trouble a unit met, for the line's figures: every recovery is counted by its
/// kind, so that a line engineer sees fixture and cable trouble (many pulled cables) apart from
/// supply trouble (no record) or the network (server down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The cable was pulled or the unit lost power (WebUSB cannot tell them apart).
    Unplugged,
    /// The unit did not answer in time.
    NoAnswer,
    /// The unit answered with bytes that are not the protocol.
    Garbage,
    /// No record for the unit: none on the station, or the server needed for a chip-bound one.
    NoRecord,
    /// The server could not be reached.
    ServerDown,
    /// The page was reloaded, or a technician signed in again, with the unit mid-way: not a
    /// diagnosis, counted when a unit resumes from the journal with no trouble seen before.
    Reload,
    /// Anything else: the browser, a refusal of the server, the unit's own error codes.
    Other,
}

impl Cause {
    /// Every kind, in the order the figures list them.
    pub const ALL: [Cause; 7] = [
        Cause::Unplugged,
        Cause::NoAnswer,
        Cause::Garbage,
        Cause::NoRecord,
        Cause::ServerDown,
        Cause::Reload,
        Cause::Other,
    ];

    /// How the figures name it.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Unplugged => "cable pulled or power lost",
            Cause::NoAnswer => "no answer",
            Cause::Garbage => "garbage answer",
            Cause::NoRecord => "no record",
            Cause::ServerDown => "server down",
            Cause::Reload => "page reloaded or signed in again",
            Cause::Other => "other",
        }
    }
}

/// A failure as the technician sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Short title on the tile.
    pub title: String,
    /// What happened.
    pub detail: String,
    /// What to do.
    pub fix: String,
    /// How bad.
    pub severity: Severity,
    /// What kind of trouble, for the figures.
    pub cause: Cause,
}

fn d(title: &str, detail: impl Into<String>, fix: &str, severity: Severity) -> Diagnosis {
    Diagnosis {
        title: title.into(),
        detail: detail.into(),
        fix: fix.into(),
        severity,
        cause: Cause::Other,
    }
}

impl Diagnosis {
    fn because(mut self, cause: Cause) -> Diagnosis {
        self.cause = cause;
        self
    }
}

/// "key 1", "keys 1, 2", "no keys": for the log and the tiles.
pub fn key_list(keys: &[KeyId]) -> String {
    let ids: Vec<String> = keys.iter().map(|k| k.get().to_string()).collect();
    match ids.len() {
        0 => "no keys".into(),
        1 => format!("key {}", ids.join("")),
        _ => format!("keys {}", ids.join(", ")),
    }
}

/// What to do about a refusal, by its code.
fn refusal_fix(code: ServerCode) -> &'static str {
    match code {
        ServerCode::BadReceipt => {
            "The server does not accept this unit's proof: set the unit aside and tell the operator."
        }
        ServerCode::SerialTaken | ServerCode::AlreadyInstalled => {
            "This unit or identity is already on record: set the unit aside and tell the operator."
        }
        ServerCode::OverQuota => "The factory's quota is used up: ask the operator.",
        ServerCode::NotEnoughEntries => {
            "The server has no more identities for this product: ask the operator to generate or import more."
        }
        ServerCode::NotYourRecord => {
            "This record belongs to another factory: set the unit aside and tell the operator."
        }
        ServerCode::Unauthorized => "Sign in again.",
        ServerCode::TooManyAttempts => {
            "Too many wrong passwords: wait the time shown, then sign in with the right one."
        }
        ServerCode::Internal => {
            "The server failed: tell the operator the incident ID in the message (it is in the server's log)."
        }
        _ => "Download the log and tell the operator.",
    }
}

impl Diagnosis {
    /// The browser has no WebUSB (Safari, Firefox) or the page is not a secure context.
    pub fn no_webusb(secure_context: bool) -> Diagnosis {
        if secure_context {
            d(
                "This browser cannot reach USB devices",
                "WebUSB is missing: Safari and Firefox do not implement it.",
                "Open the station in Chrome or Edge (version 61 or later) on Windows, Linux, macOS or ChromeOS.",
                Severity::Station,
            )
        } else {
            d(
                "USB is blocked on an insecure page",
                "Browsers allow WebUSB only on https:// pages or on localhost.",
                "Open the station through https:// (ask the operator for the address), or run the server on this PC and use http://localhost.",
                Severity::Station,
            )
        }
    }

    /// A link failure.
    pub fn from_link(e: &LinkError) -> Diagnosis {
        match e {
            LinkError::Disconnected => d(
                "Unit disconnected",
                "The cable was pulled or the unit lost power during the step.",
                "Plug the unit back in: the station asks it what it holds and carries on. Nothing is lost.",
                Severity::Retry,
            )
            .because(Cause::Unplugged),
            LinkError::Timeout => d(
                "The unit does not answer",
                "No reply in time. A hidden or minimised tab can also slow the station down.",
                "Keep this tab in front, then unplug and replug the unit. If it keeps happening, set the unit aside.",
                Severity::Retry,
            )
            .because(Cause::NoAnswer),
            LinkError::Garbage(what) => d(
                "The unit answers with garbage",
                format!("Its answer is not valid: {what}."),
                "Try another cable or USB port; if it persists the unit has the wrong firmware: set it aside.",
                Severity::SetAside,
            )
            .because(Cause::Garbage),
            LinkError::Browser { name, message } => Diagnosis::from_browser(name, message),
        }
    }

    /// A DOMException from WebUSB, by name, as Chrome reports them.
    pub fn from_browser(name: &str, message: &str) -> Diagnosis {
        // Chrome's WebUSB messages are ASCII; `to_lowercase` brought 28 KB of Unicode tables into
        // the page (twiggy, docs/benchmarks.md).
        let m = message.to_ascii_lowercase();
        match name {
            // Chrome on Linux without the udev rule (or a snap without raw-usb): open() fails
            // with "Access denied."
            "SecurityError" | "NetworkError" if m.contains("access denied") => {
                Diagnosis::linux_permissions(message)
            }
            "SecurityError" if m.contains("protected") => d(
                "The unit's interface is protected",
                message,
                "The unit's firmware exposes the wrong interface class: check its descriptors (docs/usb.md), set it aside.",
                Severity::SetAside,
            ),
            "SecurityError" | "NotAllowedError" => d(
                "No permission for this unit",
                message,
                "Click \"Connect unit\" and pick it in the chooser. After a replug this is needed only if the unit has no serial number; kiosks can pre-grant units with the WebUsbAllowDevicesForUrls policy.",
                Severity::Station,
            ),
            "NetworkError" if m.contains("unable to claim") || m.contains("claim") => d(
                "Another program holds the unit",
                message,
                "Close other programs using it (a serial monitor, adb, fwupd, another browser tab), then replug. On Windows the unit needs its WinUSB descriptors (docs/usb.md).",
                Severity::Station,
            ),
            "NetworkError" => d(
                "USB transfer failed",
                message,
                "This is usually an unplug: plug the unit back in and the station resumes. If not, try another port.",
                Severity::Retry,
            ),
            "NotFoundError" if m.contains("no device selected") => d(
                "No unit chosen",
                message,
                "Click \"Connect unit\" again and pick the unit; if it is not listed, check the cable and that it is a supported model.",
                Severity::Retry,
            ),
            "NotFoundError" => Diagnosis::from_link(&LinkError::Disconnected),
            "InvalidStateError" => d(
                "The unit is in a wrong state",
                message,
                "Unplug and replug the unit.",
                Severity::Retry,
            ),
            _ => d(
                "USB error",
                format!("{name}: {message}"),
                "Unplug and replug the unit; if it repeats, download the log and send it to the operator.",
                Severity::Retry,
            ),
        }
    }

    /// Linux without the udev rule, or a snap-packaged Chromium.
    pub fn linux_permissions(message: &str) -> Diagnosis {
        d(
            "This PC does not let the browser open the unit",
            message,
            "On Linux add the udev rule from docs/usb.md (SUBSYSTEM==\"usb\", ATTR{idVendor}==\"1209\", TAG+=\"uaccess\") and replug; with a snap-packaged Chromium run `snap connect chromium:raw-usb`.",
            Severity::Station,
        )
    }

    /// A device error code.
    pub fn from_device(code: ErrorCode) -> Diagnosis {
        let severity = match code {
            ErrorCode::BadFrame | ErrorCode::StorageFailed | ErrorCode::WrongIdentity => {
                Severity::Retry
            }
            ErrorCode::UnsupportedVersion | ErrorCode::UnknownRequest | ErrorCode::BadRequest => {
                Severity::Station
            }
            _ => Severity::SetAside,
        };
        d(
            &capitalise(code.message()),
            format!("Device error {:#04x}.", code.code()),
            &capitalise(code.fix()),
            severity,
        )
    }

    /// The unit is of another model.
    pub fn wrong_model(expected: &str, found: &str) -> Diagnosis {
        d(
            "Wrong model",
            format!(
                "This station is set up for {expected}; the unit reports product code {found}."
            ),
            "Set the unit aside for the right line, or change the station's product code.",
            Severity::SetAside,
        )
    }

    /// The unit already has an identity.
    pub fn already_provisioned(which: &str) -> Diagnosis {
        d(
            "Unit already provisioned",
            format!("It holds {which}."),
            "Set it aside: a unit takes one identity. Do not reuse its record.",
            Severity::SetAside,
        )
    }

    /// The server refused this unit's report for good: the unit holds an identity the server
    /// will not accept from this station. Final: counted apart from pending reports.
    pub fn report_refused(code: ServerCode, message: &str) -> Diagnosis {
        d(
            "Report refused",
            format!("The server refused this unit's report for good ({code}): {message}"),
            refusal_fix(code),
            Severity::SetAside,
        )
    }

    /// The unit is bound to a record of another factory's journal on this station: written,
    /// or possibly written, by a technician of that factory. Another factory's record would
    /// never be accepted from this one, and writing one of ours over it is not possible.
    pub fn other_factory(factory: &str, finished: bool) -> Diagnosis {
        if finished {
            d(
                "Unit of another factory",
                format!("This unit was provisioned at this station for {factory}."),
                "Set it aside for them: it is finished and needs nothing from this factory.",
                Severity::SetAside,
            )
        } else {
            d(
                "Unit of another factory",
                format!(
                    "This unit is mid-way for {factory}: it holds, or may hold, one of their records."
                ),
                &format!(
                    "Set it aside for {factory}: a technician of {factory} signs in here and plugs it in to finish it."
                ),
                Severity::SetAside,
            )
        }
    }

    /// The unit is in the station's journal of an earlier version (one for every factory),
    /// which is shared out by the server's word at sign-in and was not yet: whose it is, the
    /// server says once it answers.
    pub fn in_earlier_journal() -> Diagnosis {
        d(
            "Unit waiting for the server",
            "This unit is in the station's journal of an earlier version, shared out between factories by the server's list of each one's records, which it has not answered yet.",
            "Check the network, then click Retry: nothing is written into the unit until the server says whose it is.",
            Severity::Station,
        )
    }

    /// The station has no record for this unit.
    pub fn no_records(product: &str, keys: &[KeyId]) -> Diagnosis {
        d(
            "No record for this unit",
            format!(
                "The station holds no record of {product} for this unit ({}).",
                key_list(keys)
            ),
            "Fetch more records (or take a lease); if the unit's keys differ from the line's, it is of another key generation.",
            Severity::Station,
        )
        .because(Cause::NoRecord)
    }

    /// A server failure.
    pub fn from_server(e: &ServerError) -> Diagnosis {
        match e {
            ServerError::Offline(why) => d(
                "Server unreachable",
                why.clone(),
                "The unit is written and its receipt is kept: it will be reported when the server is back. Carry on with a lease, or check the network.",
                Severity::Station,
            )
            .because(Cause::ServerDown),
            ServerError::Refused { code, message } => {
                let fix = refusal_fix(*code);
                d(
                    "The server refused",
                    message.clone(),
                    fix,
                    Severity::SetAside,
                )
            }
            ServerError::Request(what) => Diagnosis::bug(what),
            // The station sends no files: a file's refusal is a bug of whatever asked.
            ServerError::BadLines { message, .. } => Diagnosis::bug(message),
            ServerError::Unintelligible { status, detail } => d(
                "The server's answer is not understood",
                format!("The server answered (HTTP {status}), but {detail}."),
                "The station and the server may be of different versions, or something between them (a proxy) answers instead: tell the operator. Units written meanwhile keep their receipts.",
                Severity::Station,
            ),
        }
    }

    /// A chip-bound unit's record could not be fetched. Offline is not "carry on": there is no
    /// record to write until the server answers.
    pub fn chip_record_failed(e: &ServerError) -> Diagnosis {
        match e {
            ServerError::Offline(why) => d(
                "Server needed for this unit",
                format!(
                    "This product is chip-bound: each unit's record is sealed for its chip and fetched from the server when it is plugged in ({why})."
                ),
                "Check the network, then click Retry. Units of chip-bound products cannot be written offline (no lease).",
                Severity::Station,
            )
            .because(Cause::NoRecord),
            other => Diagnosis::from_server(other),
        }
    }

    /// A record fetched for the chip the unit reported does not open in it: the unit is not the
    /// chip it says it is (a cloned or counterfeit chip ID), or the record was altered.
    pub fn not_its_chip(chip: &str) -> Diagnosis {
        d(
            "Record does not open in this unit",
            format!(
                "The record was sealed for chip {chip}, the chip this unit reported, and the unit cannot open it: the unit is not that chip (a cloned or counterfeit chip ID), or the record was altered."
            ),
            "Set the unit aside and tell the operator: do not plug it in again on this line.",
            Severity::SetAside,
        )
    }

    /// The unit refused to lock (its product locks units, and the check passed). Its identity
    /// is installed, reported and checked; only the lock is missing.
    pub fn lock_failed(code: ErrorCode) -> Diagnosis {
        match code {
            ErrorCode::StorageFailed => d(
                "Lock not written",
                "The unit holds its identity and passed the check, but could not write the lock (device error 0x0b).",
                "Retry, or unplug the unit and plug it back in: the station locks it again (nothing else is written). If it fails again, set it aside: its storage is failing.",
                Severity::Retry,
            ),
            ErrorCode::WrongIdentity | ErrorCode::NotProvisioned => d(
                "Lock refused: the unit holds something else",
                format!(
                    "The unit says it {} the identity the station wrote and checked (device error {:#04x}).",
                    if code == ErrorCode::NotProvisioned {
                        "holds no identity, not"
                    } else {
                        "holds another identity than"
                    },
                    code.code()
                ),
                "Set the unit aside and tell the operator: it may be faulty or tampered with.",
                Severity::SetAside,
            ),
            other => {
                let mut d = Diagnosis::from_device(other);
                d.title = format!("Lock failed: {}", d.title);
                d
            }
        }
    }

    /// The closed-loop check failed.
    pub fn check_failed() -> Diagnosis {
        d(
            "Check failed",
            "The unit's answer to the server's challenge does not match its new identity.",
            "Set the unit aside and tell the operator: it may be faulty or tampered with.",
            Severity::SetAside,
        )
    }

    /// An answer that makes no sense at this point.
    pub fn unexpected(reply: &Reply) -> Diagnosis {
        match reply {
            Reply::Error(code) => Diagnosis::from_device(*code),
            other => d(
                "Unexpected answer",
                format!(
                    "The unit answered {:?} out of turn.",
                    std::mem::discriminant(other)
                ),
                "Unplug and replug the unit.",
                Severity::Retry,
            ),
        }
    }

    /// A bug: should not happen; shown rather than hidden.
    pub fn bug(what: &str) -> Diagnosis {
        d(
            "Station error",
            what,
            "Download the log and send it to the operator.",
            Severity::Station,
        )
    }
}

/// Upper-cases the first letter. The messages are ours and ASCII; `char::to_uppercase` would
/// bring the Unicode case tables (16 KB) into the page.
fn capitalise(s: &str) -> String {
    let mut out = s.to_string();
    if let Some(first) = out.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    out
}
