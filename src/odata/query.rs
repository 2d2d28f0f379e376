//! One request to the Web API as a value: what is read ([`Resource`]), the query options, and
//! the `Prefer` preferences. Rendered to a URL only when sent (and for EXPLAIN), so every
//! name and literal goes through one encoder.

use std::fmt::{self, Write as _};

use super::filter::{Filter, UnwritableLiteral};

/// What a request reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// The rows of an entity set: `accounts`.
    EntitySet(String),
    /// The entity list: `EntityDefinitions`.
    EntityDefinitions,
    /// The attributes of one entity, optionally cast to one derived metadata type:
    /// `EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`.
    Attributes {
        /// The entity's logical name.
        entity: String,
        /// The derived type after `Microsoft.Dynamics.CRM.` (`PicklistAttributeMetadata`).
        cast: Option<String>,
    },
}

impl Resource {
    /// The path relative to the API root, each name written through `encode`.
    fn path(&self, encode: &dyn Fn(&str) -> String) -> String {
        match self {
            Resource::EntitySet(set) => encode(set),
            Resource::EntityDefinitions => "EntityDefinitions".into(),
            Resource::Attributes { entity, cast } => {
                let key = format!("'{}'", encode(&entity.replace('\'', "''")));
                let mut path = format!("EntityDefinitions(LogicalName={key})/Attributes");
                if let Some(cast) = cast {
                    let _ = write!(path, "/Microsoft.Dynamics.CRM.{}", encode(cast));
                }
                path
            }
        }
    }
}

impl fmt::Display for Resource {
    /// How errors and progress name the resource: `accounts`, `the columns of account`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::EntitySet(set) => f.write_str(set),
            Resource::EntityDefinitions => f.write_str("the entity list (EntityDefinitions)"),
            Resource::Attributes { entity, cast: None } => write!(f, "the columns of {entity}"),
            Resource::Attributes {
                entity,
                cast: Some(_),
            } => write!(f, "the choices of {entity}"),
        }
    }
}

/// An annotation a request asks the server to add to row values (Web API notes: "Formatted
/// values and annotations").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Annotation {
    /// Choice and boolean labels, lookup primary names.
    FormattedValue,
    /// The table a (polymorphic) lookup points to.
    LookupLogicalName,
}

impl Annotation {
    /// The name used in `Prefer: odata.include-annotations` and after `@` in a row.
    pub fn name(self) -> &'static str {
        match self {
            Annotation::FormattedValue => "OData.Community.Display.V1.FormattedValue",
            Annotation::LookupLogicalName => "Microsoft.Dynamics.CRM.lookuplogicalname",
        }
    }
}

/// Annotation names as the `Prefer` header and EXPLAIN write them: comma-separated.
pub fn annotation_list(annotations: &[Annotation]) -> String {
    let names: Vec<&str> = annotations.iter().map(|a| a.name()).collect();
    names.join(",")
}

/// One `$expand` of a navigation property, with the properties it selects:
/// `OptionSet($select=Options)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expand {
    /// The navigation property.
    pub property: String,
    /// The properties of the expanded entity to return.
    pub select: Vec<String>,
}

impl Expand {
    /// `property($select=a,b)`.
    pub fn new(property: &str, select: &[&str]) -> Self {
        Self {
            property: property.to_string(),
            select: select.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One `$orderby` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderBy {
    /// The property sorted on.
    pub property: String,
    /// `desc` rather than `asc`.
    pub descending: bool,
}

impl OrderBy {
    /// `property asc` or `property desc`.
    pub fn new(property: impl Into<String>, descending: bool) -> Self {
        Self {
            property: property.into(),
            descending,
        }
    }
}

/// An aggregation the server computes (Web API notes: "$apply syntax"):
/// `groupby((a,b),aggregate(x with sum as s,$count as n))`, after the query's filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Apply {
    /// The grouping properties (none: one row for all input rows).
    pub group_by: Vec<String>,
    /// The aggregates, each under its alias.
    pub aggregates: Vec<ApplyAggregate>,
}

/// One aggregate of an [`Apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyAggregate {
    /// What is aggregated: `$count` (the rows) or a property with a method.
    pub what: Aggregated,
    /// The name of the result in each row.
    pub alias: String,
}

/// The input of one aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Aggregated {
    /// `$count`: the number of rows.
    Rows,
    /// `property with method`.
    Property(String, AggregateMethod),
}

/// The aggregation methods sent (`average` never is: it is computed locally from a sum and a
/// count, which stay exact).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateMethod {
    /// `sum`
    Sum,
    /// `min`
    Min,
    /// `max`
    Max,
}

