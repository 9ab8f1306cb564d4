//! A bare Leptos page: one counter.
use leptos::prelude::*;
use wasm_bindgen::prelude::wasm_bindgen;

#[component]
fn Counter() -> impl IntoView {
    let n = RwSignal::new(0);
    view! { <main><h1>"Bare Leptos"</h1><button on:click=move |_| n.update(|n| *n += 1)>{move || n.get()}</button></main> }
}

/// Entry point.
#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(Counter);
}
