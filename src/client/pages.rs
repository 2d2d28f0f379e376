//! The one page stream: every paged read (scans, split probes, change feeds, metadata
//! listings) goes through [`Pages`].
//!
//! It sends a request, follows `@odata.nextLink` only on the configured origin, and, when
//! asked to, requests the next page while the caller decodes the current one. With change
//! tracking it checks that the server applied it (`Preference-Applied`), and it keeps the
//! final `@odata.deltaLink`. It yields raw bodies: decoding is the caller's.
//!
//! Links are read from the body without parsing the rows: Dataverse writes them as the last
//! member of the top-level object (Web API notes: "Paging"), which [`links_of`] checks from
//! the end; any other layout is parsed in full, so an unusual body costs time, never a page.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::task::JoinHandle;
use url::Url;

use super::ClientError;
use super::http::{DataverseClient, Response};
use crate::odata::{ODataQuery, Preferences};

/// One page of a paged read.
#[derive(Debug)]
pub struct Page {
    /// The response body: a JSON object with a `value` array of rows.
    pub body: Bytes,
    /// 1 for the first page read by this stream.
    pub number: usize,
    /// Attempts this page took beyond the first, and the time slept between them.
    pub retries: u32,
    /// See `retries`.
    pub retry_wait: Duration,
}

/// The pages of one request, in order. Dropping it cancels a prefetch in flight.
#[derive(Debug)]
pub struct Pages {
    client: Arc<DataverseClient>,
    /// The resource read, as errors and progress name it ("accounts").
    name: String,
    /// Data pages are named by number ("page 3 of accounts"); a metadata listing, which is
    /// rarely paged, by its name alone until its second page.
    numbered: bool,
    prefer: Preferences,
    prefetch: bool,
    next: Next,
    /// Pages handed out so far.
    number: usize,
    delta_link: Option<String>,
}

#[derive(Debug)]
enum Next {
    /// Request this URL on the next call.
    Url(Url),
    /// Already requested (prefetch).
    InFlight(Url, JoinHandle<Result<Response, ClientError>>),
    /// The last page has been handed out.
    End,
}

impl Drop for Pages {
    fn drop(&mut self) {
        if let Next::InFlight(_, handle) = &self.next {
            handle.abort();
        }
    }
}

impl Pages {
    /// The pages of `query`; nothing is sent before the first [`Pages::next_page`]. Fails
    /// when the query holds a literal the server would not read exactly.
    pub fn new(client: Arc<DataverseClient>, query: &ODataQuery) -> Result<Self, ClientError> {
        let name = query.resource.to_string();
        let relative = query
            .relative_url()
            .map_err(|source| ClientError::Unwritable {
                what: name.clone(),
                source,
            })?;
        Ok(Self {
            numbered: query.entity_set().is_some(),
            prefer: query.preferences(),
            prefetch: false,
            next: Next::Url(client.api_url(&relative)),
            number: 0,
            delta_link: None,
            client,
            name,
        })
    }

    /// Names the read in errors and progress instead of its resource ("the largest createdon
    /// of accounts").
    pub fn named(mut self, name: String) -> Self {
        self.name = name;
        self.numbered = false;
        self
    }

    /// Turns prefetching on or off from the next page on: whether the next page is requested
    /// as soon as one is handed out. Off at first: a reader with a LIMIT, or one that may stop
    /// after the first page, should not pay for a page nobody reads.
    pub fn set_prefetch(&mut self, prefetch: bool) {
        self.prefetch = prefetch;
    }

    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Option<Result<Page, ClientError>> {
        let number = self.number + 1;
        let response = match std::mem::replace(&mut self.next, Next::End) {
            Next::End => return None,
            Next::Url(url) => {
                self.client
                    .get(&url, &self.prefer, &self.what(number))
                    .await
            }
            Next::InFlight(url, handle) => match handle.await {
                Ok(result) => result,
                // The task only ends early when aborted, which only `drop` does.
                Err(_) => {
                    self.client
                        .get(&url, &self.prefer, &self.what(number))
                        .await
                }
            },
        };
        Some(self.accept(response, number))
    }

    /// The `@odata.deltaLink` of the last page, once it has been handed out (change tracking).
    pub fn delta_link(&self) -> Option<&str> {
        self.delta_link.as_deref()
    }