impl fmt::Display for Apply {
    /// `groupby((a,b),aggregate(…))`, `aggregate(…)` or `groupby((a,b))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let aggregates: Vec<String> = self
            .aggregates
            .iter()
            .map(|a| match &a.what {
                Aggregated::Rows => format!("$count as {}", a.alias),
                Aggregated::Property(p, method) => {
                    let method = match method {
                        AggregateMethod::Sum => "sum",
                        AggregateMethod::Min => "min",
                        AggregateMethod::Max => "max",
                    };
                    format!("{p} with {method} as {}", a.alias)
                }
            })
            .collect();
        let aggregate = format!("aggregate({})", aggregates.join(","));
        match (self.group_by.is_empty(), aggregates.is_empty()) {
            (true, _) => f.write_str(&aggregate),
            (false, true) => write!(f, "groupby(({}))", self.group_by.join(",")),
            (false, false) => write!(f, "groupby(({}),{aggregate})", self.group_by.join(",")),
        }
    }
}

/// One request (before paging): a data read of an entity set, or a metadata listing.
#[derive(Clone, Debug, PartialEq)]
pub struct ODataQuery {
    /// What is read.
    pub resource: Resource,
    /// Wire property names; for an entity set never empty (the primary key stands in for
    /// "no columns"), since without `$select` the server returns every column.
    pub select: Vec<String>,
    /// `$expand`, for metadata listings.
    pub expand: Vec<Expand>,
    /// `$filter`.
    pub filter: Option<Filter>,
    /// `$top`.
    pub top: Option<usize>,
    /// `Prefer: odata.maxpagesize` (none for metadata listings, which the server does not
    /// page).
    pub page_size: Option<u32>,
    /// `Prefer: odata.track-changes`: the last page carries a delta link.
    pub track_changes: bool,
    /// Change tracking: the `$deltatoken` to continue from (none for the initial load).
    pub delta_token: Option<String>,
    /// `Prefer: odata.include-annotations` for the label columns read, in order, each once.
    pub annotations: Vec<Annotation>,
    /// `$orderby`: the probes and first pages of a parallel scan, and ORDER BY … LIMIT where
    /// the server's order is SQL's (ARCHITECTURE.md: "Pushdown soundness").
    pub order_by: Vec<OrderBy>,
    /// `$apply`: the filter goes inside it as `filter(…)/`, and no `$select` is sent.
    pub apply: Option<Apply>,
    /// `$count=true`: the response carries `@odata.count`, capped at 5,000 (Web API notes: "$count").
    pub count: bool,
}

impl ODataQuery {
    /// A plain read of `select` from `entity_set` in pages of `page_size`: no filter, no
    /// `$top`, no change tracking, no annotations.
    pub fn new(entity_set: impl Into<String>, select: Vec<String>, page_size: u32) -> Self {
        Self {
            page_size: Some(page_size),
            select,
            ..Self::of(Resource::EntitySet(entity_set.into()))
        }
    }

    /// A request for `resource` with every option unset (a metadata listing; data reads
    /// start from [`ODataQuery::new`]).
    pub fn of(resource: Resource) -> Self {
        Self {
            resource,
            select: Vec::new(),
            expand: Vec::new(),
            filter: None,
            top: None,
            page_size: None,
            track_changes: false,
            delta_token: None,
            annotations: Vec::new(),
            order_by: Vec::new(),
            apply: None,
            count: false,
        }
    }

    /// The entity set read, for an entity-set query.
    pub fn entity_set(&self) -> Option<&str> {
        match &self.resource {
            Resource::EntitySet(set) => Some(set),
            _ => None,
        }
    }

    /// The query options as a user reads them (EXPLAIN): not percent-encoded.
    pub fn display_query(&self) -> String {
        let filter = self.filter.as_ref().map(|f| f.to_string());
        self.render(filter.as_deref(), &|s| s.to_string())
    }

    /// The path and query relative to the API root, percent-encoded for sending; an error
    /// when a literal cannot be written exactly (the request is then never sent).
    pub fn relative_url(&self) -> Result<String, UnwritableLiteral> {
        let filter = self.filter.as_ref().map(Filter::to_odata).transpose()?;
        Ok(self.render(filter.as_deref(), &encode_component))
    }

