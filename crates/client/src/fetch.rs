//! The server over fetch on the page's own origin (the server serves the portal): the
//! [`Transport`] of the station and the console in the browser.

use gloo_net::http::{Request, RequestBuilder};
use imprint_api::Method;

use crate::{Payload, Transport};

/// fetch, on the page's origin.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fetch;

fn offline(e: impl ToString) -> String {
    e.to_string()
}

impl Transport for Fetch {
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Payload>,
    ) -> Result<(u16, String), String> {
        let mut b: RequestBuilder = match method {
            Method::Get => Request::get(path),
            Method::Post => Request::post(path),
            Method::Put => Request::put(path),
        };
        if let Some(auth) = bearer {
            b = b.header("authorization", auth);
        }
        let req = match body {
            Some(p) => b
                .header("content-type", p.content_type())
                .body(p.text)
                .map_err(offline)?,
            None => b.build().map_err(offline)?,
        };
        let res = req.send().await.map_err(offline)?;
        let text = res.text().await.map_err(offline)?;
        Ok((res.status(), text))
    }
}
