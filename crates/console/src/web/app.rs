//! The console's pages. Thin: what they show is computed in [`crate::state`]; every request
//! goes through imprint-client in the contract's types.

use imprint_api::{
    Activity, ActivityQuery, AddFactoryRequest, AddKeyRequest, AddUserRequest, AuditPage,
    AuditVerification, Endpoint, ExportInstalled, FactoryList, ForUser, GenerateRequest, ImportCsv,
    ListFactories, ListKeys, ListProducts, ListUsers, MapProduct, MapProductRequest, Product,
    Revoke, Role, SetDisabledRequest, SetPasswordRequest, SetQuota, SetQuotaRequest,
    SetRoleRequest, UserRow, VerifyAuditQuery,
};
use imprint_client::ServerError;
use imprint_client::fetch::Fetch;
use imprint_core::{ApparatusId, FactoryId, KeyId, ProductCode};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use super::Session;
use crate::state::activity::{installs, refusal_meaning};
use crate::state::audit::{EXPORT_MAX, EXPORT_PAGE, Field, Pager, Search, at_ms, to_csv};
use crate::state::overview::{alerts, bar, duration, left, outstanding};

/// How often the live figures are read again.
const REFRESH_MS: i32 = 5_000;

/// The pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Overview,
    Products,
    Entries,
    Users,
    Audit,
}

impl Page {
    fn label(self) -> &'static str {
        match self {
            Page::Overview => "Factories",
            Page::Products => "Products and keys",
            Page::Entries => "Entries",
            Page::Users => "Users",
            Page::Audit => "Audit log",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Page::Overview => "nav-overview",
            Page::Products => "nav-products",
            Page::Entries => "nav-entries",
            Page::Users => "nav-users",
            Page::Audit => "nav-audit",
        }
    }

    /// What a role may open: admins everything, auditors the figures and the log.
    fn for_role(role: Role) -> &'static [Page] {
        match role {
            Role::Admin => &[
                Page::Overview,
                Page::Products,
                Page::Entries,
                Page::Users,
                Page::Audit,
            ],
            _ => &[Page::Overview, Page::Audit],
        }
    }
}

/// What the pages share. Copy handles only.
#[derive(Clone, Copy)]
struct Ctx {
    session: StoredValue<Session>,
    page: RwSignal<Page>,
    overview: RwSignal<Option<FactoryList>>,
    activity: RwSignal<Option<Activity>>,
    products: RwSignal<Vec<Product>>,
    keys: RwSignal<Vec<KeyId>>,
    /// The session ended on the server: every page stops and says so.
    ended: RwSignal<bool>,
    /// The last request that failed for a reason that is not the page's own.
    trouble: RwSignal<Option<String>>,
}

impl Ctx {
    fn admin(&self) -> bool {
        self.session.with_value(|s| s.user.role == Role::Admin)
    }

    /// Calls `e` with the session; an ended session is noted for the whole console.
    async fn call<E: Endpoint>(self, e: &E) -> Result<E::Answer, ServerError> {
        let token = self.session.with_value(|s| s.token.clone());
        let out = imprint_client::call(&Fetch, Some(&token), e).await;
        match &out {
            Err(ServerError::Refused {
                code: imprint_api::ErrorCode::Unauthorized,
                ..
            }) => self.ended.set(true),
            Err(ServerError::Offline(why)) => self.trouble.set(Some(format!(
                "The server is not answering ({why}); trying again."
            ))),
            Ok(_) => self.trouble.set(None),
            Err(_) => {}
        }
        out
    }

    /// Reads the overview and the activity again (and, for admins, products and keys).
    async fn refresh(self) {
        if let Ok(o) = self.call(&ListFactories).await {
            self.overview.set(Some(o));
        }
        if let Ok(a) = self.call(&ActivityQuery { hours: Some(8) }).await {
            self.activity.set(Some(a));
        }
        if self.admin() {
            if let Ok(p) = self.call(&ListProducts).await {
                self.products.set(p.products);
            }
            if let Ok(k) = self.call(&ListKeys).await {
                self.keys.set(k.key_ids);
            }
        }
    }
}

/// What a failed request says to an operator.
fn says(e: &ServerError) -> String {
    match e {
        ServerError::Offline(why) => format!("The server is not answering ({why}). Try again."),
        ServerError::Refused { message, .. } => message.clone(),
        ServerError::BadLines { message, .. } => message.clone(),
        ServerError::Request(what) => format!("The console could not send this ({what})."),
        ServerError::Unintelligible { status, detail } => {
            format!("The server answered (HTTP {status}) but {detail}.")
        }
    }
}

/// The local time of day of `ms`, HH:MM.
fn clock(ms: u64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
}

/// The local date and time of `ms`, YYYY-MM-DD HH:MM:SS.
fn stamp(ms: u64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        d.get_full_year(),
        d.get_month() + 1,
        d.get_date(),
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds()
    )
}

async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |done, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&done, ms);
        }
    });
    let _ = JsFuture::from(p).await;
}

