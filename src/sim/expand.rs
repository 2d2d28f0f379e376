//! `$expand` of single-valued navigation properties, the lookups (Web API notes: "$expand"):
//! `$expand=primarycontactid($select=fullname),createdby($select=fullname)` nests the related
//! row in each result row as `"primarycontactid":{"fullname":"…","contactid":"…"}`, or `null`.
//!
//! * A lookup's navigation property is its logical name; a polymorphic lookup other than an
//!   owner has one typed navigation per target (`parentcustomerid_account`), which is `null`
//!   when the row points to the other table. An owner's `ownerid` holds a user or a team and
//!   says which with `@odata.type` **[inf: OData minimal metadata for a derived type]**.
//! * The nested object holds the selected properties, then the related row's primary key,
//!   and for users and teams also `ownerid` (they inherit it from `principal`), as the
//!   published example shows.
//! * Options inside: `$select` only (`$filter`, `$orderby`, `$top` apply to collection-valued
//!   navigation properties, which the simulator does not model); at most 15 expansions.

use crate::sim::data::{Row, Store};
use crate::sim::error::ApiError;
use crate::sim::filter::cell;
use crate::sim::model::{AttrDef, AttrType, EntityDef, Model};
use crate::sim::render::{json_str, write_value};
use crate::sim::value::Value;

/// `$expand` options allowed in one query (Web API notes: "Limits summary").
const MAX_EXPANSIONS: usize = 15;

/// One expanded lookup of a request.
#[derive(Clone, Debug)]
pub(crate) struct Expansion {
    /// The navigation property, as requested.
    nav: String,
    /// The lookup attribute followed (index into the entity's attributes).
    attr: usize,
    /// The one target a typed navigation follows; `None`: whichever the value points to.
    target: Option<usize>,
    /// The related row's properties to return; `None`: all of them.
    select: Option<Vec<String>>,
    /// The navigation can lead to several tables (an owner): the row says which.
    writes_type: bool,
}

/// The navigation properties of a lookup attribute: (name, the target it is typed to).
fn navigations(model: &Model, a: &AttrDef) -> Vec<(String, Option<usize>)> {
    let Some(targets) = a.ty.targets() else {
        return Vec::new();
    };
    if targets.len() > 1 && !matches!(a.ty, AttrType::Owner(_)) {
        targets
            .iter()
            .map(|t| (format!("{}_{t}", a.logical_name), model.by_logical(t)))
            .collect()
    } else {
        vec![(a.logical_name.clone(), None)]
    }
}

/// Parses and checks the request's `$expand` against `entity`.
pub(crate) fn parse_expand(
    model: &Model,
    entity: &EntityDef,
    text: Option<&str>,
) -> Result<Vec<Expansion>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let items = split_top_level(text, ',');
    if items.len() > MAX_EXPANSIONS {
        return Err(ApiError::bad_request(
            "0x80060888",
            format!("The number of $expand options exceeds the limit of {MAX_EXPANSIONS}."),
        ));
    }
    items
        .iter()
        .map(|item| parse_item(model, entity, item.trim()))
        .collect()
}

fn parse_item(model: &Model, entity: &EntityDef, item: &str) -> Result<Expansion, ApiError> {
    let (nav, options) = match item.split_once('(') {
        Some((nav, rest)) => {
            let inner = rest.strip_suffix(')').ok_or_else(|| {
                ApiError::bad_request(
                    "0x80060888",
                    format!("Syntax error in $expand at '{item}'."),
                )
            })?;
            (nav.trim(), inner)
        }
        None => (item, ""),
    };
    if nav.ends_with("/$ref") {
        return Err(ApiError::not_supported(
            "$expand with $ref is not supported by the simulator",
        ));
    }
    let (attr, target) = entity
        .attrs
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_odata())
        .find_map(|(i, a)| {
            let typed = navigations(model, a).into_iter().find(|(n, _)| n == nav)?;
            Some((i, typed.1))
        })
        .ok_or_else(|| ApiError::unknown_property(nav, &entity.logical_name))?;
    let mut select = None;
    for option in split_top_level(options, ';') {
        let option = option.trim();
        if option.is_empty() {
            continue;
        }
        match option.split_once('=') {
            Some(("$select", list)) => {
                let names: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
                check_properties(model, &entity.attrs[attr], target, &names)?;
                select = Some(names);
            }
            _ => {
                return Err(ApiError::not_supported(format!(
                    "The query option '{option}' is not supported in the $expand of the \
                     single-valued navigation property '{nav}'."
                )));
            }
        }
    }
    let targets = entity.attrs[attr].ty.targets().map_or(0, <[_]>::len);
    Ok(Expansion {
        nav: nav.to_string(),
        attr,
        target,
        select,
        writes_type: target.is_none() && targets > 1,
    })
}