    /// Where the page after the last one handed out would be read from, if there is one.
    pub fn next_url(&self) -> Option<&Url> {
        match &self.next {
            Next::Url(url) | Next::InFlight(url, _) => Some(url),
            Next::End => None,
        }
    }

    /// The resource read, as errors name it.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn what(&self, number: usize) -> String {
        if self.numbered || number > 1 {
            format!("page {number} of {}", self.name)
        } else {
            self.name.clone()
        }
    }

    fn accept(
        &mut self,
        response: Result<Response, ClientError>,
        number: usize,
    ) -> Result<Page, ClientError> {
        let response = response?;
        // An entity without change tracking ignores the preference (Web API notes: "Change
        // tracking prerequisites"): reading it as a feed would silently return no deletions.
        if self.prefer.track_changes && number == 1 && !applied_tracking(&response) {
            return Err(ClientError::ChangeTrackingNotApplied {
                what: self.name.clone(),
            });
        }
        let links = links_of(&response.body).map_err(|source| ClientError::InvalidJson {
            what: self.what(number),
            source,
        })?;
        self.number = number;
        self.delta_link = links.delta;
        if let Some(next) = links.next {
            let url = Url::parse(&next).map_err(|e| ClientError::Malformed {
                what: self.what(number),
                message: format!("the nextLink is not a URL ({e})"),
            })?;
            self.next = self.request_ahead(url, number + 1);
        }
        Ok(Page {
            body: response.body,
            number,
            retries: response.retries,
            retry_wait: response.retry_wait,
        })
    }

    /// The next page: requested now when prefetching, else when asked for. A link to another
    /// origin is never requested ahead; following it fails in `DataverseClient::get`, before
    /// the token is attached (and only if the reader wants the page).
    fn request_ahead(&self, url: Url, number: usize) -> Next {
        if !self.prefetch || self.client.check_origin(&url).is_err() {
            return Next::Url(url);
        }
        let client = self.client.clone();
        let (link, prefer, what) = (url.clone(), self.prefer.clone(), self.what(number));
        let handle = tokio::spawn(async move { client.get(&link, &prefer, &what).await });
        Next::InFlight(url, handle)
    }
}

fn applied_tracking(response: &Response) -> bool {
    response
        .preference_applied
        .as_deref()
        .is_some_and(|p| p.contains("odata.track-changes"))
}

/// The paging links of one page body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Links {
    /// `@odata.nextLink`.
    pub next: Option<String>,
    /// `@odata.deltaLink`.
    pub delta: Option<String>,
}

/// The links of a page: read from the end of the body when a link is the top-level object's
/// last member, as Dataverse writes it; otherwise (or when there is none there) the whole
/// document is parsed, skipping the rows.
pub fn links_of(body: &[u8]) -> Result<Links, serde_json::Error> {
    if let Some(links) = trailing_link(body) {
        return Ok(links);
    }
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "@odata.nextLink")]
        next: Option<String>,
        #[serde(rename = "@odata.deltaLink")]
        delta: Option<String>,
    }
    let envelope: Envelope = serde_json::from_slice(body)?;
    Ok(Links {
        next: envelope.next,
        delta: envelope.delta,
    })
}

/// The fuzz target's and replay tests' check of [`links_of`]: when it reads a body, it reads
/// the links `serde_json` reads in it (`json`). A body it refuses (a duplicate key) is never
/// misread, so it agrees.
pub fn links_agree_with_json(body: &[u8], json: &serde_json::Value) -> Result<(), String> {
    let Ok(links) = links_of(body) else {
        return Ok(());
    };
    let link = |name: &str| json[name].as_str().map(str::to_string);
    if links.next == link("@odata.nextLink") && links.delta == link("@odata.deltaLink") {
        Ok(())
    } else {
        Err(format!("links {links:?} differ from serde_json's"))
    }
}