/// Offers `text` as a file named `name`.
fn download(text: &str, name: &str, mime: &str) {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
        return;
    };
    if let Some(a) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.create_element("a").ok())
        .and_then(|e| e.dyn_into::<web_sys::HtmlAnchorElement>().ok())
    {
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

/// The console, for the signed-in `session`.
#[component]
pub fn Console(
    /// Whose console: an admin's or an auditor's session.
    session: Session,
) -> impl IntoView {
    let role = session.user.role;
    let who = format!("{} ({})", session.user.username, role.as_str());
    let ctx = Ctx {
        session: StoredValue::new(session),
        page: RwSignal::new(Page::Overview),
        overview: RwSignal::new(None),
        activity: RwSignal::new(None),
        products: RwSignal::new(Vec::new()),
        keys: RwSignal::new(Vec::new()),
        ended: RwSignal::new(false),
        trouble: RwSignal::new(None),
    };
    spawn_local(async move {
        while !ctx.ended.get_untracked() {
            ctx.refresh().await;
            sleep(REFRESH_MS).await;
        }
    });
    let sign_out = move |_| {
        spawn_local(async move {
            let _ = ctx.call(&imprint_api::Logout).await;
            super::leave();
        });
    };
    let nav = Page::for_role(role)
        .iter()
        .map(|&p| {
            view! {
                <button id=p.id() class=move || if ctx.page.get() == p { "tab on" } else { "tab" } on:click=move |_| ctx.page.set(p)>{p.label()}</button>
            }
        })
        .collect_view();
    view! {
        <div class="console">
            <header class="top">
                <h1>"Imprint console"</h1>
                <nav>{nav}</nav>
                <span class="who" id="who">{who}</span>
                <button id="signout" on:click=sign_out>"Sign out"</button>
            </header>
            <Show when=move || ctx.ended.get()>
                <div class="banner bad" id="ended">"Your session ended on the server. "<button on:click=|_| super::leave()>"Sign in again"</button></div>
            </Show>
            <Show when=move || ctx.trouble.get().is_some()>
                <div class="banner warn">{move || ctx.trouble.get().unwrap_or_default()}</div>
            </Show>
            <main class="pages">
                {move || match ctx.page.get() {
                    Page::Overview => view! { <Overview ctx=ctx/> }.into_any(),
                    Page::Products => view! { <Products ctx=ctx/> }.into_any(),
                    Page::Entries => view! { <Entries ctx=ctx/> }.into_any(),
                    Page::Users => view! { <Users ctx=ctx/> }.into_any(),
                    Page::Audit => view! { <Audit ctx=ctx/> }.into_any(),
                }}
            </main>
        </div>
    }
}

/// A change to one user from the users table (no `Debug`: it may hold a password).
#[derive(Clone)]
enum UserChange {
    Disabled(String, bool),
    Password(String, String),
    Role(String, Role, Option<FactoryId>),
}

/// A select's options, each value its own label.
fn options(values: Vec<String>) -> impl IntoView {
    values
        .into_iter()
        .map(|v| {
            let label = v.clone();
            view! { <option value=v>{label}</option> }
        })
        .collect_view()
}

/// An action's outcome under its form: done (green) or refused (red).
#[derive(Clone, Debug)]
enum Said {
    Done(String),
    Failed(String),
}

fn said_view(said: RwSignal<Option<Said>>, id: &'static str) -> impl IntoView {
    move || {
        said.get().map(|s| match s {
            Said::Done(t) => view! { <p class="done" id=id>{t}</p> }.into_any(),
            Said::Failed(t) => view! { <p class="error" id=id>{t}</p> }.into_any(),
        })
    }
}

#[component]
fn Overview(ctx: Ctx) -> impl IntoView {
    let cards = move || {
        ctx.overview.get().map(|o| {
            let now = o.now_ms;
            o.factories
                .into_iter()
                .map(|f| {
                    let quotas = f
                        .quotas
                        .iter()
                        .map(|q| {
                            let (done, open) = bar(q);
                            let text = format!(
                                "{}: {} of {} used, {} open at the factory, {} left",
                                q.product_code,
                                q.used,
                                q.limit,
                                q.open,
                                left(q)
                            );
                            view! {
                                <div class="quota">
                                    <div class="quota-text">{text}</div>
                                    <div class="qbar" role="img" aria-label=format!("{done}% installed, {open}% open")>
                                        <span class="done" style=format!("width:{done}%")></span>
                                        <span class="open" style=format!("width:{open}%")></span>
                                    </div>
                                </div>
                            }
                        })
                        .collect_view();
                    let leases = f
                        .leases
                        .iter()
                        .map(|l| {
                            view! {
                                <li>{format!(
                                    "Lease {} ({}): {} of {} records not installed, expires in {}",
                                    l.lease_id,
                                    l.product_code,
                                    l.open,
                                    l.records,
                                    duration(l.not_after_ms.saturating_sub(now))
                                )}</li>
                            }
                        })
                        .collect_view();
                    let no_quota = f.quotas.is_empty().then(|| {
                        view! { <p class="mute">"No quota yet: the factory cannot receive records."</p> }
                    });
                    view! {
                        <section class="card factory" id=format!("factory-{}", f.factory_id)>
                            <h2>{f.name.clone()}" "<small>{f.factory_id.to_string()}</small></h2>
                            <p class="big"><b>{f.installed}</b>" units installed"</p>
                            {quotas}
                            {no_quota}
                            <ul class="leases">{leases}</ul>
                        </section>
                    }
                })
                .collect_view()
        })
    };
    let alert_list = move || {
        ctx.overview.get().map(|o| {
            alerts(&o)
                .into_iter()
                .map(|a| view! { <li class=a.level.class()>{a.text}</li> })
                .collect_view()
        })
    };
    let pools = move || {
        ctx.overview.get().map(|o| {
            o.pools
                .into_iter()
                .map(|p| {
                    view! { <li>{format!("{}: {} entries in the pool (key {})", p.product_code, p.available, p.key_id)}</li> }
                })
                .collect_view()
        })
    };
    let chart = move || {
        ctx.activity
            .get()
            .map(|a| installs(&a).to_html(clock))
            .unwrap_or_default()
    };
    let refused = move || {
        ctx.activity.get().map(|a| {
            a.refused
                .into_iter()
                .map(|r| {
                    view! {
                        <tr>
                            <td>{stamp(r.at_ms)}</td>
                            <td>{r.factory}</td>
                            <td>{r.station}</td>
                            <td>{r.technician}</td>
                            <td>{r.product_serial}" "<small>{r.apparatus_id}</small></td>
                            <td><b>{r.reason.clone()}</b>" "{refusal_meaning(&r.reason)}</td>
                        </tr>
                    }
                })
                .collect_view()
        })
    };
    let admin = ctx.admin();
    view! {
        <ul class="alerts" id="alerts">{alert_list}</ul>
        <div class="cards" id="factories">{cards}</div>
        <section class="card">
            <h2>"Pools"</h2>
            <ul id="pools">{pools}</ul>
        </section>
        <section class="card wide">
            <figure class="chart" id="chart-installs" inner_html=chart></figure>
        </section>
        <section class="card wide">
            <h2>"Refused reports, last 8 hours"</h2>
            <table id="refused"><tr><th>"When"</th><th>"Factory"</th><th>"Station"</th><th>"Technician"</th><th>"Unit"</th><th>"Why"</th></tr>{refused}</table>
        </section>
        <Devices ctx=ctx/>
        {admin.then(|| view! { <FactoryForms ctx=ctx/> })}
    }
}

/// Installed devices: the export (both roles) and, for admins, revocation.
#[component]
fn Devices(ctx: Ctx) -> impl IntoView {
    let export_said = RwSignal::new(None::<Said>);
    let export = move |_| {
        spawn_local(async move {
            let token = ctx.session.with_value(|s| s.token.clone());
            match imprint_client::call_text(&Fetch, Some(&token), &ExportInstalled).await {
                Ok(csv) => {
                    let rows = csv.lines().count().saturating_sub(1);
                    download(&csv, "imprint-installed.csv", "text/csv");
                    export_said.set(Some(Said::Done(format!(
                        "{rows} installed device(s) exported."
                    ))));
                }
                Err(e) => export_said.set(Some(Said::Failed(says(&e)))),
            }
        });
    };
    let id = RwSignal::new(String::new());
    let confirming = RwSignal::new(false);
    let revoke_said = RwSignal::new(None::<Said>);
    let check = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match ApparatusId::new(id.get_untracked().trim()) {
            Ok(_) => confirming.set(true),
            Err(e) => revoke_said.set(Some(Said::Failed(format!("Apparatus ID: {e}")))),
        }
    };
    let revoke = move |_| {
        let Ok(apparatus_id) = ApparatusId::new(id.get_untracked().trim()) else {
            return;
        };
        spawn_local(async move {
            match ctx.call(&Revoke { apparatus_id }).await {
                Ok(r) => {
                    revoke_said.set(Some(Said::Done(format!(
                        "{} revoked: its field authentications now fail.",
                        r.revoked
                    ))));
                    id.set(String::new());
                }
                Err(e) => revoke_said.set(Some(Said::Failed(says(&e)))),
            }
            confirming.set(false);
        });
    };
    let admin = ctx.admin();
    view! {
        <section class="card">
            <h2>"Installed devices (table 704)"</h2>
            <button id="export-installed" on:click=export>"Export installed devices (CSV)"</button>
            {said_view(export_said, "export-said")}
            {admin.then(|| view! {
                <form id="revoke" on:submit=check>
                    <label>"Revoke a device: its apparatus ID"<input id="revoke-id" prop:value=move || id.get() on:input=move |e| { id.set(event_target_value(&e)); confirming.set(false); }/></label>
                    <Show when=move || confirming.get() fallback=|| view! { <button type="submit">"Revoke"</button> }>
                        <p class="warn">{move || format!("{} will fail every field authentication from now on. ", id.get().trim())}
                            <button type="button" class="primary" id="revoke-confirm" on:click=revoke>"Confirm revocation"</button></p>
                    </Show>
                </form>
                {said_view(revoke_said, "revoke-said")}
            })}
        </section>
    }
}