    fn render(&self, filter: Option<&str>, encode: &dyn Fn(&str) -> String) -> String {
        let list = |names: &[String]| {
            let encoded: Vec<String> = names.iter().map(|s| encode(s)).collect();
            encoded.join(",")
        };
        let mut parts = Vec::new();
        if let Some(apply) = &self.apply {
            // The filter is the first transformation (Web API notes: "$apply syntax").
            let steps = match filter {
                Some(filter) => format!("filter({filter})/{apply}"),
                None => apply.to_string(),
            };
            parts.push(format!("$apply={}", encode(&steps)));
        } else if !self.select.is_empty() {
            parts.push(format!("$select={}", list(&self.select)));
        }
        if !self.expand.is_empty() {
            let expands: Vec<String> = self
                .expand
                .iter()
                .map(|e| {
                    format!(
                        "{}({})",
                        encode(&e.property),
                        select_option(&e.select, encode)
                    )
                })
                .collect();
            parts.push(format!("$expand={}", expands.join(",")));
        }
        if let Some(filter) = filter.filter(|_| self.apply.is_none()) {
            parts.push(format!("$filter={}", encode(filter)));
        }
        if !self.order_by.is_empty() {
            let keys: Vec<String> = self
                .order_by
                .iter()
                .map(|o| {
                    let direction = if o.descending { "desc" } else { "asc" };
                    format!(
                        "{}{}",
                        encode(&o.property),
                        encode(&format!(" {direction}"))
                    )
                })
                .collect();
            parts.push(format!("$orderby={}", keys.join(",")));
        }
        if let Some(top) = self.top {
            parts.push(format!("$top={top}"));
        }
        if self.count {
            parts.push("$count=true".into());
        }
        if let Some(token) = &self.delta_token {
            parts.push(format!("$deltatoken={}", encode(token)));
        }
        let path = self.resource.path(encode);
        if parts.is_empty() {
            path
        } else {
            format!("{path}?{}", parts.join("&"))
        }
    }

    /// The `Prefer` preferences: a page size unless `$top` already bounds the result.
    pub fn preferences(&self) -> Preferences {
        Preferences {
            // Current docs: with both, `$top` is ignored (Web API notes: "$top"), so
            // send only one of them.
            max_page_size: self.page_size.filter(|_| self.top.is_none()),
            include_annotations: self.annotations.clone(),
            track_changes: self.track_changes,
        }
    }
}

/// `$select=a,b` inside an `$expand`.
fn select_option(select: &[String], encode: &dyn Fn(&str) -> String) -> String {
    let names: Vec<String> = select.iter().map(|s| encode(s)).collect();
    format!("$select={}", names.join(","))
}

/// The `Prefer` preferences of one request (Web API notes: "Request and response headers").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preferences {
    /// `odata.maxpagesize`.
    pub max_page_size: Option<u32>,
    /// `odata.include-annotations`.
    pub include_annotations: Vec<Annotation>,
    /// `odata.track-changes`.
    pub track_changes: bool,
}

impl Preferences {
    /// The `Prefer` header value, if any preference is set.
    pub fn header(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.track_changes {
            parts.push("odata.track-changes".to_string());
        }
        if let Some(n) = self.max_page_size {
            parts.push(format!("odata.maxpagesize={n}"));
        }
        if !self.include_annotations.is_empty() {
            let names = annotation_list(&self.include_annotations);
            parts.push(format!("odata.include-annotations=\"{names}\""));
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set, so no character of a value
/// (`&`, `#`, `+`, `%`, `'`, …) can end a parameter or change its meaning.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odata::{CompareOp, Literal};

    #[test]
    fn urls_encode_every_reserved_character() {
        let q = ODataQuery {
            filter: Some(Filter::compare(
                "name",
                CompareOp::Eq,
                Literal::String("A&B #1 + 100%".into()),
            )),
            ..ODataQuery::new("accounts", vec!["name".into(), "accountid".into()], 5000)
        };
        assert_eq!(
            q.relative_url().unwrap(),
            "accounts?$select=name,accountid&$filter=name%20eq%20%27A%26B%20%231%20%2B%20100%25%27"
        );
        assert_eq!(
            q.display_query(),
            "accounts?$select=name,accountid&$filter=name eq 'A&B #1 + 100%'"
        );
        assert_eq!(q.preferences().max_page_size, Some(5000));
    }

    #[test]
    fn prefer_header_combines_preferences() {
        let p = Preferences {
            max_page_size: Some(100),
            include_annotations: vec![Annotation::FormattedValue, Annotation::LookupLogicalName],
            track_changes: true,
        };
        assert_eq!(
            p.header().unwrap(),
            "odata.track-changes,odata.maxpagesize=100,odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname\""
        );
        assert_eq!(Preferences::default().header(), None);
    }

    /// Metadata requests are built from the same model as data requests: a quote in a
    /// logical name is doubled inside the key and percent-encoded, never written raw.
    #[test]
    fn metadata_requests_escape_the_entity_key() {
        let mut q = ODataQuery::of(Resource::Attributes {
            entity: "o'brien".into(),
            cast: Some("PicklistAttributeMetadata".into()),
        });
        q.select = vec!["LogicalName".into()];
        q.expand = vec![Expand::new("OptionSet", &["Options"])];
        assert_eq!(
            q.relative_url().unwrap(),
            "EntityDefinitions(LogicalName='o%27%27brien')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)"
        );
        let list = ODataQuery {
            filter: Some(Filter::compare(
                "IsPrivate",
                CompareOp::Eq,
                Literal::Bool(false),
            )),
            ..ODataQuery::of(Resource::EntityDefinitions)
        };
        assert_eq!(
            list.relative_url().unwrap(),
            "EntityDefinitions?$filter=IsPrivate%20eq%20false"
        );
        assert_eq!(list.preferences().header(), None);
    }
}