/// The links of a page read from its end, without parsing the rows. Dataverse writes a page's
/// link as the last member of the top-level object (`…,"@odata.nextLink":"<link>"}`), so the
/// body is read backwards from its final brace: a string, a colon, the key, and a `,` or `{`
/// before it. A nested object would be closed by more than one brace, so what is found this
/// way belongs to the top-level object. `None` when the body does not end so, or may hold a
/// link elsewhere: then it is parsed in full.
fn trailing_link(body: &[u8]) -> Option<Links> {
    let close = last_non_space(body, body.len())?;
    if body[close] != b'}' {
        return None;
    }
    match last_member(body, close) {
        Some((key, link)) if key == NEXT_LINK => {
            return Some(Links {
                next: Some(link),
                delta: None,
            });
        }
        // The last page of a change feed: a next link elsewhere as well would end the read
        // early, so this key must be the only one that can be a link.
        Some((key, link)) if key == DELTA_LINK => {
            let only_link = memchr::memmem::find_iter(body, b"Link\"").count() == 1;
            return (only_link && !has_escapes(body)).then_some(Links {
                next: None,
                delta: Some(link),
            });
        }
        _ => {}
    }
    // No link as the last member: the last page, if no key anywhere can be a link. A key that
    // reads `…Link` is written with `Link"` in its bytes, unless a letter is escaped, which
    // takes a `\u`; a body with either is parsed in full.
    let might_hold_a_link = memchr::memmem::find(body, b"Link\"").is_some() || has_escapes(body);
    (!might_hold_a_link).then(Links::default)
}

const NEXT_LINK: &[u8] = b"@odata.nextLink";
const DELTA_LINK: &[u8] = b"@odata.deltaLink";

fn has_escapes(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"\\u").is_some()
}

/// The last member of the object closed at `close`, when its value is a string: its key as
/// written (between the quotes) and its value.
fn last_member(body: &[u8], close: usize) -> Option<(&[u8], String)> {
    let value_end = last_non_space(body, close)?;
    if body[value_end] != b'"' || is_escaped(body, value_end) {
        return None;
    }
    let value_start = opening_quote(body, value_end)?;
    let colon = last_non_space(body, value_start)?;
    if body[colon] != b':' {
        return None;
    }
    let key_end = last_non_space(body, colon)?;
    if body[key_end] != b'"' || is_escaped(body, key_end) {
        return None;
    }
    let key_start = opening_quote(body, key_end)?;
    let before = last_non_space(body, key_start)?;
    if !matches!(body[before], b',' | b'{') {
        return None;
    }
    let value: String = serde_json::from_slice(&body[value_start..=value_end]).ok()?;
    Some((&body[key_start + 1..key_end], value))
}

/// Where the last byte before `end` that is not whitespace is.
fn last_non_space(body: &[u8], end: usize) -> Option<usize> {
    body[..end].iter().rposition(|b| !b.is_ascii_whitespace())
}

/// Whether the byte at `at` follows an odd run of backslashes (inside a string: escaped).
fn is_escaped(body: &[u8], at: usize) -> bool {
    let backslashes = body[..at].iter().rev().take_while(|&&b| b == b'\\').count();
    backslashes % 2 == 1
}

