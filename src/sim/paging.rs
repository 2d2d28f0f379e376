//! The `$skiptoken` paging cookie (Web API notes: "Paging").
//!
//! Format, as documented: `<cookie pagenumber="2" pagingcookie="…" istracking="False" />`
//! where `pagingcookie` is the URL-encoded inner cookie
//! `<cookie page="1"><name last="…" first="…" /><accountid last="{GUID}" first="{GUID}" /></cookie>`
//! with one element per `$orderby` column and the primary key. In a nextLink the whole outer
//! cookie is percent-encoded again, so the inner one appears double-encoded.
//! The simulator adds its own attributes to the inner `<cookie>` element where it needs
//! state that the documented format has no place for (`trackingversion`, `snapshot`).

use crate::sim::error::ApiError;

/// One element of the inner cookie: a sort column and its last/first values on the page
/// (`None` for NULL, which omits the attribute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CookieKey {
    /// Attribute logical name.
    pub(crate) name: String,
    /// Value on the last row of the page.
    pub(crate) last: Option<String>,
    /// Value on the first row of the page.
    pub(crate) first: Option<String>,
}

/// A decoded paging cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cookie {
    /// Number of the page this cookie requests (2 for the first nextLink).
    pub(crate) page_number: u32,
    /// `istracking`.
    pub(crate) tracking: bool,
    /// Extra attributes of the inner `<cookie>` element.
    pub(crate) attrs: Vec<(String, String)>,
    /// Sort keys in order.
    pub(crate) keys: Vec<CookieKey>,
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Percent-encodes everything except RFC 3986 unreserved characters, with lower-case hex
/// for the inner cookie (as in the documented example) or upper-case for URLs.
pub(crate) fn percent_encode(s: &str, lower: bool) -> String {
    let mut o = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            o.push(b as char);
        } else if lower {
            o.push_str(&format!("%{b:02x}"));
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Percent-decodes (no `+` handling: cookies never contain a literal `+`).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Cookie {
    /// The decoded `$skiptoken` value (the outer cookie XML).
    pub(crate) fn encode(&self) -> String {
        let mut inner = format!("<cookie page=\"{}\"", self.page_number - 1);
        for (k, v) in &self.attrs {
            inner.push_str(&format!(" {k}=\"{}\"", xml_escape(v)));
        }
        inner.push('>');
        for k in &self.keys {
            inner.push('<');
            inner.push_str(&k.name);
            if let Some(l) = &k.last {
                inner.push_str(&format!(" last=\"{}\"", xml_escape(l)));
            }
            if let Some(f) = &k.first {
                inner.push_str(&format!(" first=\"{}\"", xml_escape(f)));
            }
            inner.push_str(" />");
        }
        inner.push_str("</cookie>");
        format!(
            "<cookie pagenumber=\"{}\" pagingcookie=\"{}\" istracking=\"{}\" />",
            self.page_number,
            percent_encode(&inner, true),
            if self.tracking { "True" } else { "False" }
        )
    }

    /// Parses a `$skiptoken` value; any deviation is `0x8004112A`
    /// (Web API notes: "Common errors for a read client").
    pub(crate) fn decode(token: &str) -> Result<Cookie, ApiError> {
        let bad = || {
            ApiError::bad_request(
                "0x8004112A",
                "The paging cookie is invalid. Request the first page again.",
            )
        };
        let (name, attrs, rest) = parse_element(token.trim()).ok_or_else(bad)?;
        if name != "cookie" || !rest.trim().is_empty() {
            return Err(bad());
        }
        let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let page_number: u32 = get("pagenumber")
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)?;
        let tracking = match get("istracking").as_deref() {
            Some("True") => true,
            Some("False") | None => false,
            _ => return Err(bad()),
        };
        let inner = percent_decode(&get("pagingcookie").ok_or_else(bad)?).ok_or_else(bad)?;
        let (iname, iattrs, mut rest) = parse_open(&inner).ok_or_else(bad)?;
        if iname != "cookie" || page_number < 2 {
            return Err(bad());
        }
        let page: u32 = iattrs
            .iter()
            .find(|(n, _)| n == "page")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(bad)?;
        if page + 1 != page_number {
            return Err(bad());
        }
        let mut keys = Vec::new();
        loop {
            let r = rest.trim_start();
            if let Some(after) = r.strip_prefix("</cookie>") {
                if !after.trim().is_empty() {
                    return Err(bad());
                }
                break;
            }
            let (n, a, next) = parse_element(r).ok_or_else(bad)?;
            let find = |k: &str| a.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
            keys.push(CookieKey {
                name: n,
                last: find("last"),
                first: find("first"),
            });
            rest = next;
        }
        Ok(Cookie {
            page_number,
            tracking,
            attrs: iattrs.into_iter().filter(|(n, _)| n != "page").collect(),
            keys,
        })
    }
}

type Attrs = Vec<(String, String)>;

/// Parses `<name a="v" ...>` and returns the rest after `>`.
fn parse_open(s: &str) -> Option<(String, Attrs, &str)> {
    let (name, attrs, rest, self_closing) = parse_tag(s)?;
    (!self_closing).then_some((name, attrs, rest))
}

/// Parses `<name a="v" ... />` and returns the rest.
fn parse_element(s: &str) -> Option<(String, Attrs, &str)> {
    let (name, attrs, rest, self_closing) = parse_tag(s)?;
    self_closing.then_some((name, attrs, rest))
}

fn parse_tag(s: &str) -> Option<(String, Attrs, &str, bool)> {
    let s = s.strip_prefix('<')?;
    let name_end = s.find(|c: char| c.is_whitespace() || c == '/' || c == '>')?;
    let name = s[..name_end].to_string();
    if name.is_empty() {
        return None;
    }
    let mut rest = &s[name_end..];
    let mut attrs = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("/>") {
            return Some((name, attrs, r, true));
        }
        if let Some(r) = rest.strip_prefix('>') {
            return Some((name, attrs, r, false));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == '<') {
            return None;
        }
        let r = rest[eq + 1..].strip_prefix('"')?;
        let close = r.find('"')?;
        attrs.push((key, xml_unescape(&r[..close])));
        rest = &r[close + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trips_and_matches_documented_shape() {
        let c = Cookie {
            page_number: 2,
            tracking: false,
            attrs: vec![],
            keys: vec![CookieKey {
                name: "contactid".into(),
                last: Some("{D5026A4D-D01C-ED11-B83E-000D3A572421}".into()),
                first: Some("{49B0BE2E-D01C-ED11-B83E-000D3A572421}".into()),
            }],
        };
        let enc = c.encode();
        assert!(enc.starts_with("<cookie pagenumber=\"2\" pagingcookie=\"%3ccookie%20page%3d%221%22%3e%3ccontactid%20last%3d%22%7bD5026A4D"));
        assert_eq!(Cookie::decode(&enc).unwrap(), c);
        assert!(Cookie::decode("<cookie pagenumber=\"2\" />").is_err());
    }
}