/// Every name must be a property of a table the navigation can lead to.
fn check_properties(
    model: &Model,
    lookup: &AttrDef,
    target: Option<usize>,
    names: &[String],
) -> Result<(), ApiError> {
    let tables: Vec<&EntityDef> = match target {
        Some(t) => vec![&model.entities[t]],
        None => lookup
            .ty
            .targets()
            .unwrap_or_default()
            .iter()
            .filter_map(|t| model.by_logical(t))
            .map(|t| &model.entities[t])
            .collect(),
    };
    for name in names {
        if !tables.iter().any(|t| t.by_odata.contains_key(name)) {
            let on = tables.first().map_or("crmbaseentity", |t| &t.logical_name);
            return Err(ApiError::unknown_property(name, on));
        }
    }
    Ok(())
}

/// `text` split on `separator` outside parentheses.
fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

/// The expansions in `@odata.context`'s column list: `primarycontactid(fullname)`.
pub(crate) fn context_items(expansions: &[Expansion]) -> Vec<String> {
    expansions
        .iter()
        .map(|e| {
            let select = e.select.as_ref().map(|s| s.join(",")).unwrap_or_default();
            format!("{}({select})", e.nav)
        })
        .collect()
}

/// Appends each expansion of `row` (`,"nav":{…}` or `,"nav":null`) to a row object.
pub(crate) fn write_expansions(
    buf: &mut Vec<u8>,
    model: &Model,
    store: &Store,
    entity: &EntityDef,
    expansions: &[Expansion],
    row: &Row,
) {
    for e in expansions {
        buf.push(b',');
        json_str(buf, &e.nav);
        buf.push(b':');
        match related(store, entity, e, row) {
            Some((target, related)) => write_related(buf, model, e, target, related),
            None => buf.extend_from_slice(b"null"),
        }
    }
}

/// The row an expansion leads to, with its table.
fn related<'s>(
    store: &'s Store,
    entity: &EntityDef,
    e: &Expansion,
    row: &Row,
) -> Option<(usize, &'s Row)> {
    let Value::Lookup(id, target) = &*cell(row, entity.attrs[e.attr].storage) else {
        return None;
    };
    let target = *target as usize;
    if e.target.is_some_and(|t| t != target) {
        return None;
    }
    let table = &store.tables[target];
    Some((target, &table.rows[table.find(id)?]))
}

/// The nested object of one related row.
fn write_related(buf: &mut Vec<u8>, model: &Model, e: &Expansion, target: usize, row: &Row) {
    let def = &model.entities[target];
    let principal = matches!(def.logical_name.as_str(), "systemuser" | "team");
    let mut first = true;
    let mut member = |buf: &mut Vec<u8>, name: &str| {
        buf.push(if first { b'{' } else { b',' });
        first = false;
        json_str(buf, name);
        buf.push(b':');
    };
    if e.writes_type {
        member(buf, "@odata.type");
        json_str(
            buf,
            &format!("#Microsoft.Dynamics.CRM.{}", def.logical_name),
        );
    }
    for a in selected(def, e.select.as_deref()) {
        member(buf, &a.odata_name());
        write_value(buf, &cell(row, a.storage), &a.ty);
    }
    let key = def.attr(&def.primary_id).map(|a| cell(row, a.storage));
    if let Some(key) = key {
        member(buf, &def.primary_id);
        write_value(buf, &key, &AttrType::Uniqueidentifier);
        if principal {
            member(buf, "ownerid");
            write_value(buf, &key, &AttrType::Uniqueidentifier);
        }
    }
    if first {
        buf.push(b'{');
    }
    buf.push(b'}');
}

/// The properties of `def` an expansion returns besides the key: those selected that `def`
/// has (an owner's selection names both tables' properties), or all of them.
fn selected<'d>(def: &'d EntityDef, select: Option<&[String]>) -> Vec<&'d AttrDef> {
    let returned = |a: &&AttrDef| a.is_odata() && !a.primary_id;
    match select {
        Some(names) => names
            .iter()
            .filter_map(|n| def.odata_attr(n))
            .filter(returned)
            .collect(),
        None => def.attrs.iter().filter(returned).collect(),
    }
}