#[component]
fn FactoryForms(ctx: Ctx) -> impl IntoView {
    let id = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let added = RwSignal::new(None::<Said>);
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let factory_id = match FactoryId::new(id.get_untracked().trim()) {
            Ok(f) => f,
            Err(e) => return added.set(Some(Said::Failed(format!("Factory ID: {e}")))),
        };
        spawn_local(async move {
            let body = AddFactoryRequest {
                factory_id,
                name: name.get_untracked().trim().to_string(),
            };
            match ctx.call(&body).await {
                Ok(a) => {
                    added.set(Some(Said::Done(format!("Factory {} added.", a.factory_id))));
                    id.set(String::new());
                    name.set(String::new());
                    ctx.refresh().await;
                }
                Err(e) => added.set(Some(Said::Failed(says(&e)))),
            }
        });
    };
    let factory = RwSignal::new(String::new());
    let product = RwSignal::new(String::new());
    let limit = RwSignal::new(String::new());
    let quota_said = RwSignal::new(None::<Said>);
    let set_quota = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let parsed = (|| {
            let f = FactoryId::new(factory.get_untracked().trim())
                .map_err(|e| format!("Factory: {e}"))?;
            let p = ProductCode::new(product.get_untracked().trim())
                .map_err(|e| format!("Product code: {e}"))?;
            let l: u64 = limit
                .get_untracked()
                .trim()
                .parse()
                .map_err(|_| "Limit: a whole number of records".to_string())?;
            Ok::<_, String>((f, p, l))
        })();
        let (f, p, l) = match parsed {
            Ok(v) => v,
            Err(e) => return quota_said.set(Some(Said::Failed(e))),
        };
        spawn_local(async move {
            let body = SetQuota {
                factory: f,
                product: p,
                body: SetQuotaRequest { limit: l },
            };
            match ctx.call(&body).await {
                Ok(q) => {
                    quota_said.set(Some(Said::Done(format!(
                        "Quota of {} for {} set to {}.",
                        q.factory_id, q.product_code, q.limit
                    ))));
                    ctx.refresh().await;
                }
                Err(e) => quota_said.set(Some(Said::Failed(says(&e)))),
            }
        });
    };
    let factory_options = move || {
        ctx.overview.get().map(|o| {
            options(
                o.factories
                    .iter()
                    .map(|f| f.factory_id.to_string())
                    .collect(),
            )
        })
    };
    let product_options = move || {
        ctx.products
            .get()
            .into_iter()
            .map(|p| {
                let v = p.product_code.to_string();
                view! { <option value=v.clone()>{v.clone()}</option> }
            })
            .collect_view()
    };
    view! {
        <section class="card">
            <h2>"Add a factory"</h2>
            <form id="add-factory" on:submit=add>
                <label>"Factory ID"<input id="factory-id" prop:value=move || id.get() on:input=move |e| id.set(event_target_value(&e))/></label>
                <label>"Name"<input id="factory-name" prop:value=move || name.get() on:input=move |e| name.set(event_target_value(&e))/></label>
                <button class="primary" type="submit">"Add factory"</button>
            </form>
            {said_view(added, "add-factory-said")}
        </section>
        <section class="card">
            <h2>"Set a quota"</h2>
            <form id="set-quota" on:submit=set_quota>
                <label>"Factory"<select id="quota-factory" on:change=move |e| factory.set(event_target_value(&e))><option value="">"choose"</option>{factory_options}</select></label>
                <label>"Product code"<select id="quota-product" on:change=move |e| product.set(event_target_value(&e))><option value="">"choose"</option>{product_options}</select></label>
                <label>"Records it may receive"<input id="quota-limit" inputmode="numeric" prop:value=move || limit.get() on:input=move |e| limit.set(event_target_value(&e))/></label>
                <button class="primary" type="submit">"Set quota"</button>
            </form>
            {said_view(quota_said, "set-quota-said")}
        </section>
    }
}