/// The quote opening the string that the quote at `close` ends: inside a string every quote
/// is escaped, so it is the nearest quote before that is not.
fn opening_quote(body: &[u8], close: usize) -> Option<usize> {
    let mut end = close;
    loop {
        let at = memchr::memrchr(b'"', &body[..end])?;
        if !is_escaped(body, at) {
            return Some(at);
        }
        end = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(body: &str) -> Links {
        links_of(body.as_bytes()).unwrap()
    }

    #[test]
    fn a_trailing_next_link_is_read_without_parsing_the_rows() {
        let body = r#"{"value":[{"a":"@odata.nextLink"}],"@odata.nextLink":"http://h/api/data/v9.2/accounts?$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"}"#;
        let found = trailing_link(body.as_bytes()).expect("read from the end");
        assert_eq!(
            found.next.as_deref(),
            Some(
                "http://h/api/data/v9.2/accounts?$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"
            )
        );
        assert_eq!(links(r#"{"value":[]}"#), Links::default());
    }

    #[test]
    fn delta_links_end_the_last_page_of_a_change_feed() {
        let body = "{\"value\":[],\"@odata.deltaLink\":\"http://h/accounts?$deltatoken=9%2101\"}\n";
        assert_eq!(
            links(body).delta.as_deref(),
            Some("http://h/accounts?$deltatoken=9%2101")
        );
    }

    /// A link that is not the last member, or one nested in a row, is found (or ignored) by
    /// parsing the whole document: never mistaken either way.
    #[test]
    fn other_layouts_are_parsed_in_full() {
        let first = r#"{"@odata.nextLink":"http://h/p2","value":[{"a":1}]}"#;
        assert!(trailing_link(first.as_bytes()).is_none());
        assert_eq!(links(first).next.as_deref(), Some("http://h/p2"));
        let nested = r#"{"value":[{"x":{"@odata.nextLink":"http://evil/p"}}]}"#;
        assert!(trailing_link(nested.as_bytes()).is_none());
        assert_eq!(links(nested), Links::default());
        let in_a_string = r#"{"value":[{"note":"\"@odata.nextLink\":\"http://evil/p\""}]}"#;
        assert_eq!(links(in_a_string), Links::default());
        // Spellings the end of the body does not show: found by the full parse.
        let spaced = r#"{"value":[],"@odata.nextLink" : "https://org/p2"}"#;
        assert_eq!(links(spaced).next.as_deref(), Some("https://org/p2"));
        let escaped = r#"{"value":[],"@odata.next\u004cink":"https://org/p2"}"#;
        assert_eq!(links(escaped).next.as_deref(), Some("https://org/p2"));
        let quoted_key = r#"{"value":[],"\"@odata.nextLink":"https://org/evil"}"#;
        assert!(trailing_link(quoted_key.as_bytes()).is_none());
        assert_eq!(links(quoted_key), Links::default());
        // A key that only ends in the link's name, last in the object.
        let key_ending_so = r#"{"value":[],"x\"@odata.nextLink":"http://evil/p"}"#;
        assert!(trailing_link(key_ending_so.as_bytes()).is_none());
        assert_eq!(links(key_ending_so), Links::default());
        let escaped_backslash = r#"{"value":[{"a":"\\"}],"@odata.nextLink":"http://h/p2"}"#;
        assert_eq!(
            links(escaped_backslash).next.as_deref(),
            Some("http://h/p2")
        );
        assert!(links_of(b"{\"value\":[").is_err());
    }

    /// Issue 12: a next link carrying a long filter is longer than any fixed tail.
    #[test]
    fn a_next_link_longer_than_any_tail_is_found() {
        let filter = "name eq 'x' or ".repeat(2_000);
        let link = format!(
            "http://h/api/data/v9.2/accounts?$filter={}&$skiptoken=2",
            filter.replace(' ', "%20").replace('\'', "%27")
        );
        assert!(link.len() > 32 * 1024);
        let body = format!(
            r#"{{"value":[{{"name":"{}"}}],"@odata.nextLink":"{link}"}}"#,
            "a".repeat(100_000)
        );
        assert_eq!(links(&body).next.as_deref(), Some(link.as_str()));
    }

    /// Every published page in the conformance corpus: the links read from the end agree
    /// with a full parse, and a next link (with its paging cookie) is read unchanged.
    #[test]
    fn published_pages_keep_their_links() {
        let corpus: [(&str, &[u8]); 5] = [
            (
                "count",
                include_bytes!("../../tests/conformance/data/accounts-count-nextlink.json"),
            ),
            (
                "contacts 1",
                include_bytes!("../../tests/conformance/data/contacts-page1.json"),
            ),
            (
                "contacts 2",
                include_bytes!("../../tests/conformance/data/contacts-page2.json"),
            ),
            (
                "initial",
                include_bytes!("../../tests/conformance/changes/accounts-initial.json"),
            ),
            (
                "delta",
                include_bytes!("../../tests/conformance/changes/accounts-delta-deleted.json"),
            ),
        ];
        #[derive(Deserialize)]
        struct Full {
            #[serde(rename = "@odata.nextLink")]
            next: Option<String>,
            #[serde(rename = "@odata.deltaLink")]
            delta: Option<String>,
        }
        for (name, body) in corpus {
            let full: Full = serde_json::from_slice(body).unwrap();
            let found = links_of(body).unwrap();
            assert_eq!(found.next, full.next, "{name}");
            assert_eq!(found.delta, full.delta, "{name}");
            assert!(found.next.is_some() || found.delta.is_some() || name == "contacts 2");
        }
        let count = links_of(corpus[0].1).unwrap().next.unwrap();
        assert!(count.starts_with("[Organization URI]/api/data/v9.2/accounts?$select=name&$filter=contains(name,'sample')&$skiptoken=%3Ccookie%20pagenumber=%222%22"));
    }
}