#[component]
fn Products(ctx: Ctx) -> impl IntoView {
    let rows = move || {
        let overview = ctx.overview.get();
        ctx.products
            .get()
            .into_iter()
            .map(|p| {
                // "…" until the factories are read, never a 0 that is not known.
                let open = overview
                    .as_ref()
                    .map(|o| outstanding(o, &p.product_code).to_string())
                    .unwrap_or_else(|| "…".into());
                view! {
                    <tr>
                        <td>{p.product_code.to_string()}</td>
                        <td>{p.key_id.to_string()}</td>
                        <td>{if p.chip_bound { "yes" } else { "no" }}</td>
                        <td>{if p.lock_units { "yes" } else { "no" }}</td>
                        <td>{open}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    let keys = move || {
        ctx.keys
            .get()
            .iter()
            .map(KeyId::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let new_key = RwSignal::new(String::new());
    let key_said = RwSignal::new(None::<Said>);
    let add_key = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key_id = match new_key
            .get_untracked()
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(|n| KeyId::new(n).ok())
        {
            Some(k) => k,
            None => {
                return key_said.set(Some(Said::Failed(
                    "Key ID: a number from 1 to 4294967295".into(),
                )));
            }
        };
        spawn_local(async move {
            match ctx.call(&AddKeyRequest { key_id }).await {
                Ok(k) => {
                    key_said.set(Some(Said::Done(format!(
                        "Key {} made (random; it never leaves the server's custody).",
                        k.key_id
                    ))));
                    ctx.refresh().await;
                }
                Err(e) => key_said.set(Some(Said::Failed(says(&e)))),
            }
        });
    };
    view! {
        <section class="card wide">
            <h2>"Products (table 500)"</h2>
            <table id="products"><tr><th>"Product code"</th><th>"Key"</th><th>"Chip-bound"</th><th>"Units locked"</th><th>"Records issued, not installed"</th></tr>{rows}</table>
            <p>"Keys (table 700): "<span id="keys">{keys}</span></p>
        </section>
        <section class="card">
            <h2>"Add a pre-write key"</h2>
            <form id="add-key" on:submit=add_key>
                <label>"Key ID"<input id="key-id" inputmode="numeric" prop:value=move || new_key.get() on:input=move |e| new_key.set(event_target_value(&e))/></label>
                <button class="primary" type="submit">"Make key"</button>
            </form>
            {said_view(key_said, "add-key-said")}
        </section>
        <Rotation ctx=ctx/>
    }
}

/// The guided key rotation: pick the product and its new key, see what will be sealed again,
/// confirm, see what was.
#[component]
fn Rotation(ctx: Ctx) -> impl IntoView {
    let product = RwSignal::new(String::new());
    let key = RwSignal::new(String::new());
    let confirming = RwSignal::new(false);
    let said = RwSignal::new(None::<Said>);
    let busy = RwSignal::new(false);
    let chosen = move || -> Result<(ProductCode, KeyId, KeyId, u64), String> {
        let code =
            ProductCode::new(product.get().trim()).map_err(|_| "Pick a product.".to_string())?;
        let current = ctx
            .products
            .get()
            .into_iter()
            .find(|p| p.product_code == code)
            .map(|p| p.key_id)
            .ok_or("Pick a product.")?;
        let new = key
            .get()
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(|n| KeyId::new(n).ok())
            .ok_or("Pick the new key.")?;
        if new == current {
            return Err(format!("{code} is already on key {new}: pick another key."));
        }
        // Not a guess before the factories are read: the count is what the confirmation shows.
        let open = ctx
            .overview
            .get()
            .map(|o| outstanding(&o, &code))
            .ok_or("Reading the factories' open records…")?;
        Ok((code, current, new, open))
    };
    let preview = move || match chosen() {
        Ok((code, current, new, open)) => format!(
            "{code} moves from key {current} to key {new}. {open} record(s) issued and not installed will be sealed again under key {new}; new records are sealed under it. Units built with key {current} cannot open records sealed under key {new}."
        ),
        Err(e) => e,
    };
    let rotate = move |_| {
        let Ok((code, _, new, _)) = chosen() else {
            return;
        };
        busy.set(true);
        spawn_local(async move {
            let body = MapProduct {
                code,
                body: MapProductRequest {
                    key_id: new,
                    chip_bound: None,
                },
            };
            match ctx.call(&body).await {
                Ok(r) => {
                    let from = r
                        .old_key_id
                        .map(|k| k.to_string())
                        .unwrap_or_else(|| "none".into());
                    said.set(Some(Said::Done(format!(
                        "{code} is now on key {} (was {from}): {} record(s) sealed again.",
                        r.new_key_id, r.resealed
                    ))));
                    ctx.refresh().await;
                }
                Err(e) => said.set(Some(Said::Failed(says(&e)))),
            }
            confirming.set(false);
            busy.set(false);
        });
    };
    let product_options = move || {
        ctx.products
            .get()
            .into_iter()
            .map(|p| {
                let v = p.product_code.to_string();
                view! { <option value=v.clone()>{format!("{v} (key {})", p.key_id)}</option> }
            })
            .collect_view()
    };
    let key_options = move || options(ctx.keys.get().iter().map(KeyId::to_string).collect());
    view! {
        <section class="card wide" id="rotation">
            <h2>"Rotate a product's key"</h2>
            <div class="form">
                <label>"1. Product"<select id="rotate-product" on:change=move |e| { product.set(event_target_value(&e)); confirming.set(false); }><option value="">"choose"</option>{product_options}</select></label>
                <label>"2. New key"<select id="rotate-key" on:change=move |e| { key.set(event_target_value(&e)); confirming.set(false); }><option value="">"choose"</option>{key_options}</select></label>
            </div>
            <p class="preview" id="rotate-preview">{preview}</p>
            <Show when=move || !confirming.get() fallback=move || view! {
                <p class="warn">"This cannot be undone by the console (rotate back to the old key if needed). "
                    <button class="primary" id="rotate-confirm" disabled=move || busy.get() on:click=rotate>"Confirm rotation"</button>" "
                    <button on:click=move |_| confirming.set(false)>"Cancel"</button></p>
            }>
                <button id="rotate" disabled=move || chosen().is_err() on:click=move |_| confirming.set(true)>"3. Rotate"</button>
            </Show>
            {said_view(said, "rotate-said")}
        </section>
    }
}

#[component]
fn Entries(ctx: Ctx) -> impl IntoView {
    let key = RwSignal::new(String::new());
    let count = RwSignal::new(String::from("1000"));
    let prefix = RwSignal::new(String::from("IMP-"));
    let gen_said = RwSignal::new(None::<Said>);
    let generate = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key_id = match key
            .get_untracked()
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(|n| KeyId::new(n).ok())
        {
            Some(k) => k,
            None => {
                return gen_said.set(Some(Said::Failed(
                    "Pick the key the entries are for.".into(),
                )));
            }
        };
        let Ok(n) = count.get_untracked().trim().parse::<u64>() else {
            return gen_said.set(Some(Said::Failed(
                "How many: a whole number, 1 to 1000000.".into(),
            )));
        };
        spawn_local(async move {
            let body = GenerateRequest {
                key_id,
                count: n,
                prefix: prefix.get_untracked(),
            };
            match ctx.call(&body).await {
                Ok(g) => {
                    gen_said.set(Some(Said::Done(format!(
                        "{} entries made for key {key_id}: {} to {}.",
                        g.count, g.first, g.last
                    ))));
                    ctx.refresh().await;
                }
                Err(e) => gen_said.set(Some(Said::Failed(says(&e)))),
            }
        });
    };
    let import_said = RwSignal::new(None::<Said>);
    let bad_lines = RwSignal::new(Vec::<(u64, String)>::new());
    let importing = RwSignal::new(false);
    let import = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let file = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("csv-file"))
            .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
            .and_then(|i| i.files())
            .and_then(|f| f.get(0));
        let Some(file) = file else {
            return import_said.set(Some(Said::Failed("Choose a CSV file first.".into())));
        };
        importing.set(true);
        bad_lines.set(Vec::new());
        import_said.set(None);
        spawn_local(async move {
            let name = file.name();
            let text = JsFuture::from(file.text())
                .await
                .ok()
                .and_then(|t| t.as_string());
            let Some(text) = text else {
                import_said.set(Some(Said::Failed(format!(
                    "{name} could not be read as text."
                ))));
                importing.set(false);
                return;
            };
            match ctx.call(&ImportCsv(text)).await {
                Ok(i) => {
                    import_said.set(Some(Said::Done(format!(
                        "{name}: {} entries imported.",
                        i.imported
                    ))));
                    ctx.refresh().await;
                }
                Err(ServerError::BadLines { message, lines }) => {
                    import_said.set(Some(Said::Failed(format!(
                        "{name}: {}. Fix the lines below, then import the whole file again.",
                        message.trim_end_matches('.')
                    ))));
                    bad_lines.set(lines.into_iter().map(|l| (l.line, l.reason)).collect());
                }
                Err(e) => import_said.set(Some(Said::Failed(format!(
                    "{name}: nothing was imported. {}",
                    says(&e)
                )))),
            }
            importing.set(false);
        });
    };
    let key_options = move || options(ctx.keys.get().iter().map(KeyId::to_string).collect());
    let line_rows = move || {
        bad_lines
            .get()
            .into_iter()
            .map(|(n, why)| view! { <tr><td>{if n == 0 { "file".to_string() } else { n.to_string() }}</td><td>{why}</td></tr> })
            .collect_view()
    };
    view! {
        <section class="card">
            <h2>"Generate entries (table 702)"</h2>
            <form id="generate" on:submit=generate>
                <label>"Key"<select id="gen-key" on:change=move |e| key.set(event_target_value(&e))><option value="">"choose"</option>{key_options}</select></label>
                <label>"How many"<input id="gen-count" inputmode="numeric" prop:value=move || count.get() on:input=move |e| count.set(event_target_value(&e))/></label>
                <label>"Apparatus ID prefix"<input id="gen-prefix" prop:value=move || prefix.get() on:input=move |e| prefix.set(event_target_value(&e))/></label>
                <button class="primary" type="submit">"Generate"</button>
            </form>
            {said_view(gen_said, "generate-said")}
        </section>
        <section class="card">
            <h2>"Import entries from CSV"</h2>
            <p class="mute">"One entry per line: apparatus_id,pass_phrase,key_id. All or nothing: one bad line and no line is imported. The file goes to the server only; the console shows no pass phrase."</p>
            <form id="import" on:submit=import>
                <input type="file" id="csv-file" accept=".csv,text/csv"/>
                <button class="primary" type="submit" disabled=move || importing.get()>"Import"</button>
            </form>
            {said_view(import_said, "import-said")}
            <Show when=move || !bad_lines.get().is_empty()>
                <table id="bad-lines"><tr><th>"Line"</th><th>"What is wrong"</th></tr>{line_rows}</table>
            </Show>
        </section>
    }
}

#[component]
fn Users(ctx: Ctx) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let role = RwSignal::new(String::from("technician"));
    let factory = RwSignal::new(String::new());
    let said = RwSignal::new(None::<Said>);
    let users = RwSignal::new(Vec::<UserRow>::new());
    let row_said = RwSignal::new(None::<Said>);
    let reload = move || {
        spawn_local(async move {
            match ctx.call(&ListUsers).await {
                Ok(l) => users.set(l.users),
                Err(e) => row_said.set(Some(Said::Failed(says(&e)))),
            }
        });
    };
    reload();
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let role_v: Role =
            match imprint_client::json::from_str(&format!("\"{}\"", role.get_untracked())) {
                Ok(r) => r,
                Err(_) => return said.set(Some(Said::Failed("Pick a role.".into()))),
            };
        let factory_id = if role_v == Role::Technician {
            match FactoryId::new(factory.get_untracked().trim()) {
                Ok(f) => Some(f),
                Err(_) => {
                    return said.set(Some(Said::Failed(
                        "A technician works for one factory: pick it.".into(),
                    )));
                }
            }
        } else {
            None
        };
        spawn_local(async move {
            let body = AddUserRequest {
                username: name.get_untracked().trim().to_string(),
                password: password.get_untracked(),
                role: role_v,
                factory_id,
            };
            match ctx.call(&body).await {
                Ok(u) => {
                    said.set(Some(Said::Done(format!(
                        "{} added as {}. Hand the password over in person; the console does not keep it.",
                        u.username,
                        u.role.as_str()
                    ))));
                    name.set(String::new());
                    password.set(String::new());
                    reload();
                }
                Err(e) => said.set(Some(Said::Failed(says(&e)))),
            }
        });
    };
    let factory_options = move || {
        ctx.overview.get().map(|o| {
            options(
                o.factories
                    .iter()
                    .map(|f| f.factory_id.to_string())
                    .collect(),
            )
        })
    };
    // One row's change: what it is, and what to say once it is done.
    let change = move |what: UserChange| {
        spawn_local(async move {
            let out = match &what {
                UserChange::Disabled(name, d) => {
                    ctx.call(&ForUser {
                        username: name.clone(),
                        body: SetDisabledRequest { disabled: *d },
                    })
                    .await
                }
                UserChange::Password(name, p) => {
                    ctx.call(&ForUser {
                        username: name.clone(),
                        body: SetPasswordRequest {
                            password: p.clone(),
                        },
                    })
                    .await
                }
                UserChange::Role(name, role, factory_id) => {
                    ctx.call(&ForUser {
                        username: name.clone(),
                        body: SetRoleRequest {
                            role: *role,
                            factory_id: *factory_id,
                        },
                    })
                    .await
                }
            };
            match out {
                Ok(u) => {
                    let done = match what {
                        UserChange::Disabled(_, true) => "disabled; their sessions ended",
                        UserChange::Disabled(_, false) => "enabled",
                        UserChange::Password(..) => "has a new password; their sessions ended",
                        UserChange::Role(..) => "has a new role; their sessions ended",
                    };
                    row_said.set(Some(Said::Done(format!("{} {done}.", u.username))));
                    reload();
                }
                Err(e) => row_said.set(Some(Said::Failed(says(&e)))),
            }
        });
    };
    let rows = move || {
        let factories: Vec<String> = ctx
            .overview
            .get()
            .map(|o| {
                o.factories
                    .iter()
                    .map(|f| f.factory_id.to_string())
                    .collect()
            })
            .unwrap_or_default();
        users
            .get()
            .into_iter()
            .map(|u| {
                let name = u.username.clone();
                let toggle = {
                    let name = name.clone();
                    let d = !u.disabled;
                    move |_| change(UserChange::Disabled(name.clone(), d))
                };
                let new_password = RwSignal::new(String::new());
                let give = {
                    let name = name.clone();
                    move |_| change(UserChange::Password(name.clone(), new_password.get_untracked()))
                };
                let pick = RwSignal::new(match (u.role, u.factory_id) {
                    (Role::Technician, Some(f)) => format!("technician:{f}"),
                    (r, _) => r.as_str().to_string(),
                });
                let move_to = {
                    let name = name.clone();
                    move |_| {
                        let v = pick.get_untracked();
                        let (role, factory) = v.split_once(':').unwrap_or((v.as_str(), ""));
                        let role: Option<Role> = imprint_client::json::from_str(&format!("\"{role}\"")).ok();
                        let factory = FactoryId::new(factory).ok();
                        if let Some(role) = role {
                            change(UserChange::Role(name.clone(), role, factory));
                        }
                    }
                };
                let choices = factories
                    .iter()
                    .map(|f| {
                        let v = format!("technician:{f}");
                        view! { <option value=v.clone() selected=pick.get_untracked() == v>{format!("technician of {f}")}</option> }
                    })
                    .collect_view();
                let state = if u.disabled { "disabled" } else { "enabled" };
                let id = format!("user-{name}");
                view! {
                    <tr id=id class=if u.disabled { "off" } else { "" }>
                        <td><b>{name.clone()}</b></td>
                        <td>{u.role.as_str()}{u.factory_id.map(|f| format!(" of {f}")).unwrap_or_default()}</td>
                        <td>{state}</td>
                        <td>{u.sessions}</td>
                        <td class="actions">
                            <button class="toggle" on:click=toggle>{if u.disabled { "Enable" } else { "Disable" }}</button>
                            <input class="new-password" type="password" autocomplete="new-password" placeholder="new password" prop:value=move || new_password.get() on:input=move |e| new_password.set(event_target_value(&e))/>
                            <button class="give" on:click=give>"Set password"</button>
                            <select class="role" on:change=move |e| pick.set(event_target_value(&e))>
                                <option value="admin" selected=u.role == Role::Admin>"admin"</option>
                                <option value="auditor" selected=u.role == Role::Auditor>"auditor"</option>
                                {choices}
                            </select>
                            <button class="move" on:click=move_to>"Change role"</button>
                        </td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <section class="card wide">
            <h2>"Users"</h2>
            <table id="users"><tr><th>"User"</th><th>"Role"</th><th>"State"</th><th>"Sessions"</th><th>"Change"</th></tr>{rows}</table>
            {said_view(row_said, "user-said")}
        </section>
        <section class="card">
            <h2>"Add a user"</h2>
            <form id="add-user" on:submit=add>
                <label>"User name"<input id="user-name" autocomplete="off" prop:value=move || name.get() on:input=move |e| name.set(event_target_value(&e))/></label>
                <label>"Password (at least 10 characters)"<input id="user-password" type="password" autocomplete="new-password" prop:value=move || password.get() on:input=move |e| password.set(event_target_value(&e))/></label>
                <label>"Role"<select id="user-role" on:change=move |e| role.set(event_target_value(&e))>
                    <option value="technician">"technician"</option>
                    <option value="auditor">"auditor"</option>
                    <option value="admin">"admin"</option>
                </select></label>
                <label>"Factory (technicians)"<select id="user-factory" on:change=move |e| factory.set(event_target_value(&e))><option value="">"choose"</option>{factory_options}</select></label>
                <button class="primary" type="submit">"Add user"</button>
            </form>
            {said_view(said, "add-user-said")}
        </section>
    }
}

#[component]
fn Audit(ctx: Ctx) -> impl IntoView {
    let field = RwSignal::new(Field::All);
    let term = RwSignal::new(String::new());
    let pager = RwSignal::new(Pager::new());
    let page = RwSignal::new(None::<AuditPage>);
    let problem = RwSignal::new(None::<String>);
    let verification = RwSignal::new(None::<Result<AuditVerification, String>>);
    let verifying = RwSignal::new(false);
    let load = move || {
        let search = Search {
            field: field.get_untracked(),
            term: term.get_untracked(),
        };
        let query = match search.query(pager.get_untracked().before()) {
            Ok(q) => q,
            Err(e) => return problem.set(Some(e)),
        };
        problem.set(None);
        spawn_local(async move {
            match ctx.call(&query).await {
                Ok(p) => page.set(Some(p)),
                Err(e) => problem.set(Some(says(&e))),
            }
        });
    };
    load();
    let search = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        pager.set(Pager::new());
        load();
    };
    let older = move |_| {
        let moved = page.with_untracked(|p| {
            p.as_ref()
                .is_some_and(|p| pager.try_update(|g| g.older(p)).unwrap_or(false))
        });
        if moved {
            load();
        }
    };
    let newer = move |_| {
        if pager.try_update(|g| g.newer()).unwrap_or(false) {
            load();
        }
    };
    let verify = move |_| {
        verifying.set(true);
        spawn_local(async move {
            let v = ctx.call(&VerifyAuditQuery { checkpoint: None }).await;
            verification.set(Some(v.map_err(|e| says(&e))));
            verifying.set(false);
        });
    };
    let exported = RwSignal::new(None::<Said>);
    let exporting = RwSignal::new(false);
    // Every entry the search finds, newest first, a thousand a request, up to EXPORT_MAX.
    let export = move |_| {
        let search = Search {
            field: field.get_untracked(),
            term: term.get_untracked(),
        };
        exporting.set(true);
        spawn_local(async move {
            let mut all = Vec::new();
            let mut before = u64::MAX;
            let outcome = loop {
                let q = match search.query_of(before, EXPORT_PAGE) {
                    Ok(q) => q,
                    Err(e) => break Err(e),
                };
                match ctx.call(&q).await {
                    Ok(p) => {
                        let full = p.entries.len() as u64 >= EXPORT_PAGE;
                        if let Some(last) = p.entries.last() {
                            before = last.seq;
                        }
                        all.extend(p.entries);
                        if !full || all.len() >= EXPORT_MAX {
                            break Ok(full);
                        }
                    }
                    Err(e) => break Err(says(&e)),
                }
            };
            match outcome {
                Ok(more) => {
                    all.truncate(EXPORT_MAX);
                    download(&to_csv(&all), "imprint-audit.csv", "text/csv");
                    let tail = if more {
                        format!(" (the newest {EXPORT_MAX}; narrow the search for the rest)")
                    } else {
                        String::new()
                    };
                    exported.set(Some(Said::Done(format!(
                        "{} entries exported{tail}.",
                        all.len()
                    ))));
                }
                Err(e) => exported.set(Some(Said::Failed(format!("Nothing exported: {e}")))),
            }
            exporting.set(false);
        });
    };
    let rows = move || {
        page.get().map(|p| {
            p.entries
                .into_iter()
                .map(|e| {
                    let when = at_ms(&e).map(stamp).unwrap_or_else(|| e.at.clone());
                    view! {
                        <tr>
                            <td>{e.seq}</td>
                            <td class="nowrap">{when}</td>
                            <td class="nowrap">{e.actor}</td>
                            <td>{e.action}</td>
                            <td class="detail"><code>{e.detail}</code></td>
                        </tr>
                    }
                })
                .collect_view()
        })
    };
    let where_ = move || {
        page.get().map(|p| {
            let first = p.entries.first().map(|e| e.seq).unwrap_or(0);
            let last = p.entries.last().map(|e| e.seq).unwrap_or(0);
            if p.entries.is_empty() {
                format!("No entries found (the log holds {}).", p.latest)
            } else {
                format!(
                    "Page {}: {} entries, numbers {first} down to {last} (the log holds {}).",
                    pager.get().number(),
                    p.entries.len(),
                    p.latest
                )
            }
        })
    };
    let verdict = move || {
        verification.get().map(|v| match v {
            Ok(v) if v.ok => view! {
                <p class="done" id="verify-said">{format!("Verified: {} entries, chain and tree intact, signed checkpoint checked.", v.entries)}</p>
            }
            .into_any(),
            Ok(v) => view! {
                <p class="error" id="verify-said">{format!("Verification FAILED after {} entries: {}", v.entries, v.problem.unwrap_or_default())}</p>
            }
            .into_any(),
            Err(e) => view! { <p class="error" id="verify-said">{e}</p> }.into_any(),
        })
    };
    let options = Field::ALL
        .iter()
        .map(|f| view! { <option value=f.key()>{f.label()}</option> })
        .collect_view();
    view! {
        <section class="card wide">
            <h2>"Audit log"</h2>
            <form id="audit-search" class="form" on:submit=search>
                <select id="audit-field" on:change=move |e| field.set(Field::of_key(&event_target_value(&e)).unwrap_or(Field::All))>{options}</select>
                <input id="audit-term" placeholder="exact match" prop:value=move || term.get() on:input=move |e| term.set(event_target_value(&e))/>
                <button class="primary" type="submit">"Search"</button>
                <button type="button" id="verify" disabled=move || verifying.get() on:click=verify>{move || if verifying.get() { "Verifying…" } else { "Verify the log" }}</button>
                <button type="button" id="audit-export" disabled=move || exporting.get() on:click=export>"Export what the search finds (CSV)"</button>
            </form>
            {said_view(exported, "audit-export-said")}
            {verdict}
            <Show when=move || problem.get().is_some()>
                <p class="error" id="audit-problem">{move || problem.get().unwrap_or_default()}</p>
            </Show>
            <p id="audit-where">{where_}</p>
            <div class="pager">
                <button id="audit-newer" disabled=move || pager.get().at_newest() on:click=newer>"Newer"</button>
                <button id="audit-older" disabled=move || !page.get().as_ref().is_some_and(Pager::has_older) on:click=older>"Older"</button>
            </div>
            <table id="audit"><tr><th>"#"</th><th>"When"</th><th>"Who"</th><th>"What"</th><th>"Detail"</th></tr>{rows}</table>
        </section>
    }
}
