//! Metadata endpoints: the service document, `$metadata` (CSDL), and `EntityDefinitions` with
//! `$select`, `$filter`, `$expand=Attributes(...)`, typed attribute casts and option sets
//! (Web API notes: "Entity set names vs logical names; service document" to
//! "AttributeType values and JSON value shapes"). Metadata queries have no paging: `$orderby`,
//! `$top`, `$skip` and `$count` are refused with `0x80060888`
//! (Web API notes: "EntityDefinitions metadata endpoint").

use serde_json::{Map, Value as Json, json};

use crate::sim::error::ApiError;
use crate::sim::model::{AttrDef, AttrType, Behavior, EntityDef, Model, name_guid};
use crate::sim::odata::{CmpOp, Lit, Node, parse_filter, split_top_level};
use crate::sim::query::{Reply, WebRequest, Work};

fn label(text: &str) -> Json {
    let l = json!({"Label": text, "LanguageCode": 1033, "IsManaged": true});
    json!({"LocalizedLabels": [l.clone()], "UserLocalizedLabel": l})
}

fn entity_json(e: &EntityDef) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("MetadataId".into(), json!(e.metadata_id.to_string()));
    m.insert("LogicalName".into(), json!(e.logical_name));
    m.insert("SchemaName".into(), json!(e.display_name.replace(' ', "")));
    m.insert("EntitySetName".into(), json!(e.set_name));
    m.insert("LogicalCollectionName".into(), json!(e.set_name));
    m.insert("PrimaryIdAttribute".into(), json!(e.primary_id));
    m.insert("PrimaryNameAttribute".into(), json!(e.primary_name));
    m.insert(
        "PrimaryImageAttribute".into(),
        if e.attr("entityimage").is_some() {
            json!("entityimage")
        } else {
            Json::Null
        },
    );
    m.insert("ObjectTypeCode".into(), json!(e.otc));
    m.insert("IsCustomEntity".into(), json!(e.custom));
    m.insert("IsIntersect".into(), json!(false));
    m.insert("IsPrivate".into(), json!(false));
    m.insert("IsActivity".into(), json!(false));
    m.insert("IsLogicalEntity".into(), json!(false));
    m.insert("ChangeTrackingEnabled".into(), json!(e.change_tracking));
    m.insert(
        "CanChangeTrackingBeEnabled".into(),
        json!({"Value": true, "CanBeChanged": true, "ManagedPropertyLogicalName": "canchangetrackingbeenabled"}),
    );
    let ownership = if e.attr("ownerid").is_some() {
        "UserOwned"
    } else {
        "OrganizationOwned"
    };
    m.insert("OwnershipType".into(), json!(ownership));
    m.insert("TableType".into(), json!("Standard"));
    m.insert("DisplayName".into(), label(&e.display_name));
    m
}

fn options_json(o: &[(i32, &str)]) -> Json {
    Json::Array(
        o.iter()
            .map(|(v, l)| json!({"Value": v, "Label": label(l)}))
            .collect(),
    )
}

fn option_set(e: &EntityDef, a: &AttrDef) -> Json {
    let name = format!("{}_{}", e.logical_name, a.logical_name);
    let id = name_guid(&format!("optionset.{name}")).to_string();
    match &a.ty {
        AttrType::Boolean {
            true_label,
            false_label,
        } => json!({
            "MetadataId": id, "Name": name, "OptionSetType": "Boolean", "IsGlobal": false,
            "TrueOption": {"Value": 1, "Label": label(true_label)},
            "FalseOption": {"Value": 0, "Label": label(false_label)},
        }),
        ty => {
            let kind = match ty {
                AttrType::State(_) => "State",
                AttrType::Status(_) => "Status",
                _ => "Picklist",
            };
            json!({"MetadataId": id, "Name": name, "OptionSetType": kind, "IsGlobal": false,
                   "Options": options_json(ty.options().unwrap_or(&[]))})
        }
    }
}

/// Properties only present on the derived metadata type of an attribute.
fn derived(a: &AttrDef) -> Map<String, Json> {
    let mut m = Map::new();
    match &a.ty {
        AttrType::String { max_len, format } => {
            m.insert("MaxLength".into(), json!(max_len));
            m.insert("Format".into(), json!(format));
        }
        AttrType::Memo { max_len } => {
            m.insert("MaxLength".into(), json!(max_len));
            m.insert("Format".into(), json!("TextArea"));
        }
        AttrType::Integer { min, max } => {
            m.insert("MinValue".into(), json!(min));
            m.insert("MaxValue".into(), json!(max));
            m.insert("Format".into(), json!("None"));
        }
        AttrType::BigInt => {
            m.insert("MinValue".into(), json!(i64::MIN));
            m.insert("MaxValue".into(), json!(i64::MAX));
        }
        AttrType::Decimal { precision } => {
            m.insert("Precision".into(), json!(precision));
            m.insert("MinValue".into(), json!(-100_000_000_000i64));
            m.insert("MaxValue".into(), json!(100_000_000_000i64));
        }
        AttrType::Double { precision } => {
            m.insert("Precision".into(), json!(precision));
            m.insert("MinValue".into(), json!(-100_000_000_000.0));
            m.insert("MaxValue".into(), json!(100_000_000_000.0));
        }
        AttrType::Money { precision } => {
            m.insert("Precision".into(), json!(precision));
            m.insert("PrecisionSource".into(), json!(2));
            m.insert("MinValue".into(), json!(-922_337_203_685_477i64));
            m.insert("MaxValue".into(), json!(922_337_203_685_477i64));
            m.insert("IsBaseCurrency".into(), json!(false));
        }
        AttrType::DateTime(b) => {
            m.insert("DateTimeBehavior".into(), json!({"Value": b.name()}));
            let f = if *b == Behavior::DateOnly {
                "DateOnly"
            } else {
                "DateAndTime"
            };
            m.insert("Format".into(), json!(f));
        }
        AttrType::Lookup(t) | AttrType::Customer(t) | AttrType::Owner(t) => {
            m.insert("Targets".into(), json!(t));
        }
        AttrType::Picklist(_) | AttrType::MultiSelect(_) => {
            m.insert("DefaultFormValue".into(), json!(-1));
        }
        AttrType::Boolean { .. } => {
            m.insert("DefaultValue".into(), json!(false));
        }
        _ => {}
    }
    m
}

fn base(e: &EntityDef, a: &AttrDef, col: usize) -> Map<String, Json> {
    let mut m = Map::new();
    // Items of the base type carry no `@odata.type` (minimal metadata names only derived
    // types): a real listing has none on Uniqueidentifier keys and Virtual companions
    // (tests/conformance/metadata/account-attributes-value.json).
    let derived_type = a.ty.metadata_type();
    if !matches!(a.ty, AttrType::Uniqueidentifier) && derived_type != "AttributeMetadata" {
        m.insert(
            "@odata.type".into(),
            json!(format!("#Microsoft.Dynamics.CRM.{derived_type}")),
        );
    }
    m.insert("MetadataId".into(), json!(a.metadata_id.to_string()));
    m.insert("LogicalName".into(), json!(a.logical_name));
    m.insert("SchemaName".into(), json!(a.logical_name));
    m.insert("EntityLogicalName".into(), json!(e.logical_name));
    m.insert("ColumnNumber".into(), json!(col + 1));
    m.insert("AttributeType".into(), json!(a.ty.type_code()));
    m.insert(
        "AttributeTypeName".into(),
        json!({"Value": a.ty.type_name()}),
    );
    m.insert("AttributeOf".into(), json!(a.attribute_of));
    m.insert("IsValidODataAttribute".into(), json!(a.is_odata()));
    m.insert("IsValidForRead".into(), json!(true));
    m.insert("IsRetrievable".into(), json!(true));
    m.insert("IsFilterable".into(), json!(a.is_odata()));
    m.insert("IsPrimaryId".into(), json!(a.primary_id));
    m.insert("IsPrimaryName".into(), json!(a.primary_name));
    m.insert("IsCustomAttribute".into(), json!(a.custom));
    m.insert("IsLogical".into(), json!(a.attribute_of.is_some()));
    m.insert("IsSecured".into(), json!(false));
    m.insert("SourceType".into(), json!(0));
    m.insert("RequiredLevel".into(), json!({"Value": if a.primary_id { "SystemRequired" } else { "None" }, "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"}));
    m.insert("DisplayName".into(), label(&a.display_name));
    m
}

/// Options of a nested or top-level metadata query.
#[derive(Default, Debug)]
struct Opts {
    select: Option<Vec<String>>,
    filter: Option<String>,
    expand: Vec<(String, String)>,
}

fn parse_opts(pairs: &[(String, String)], top: bool) -> Result<Opts, ApiError> {
    let mut o = Opts::default();
    for (k, v) in pairs {
        match k.as_str() {
            "$select" => {
                o.select = Some(
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                )
            }
            "$filter" => o.filter = Some(v.clone()),
            "$expand" => {
                for item in split_top_level(v, ',') {
                    let item = item.trim();
                    match item.find('(') {
                        Some(p) if item.ends_with(')') => o.expand.push((
                            item[..p].to_string(),
                            item[p + 1..item.len() - 1].to_string(),
                        )),
                        _ => o.expand.push((item.to_string(), String::new())),
                    }
                }
            }
            k if k.starts_with('$') => {
                return Err(ApiError::not_supported(format!(
                    "The query parameter {k} is not supported"
                )));
            }
            _ if top => {}
            k => {
                return Err(ApiError::not_supported(format!(
                    "The query option {k} is not supported in $expand"
                )));
            }
        }
    }
    Ok(o)
}

fn nested_pairs(text: &str) -> Vec<(String, String)> {
    split_top_level(text, ';')
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.to_string()),
            None => (s.trim().to_string(), String::new()),
        })
        .collect()
}

/// Evaluates a metadata `$filter` over an item's JSON (equality and order on primitive and
/// enum properties, `X/Value` for managed properties).
fn eval(node: &Node, item: &Map<String, Json>, type_name: &str) -> Result<Option<bool>, ApiError> {
    Ok(match node {
        Node::And(a, b) => match (eval(a, item, type_name)?, eval(b, item, type_name)?) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Node::Or(a, b) => match (eval(a, item, type_name)?, eval(b, item, type_name)?) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Node::Not(a) => eval(a, item, type_name)?.map(|b| !b),
        Node::Cmp(op, l, r) => {
            let (path, lit, op) = match (&**l, &**r) {
                (Node::Prop(p), Node::Lit(x)) => (p, x, *op),
                (Node::Lit(x), Node::Prop(p)) => (p, x, *op),
                _ => {
                    return Err(ApiError::not_supported(
                        "Only property-to-literal comparisons are supported on metadata.",
                    ));
                }
            };
            let mut parts = path.split('/');
            let first = parts.next().unwrap_or_default();
            let mut v = item.get(first).ok_or_else(|| {
                ApiError::bad_request("0x0", format!("Could not find a property named '{first}' on type 'Microsoft.Dynamics.CRM.{type_name}'."))
            })?;
            for p in parts {
                v = v.get(p).unwrap_or(&Json::Null);
            }
            let lit_json = match lit {
                Lit::Null => Json::Null,
                Lit::Bool(b) => json!(b),
                Lit::Num(n) => n.parse::<f64>().map(|f| json!(f)).unwrap_or(Json::Null),
                Lit::Str(s) | Lit::Enum(s) => json!(s),
                Lit::Guid(g) => json!(g.to_string()),
                _ => {
                    return Err(ApiError::not_supported(
                        "Unsupported literal in a metadata filter.",
                    ));
                }
            };
            let ord = match (v, &lit_json) {
                (Json::Number(a), Json::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
                (Json::String(a), Json::String(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
                (a, b) if a == b => Some(std::cmp::Ordering::Equal),
                _ => None,
            };
            Some(match (op, ord) {
                (CmpOp::Eq, o) => o == Some(std::cmp::Ordering::Equal),
                (CmpOp::Ne, o) => o != Some(std::cmp::Ordering::Equal),
                (_, None) => return Ok(None),
                (CmpOp::Gt, Some(o)) => o.is_gt(),
                (CmpOp::Ge, Some(o)) => o.is_ge(),
                (CmpOp::Lt, Some(o)) => o.is_lt(),
                (CmpOp::Le, Some(o)) => o.is_le(),
            })
        }
        _ => {
            return Err(ApiError::not_supported(
                "Unsupported expression in a metadata filter.",
            ));
        }
    })
}

fn apply_select(
    mut item: Map<String, Json>,
    select: &Option<Vec<String>>,
    allowed: &Map<String, Json>,
    type_name: &str,
) -> Result<Map<String, Json>, ApiError> {
    let Some(sel) = select else { return Ok(item) };
    for s in sel {
        if !allowed.contains_key(s) {
            return Err(ApiError::bad_request(
                "0x0",
                format!(
                    "Could not find a property named '{s}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
                ),
            ));
        }
    }
    item.retain(|k, _| k == "MetadataId" || k == "@odata.type" || sel.contains(k));
    Ok(item)
}

/// Attribute list of an entity, optionally restricted to one derived type (cast segment).
fn attributes(e: &EntityDef, cast: Option<&str>, o: &Opts) -> Result<Vec<Json>, ApiError> {
    let type_name = cast.unwrap_or("AttributeMetadata");
    let filter = match &o.filter {
        Some(f) => Some(parse_filter(f)?),
        None => None,
    };
    let mut out = Vec::new();
    for (i, a) in e.attrs.iter().enumerate() {
        if cast.is_some_and(|c| a.ty.metadata_type() != c) {
            continue;
        }
        let b = base(e, a, i);
        let d = derived(a);
        let mut full = b.clone();
        full.extend(d.clone());
        // On the base collection only base properties can be selected
        // (Web API notes: "EntityDefinitions metadata endpoint"; casts are needed for type-specific
        // properties).
        let mut allowed = b;
        if cast.is_some() {
            allowed.extend(d);
        } else {
            for k in [
                "Precision",
                "MaxLength",
                "DateTimeBehavior",
                "Format",
                "Targets",
                "MinValue",
                "MaxValue",
                "OptionSet",
            ] {
                allowed.remove(k);
            }
        }
        if let Some(f) = &filter
            && eval(f, &full, type_name)? != Some(true)
        {
            continue;
        }
        let mut item = apply_select(full, &o.select, &allowed, type_name)?;
        for (nav, nested) in &o.expand {
            match nav.as_str() {
                "OptionSet" | "GlobalOptionSet" if cast.is_some_and(has_option_sets) => {
                    item.insert(nav.clone(), expand_option_set(e, a, nav, nested)?);
                }
                other => {
                    return Err(ApiError::bad_request(
                        "0x0",
                        format!(
                            "Could not find a property named '{other}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
                        ),
                    ));
                }
            }
        }
        out.push(Json::Object(item));
    }
    Ok(out)
}

/// Whether attributes of a metadata type have the `OptionSet` and `GlobalOptionSet`
/// navigation properties: the concrete choice types (derived from `EnumAttributeMetadata`)
/// and `BooleanAttributeMetadata`.
fn has_option_sets(type_name: &str) -> bool {
    matches!(
        type_name,
        "PicklistAttributeMetadata"
            | "StateAttributeMetadata"
            | "StatusAttributeMetadata"
            | "MultiSelectPicklistAttributeMetadata"
            | "EntityNameAttributeMetadata"
            | "BooleanAttributeMetadata"
    )
}

/// One expanded option set with its nested `$select` applied. The navigation's type is
/// `BooleanOptionSetMetadata` (TrueOption, FalseOption) for two-option columns and
/// `OptionSetMetadata` (Options) otherwise, so selecting `Options` of a Boolean column is an
/// unknown property, as on a real environment. The simulator binds no column to a global
/// option set: `GlobalOptionSet` is null, its `$select` still checked.
fn expand_option_set(
    e: &EntityDef,
    a: &AttrDef,
    nav: &str,
    nested: &str,
) -> Result<Json, ApiError> {
    let set_type = match a.ty {
        AttrType::Boolean { .. } => "BooleanOptionSetMetadata",
        _ => "OptionSetMetadata",
    };
    let full = option_set(e, a).as_object().cloned().unwrap_or_default();
    let nested = parse_opts(&nested_pairs(nested), false)?;
    let selected = apply_select(full.clone(), &nested.select, &full, set_type)?;
    Ok(match nav {
        "OptionSet" => Json::Object(selected),
        _ => Json::Null,
    })
}

fn entity_item(e: &EntityDef, o: &Opts) -> Result<Map<String, Json>, ApiError> {
    let full = entity_json(e);
    let mut item = apply_select(full.clone(), &o.select, &full, "EntityMetadata")?;
    for (nav, nested) in &o.expand {
        if nav != "Attributes" {
            return Err(ApiError::bad_request(
                "0x0",
                format!(
                    "Could not find a property named '{nav}' on type 'Microsoft.Dynamics.CRM.EntityMetadata'."
                ),
            ));
        }
        let no = parse_opts(&nested_pairs(nested), false)?;
        item.insert("Attributes".into(), Json::Array(attributes(e, None, &no)?));
    }
    Ok(item)
}

fn reply(v: Json) -> Reply {
    let body = serde_json::to_vec(&v).unwrap_or_default();
    let rows = v
        .get("value")
        .and_then(|x| x.as_array())
        .map(|a| a.len())
        .unwrap_or(1);
    Reply::json(body, rows)
}

fn find_entity<'m>(model: &'m Model, key: &str) -> Result<&'m EntityDef, ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "0x80040217",
            format!("Could not find entity with key {key}."),
        )
    };
    if let Some(name) = key
        .strip_prefix("LogicalName='")
        .and_then(|s| s.strip_suffix('\''))
    {
        return model
            .entities
            .iter()
            .find(|e| e.logical_name == name)
            .ok_or_else(not_found);
    }
    let id: uuid::Uuid = key.parse().map_err(|_| not_found())?;
    model
        .entities
        .iter()
        .find(|e| e.metadata_id == id)
        .ok_or_else(not_found)
}

/// Serves `EntityDefinitions…` (path after the API root, decoded).
pub(crate) fn entity_definitions(
    model: &Model,
    path: &str,
    req: &WebRequest,
) -> Result<Reply, ApiError> {
    for k in ["$orderby", "$top", "$skip", "$count"] {
        if req.param(k).is_some() {
            return Err(ApiError::not_supported(format!(
                "The query parameter {k} is not supported"
            )));
        }
    }
    let o = parse_opts(&req.params, true)?;
    let ctx = |s: &str| format!("{}$metadata#{s}", req.api_base);
    let rest = path.strip_prefix("EntityDefinitions").unwrap_or_default();
    if rest.is_empty() {
        let filter = match &o.filter {
            Some(f) => Some(parse_filter(f)?),
            None => None,
        };
        let mut items = Vec::new();
        for e in &model.entities {
            if let Some(f) = &filter
                && eval(f, &entity_json(e), "EntityMetadata")? != Some(true)
            {
                continue;
            }
            items.push(Json::Object(entity_item(e, &o)?));
        }
        return Ok(reply(
            json!({"@odata.context": ctx("EntityDefinitions"), "value": items}),
        ));
    }
    let close = rest
        .find(')')
        .ok_or_else(|| ApiError::segment_not_found(path))?;
    let key = rest
        .get(1..close)
        .ok_or_else(|| ApiError::segment_not_found(path))?;
    let e = find_entity(model, key)?;
    let tail = &rest[close + 1..];
    if tail.is_empty() {
        let mut item = entity_item(e, &o)?;
        item.insert(
            "@odata.context".into(),
            json!(ctx("EntityDefinitions/$entity")),
        );
        return Ok(reply(Json::Object(item)));
    }
    let tail = tail
        .strip_prefix("/Attributes")
        .ok_or_else(|| ApiError::segment_not_found(tail.trim_start_matches('/')))?;
    if let Some(k) = tail
        .strip_prefix("(LogicalName='")
        .and_then(|s| s.strip_suffix("')"))
    {
        let a = e.attr(k).ok_or_else(|| {
            ApiError::new(404, "0x80040217", format!("Could not find attribute {k}."))
        })?;
        let all = attributes(
            e,
            Some(a.ty.metadata_type()),
            &Opts {
                select: o.select.clone(),
                filter: None,
                expand: o.expand.clone(),
            },
        )?;
        let item = all
            .into_iter()
            .find(|x| x.get("LogicalName") == Some(&json!(k)))
            .ok_or_else(|| {
                ApiError::new(404, "0x80040217", format!("Could not find attribute {k}."))
            })?;
        return Ok(reply(item));
    }
    let cast = match tail.strip_prefix("/Microsoft.Dynamics.CRM.") {
        Some(c) => {
            const KNOWN: &[&str] = &[
                "StringAttributeMetadata",
                "MemoAttributeMetadata",
                "IntegerAttributeMetadata",
                "BigIntAttributeMetadata",
                "DecimalAttributeMetadata",
                "DoubleAttributeMetadata",
                "MoneyAttributeMetadata",
                "BooleanAttributeMetadata",
                "DateTimeAttributeMetadata",
                "PicklistAttributeMetadata",
                "StateAttributeMetadata",
                "StatusAttributeMetadata",
                "MultiSelectPicklistAttributeMetadata",
                "LookupAttributeMetadata",
                "UniqueIdentifierAttributeMetadata",
                "ImageAttributeMetadata",
                "EntityNameAttributeMetadata",
            ];
            // The abstract base of the choice types is in the CSDL but cannot be cast to:
            // real environments answer 500 (Web API notes: "EntityDefinitions metadata endpoint").
            if c == "EnumAttributeMetadata" {
                return Err(ApiError::unexpected_attribute_type(c));
            }
            if !KNOWN.contains(&c) {
                return Err(ApiError::segment_not_found(&format!(
                    "Microsoft.Dynamics.CRM.{c}"
                )));
            }
            Some(c)
        }
        None if tail.is_empty() => None,
        None => return Err(ApiError::segment_not_found(tail.trim_start_matches('/'))),
    };
    let items = attributes(e, cast, &o)?;
    Ok(reply(
        json!({"@odata.context": ctx(&format!("EntityDefinitions('{}')/Attributes", e.metadata_id)), "value": items}),
    ))
}

/// The service document (Web API notes: "Entity set names vs logical names; service document").
pub(crate) fn service_document(model: &Model, req: &WebRequest) -> Reply {
    let mut value: Vec<Json> = model
        .entities
        .iter()
        .map(|e| json!({"name": e.set_name, "kind": "EntitySet", "url": e.set_name}))
        .collect();
    value.push(
        json!({"name": "EntityDefinitions", "kind": "EntitySet", "url": "EntityDefinitions"}),
    );
    value.push(json!({"name": "WhoAmI", "kind": "FunctionImport", "url": "WhoAmI"}));
    value.push(json!({"name": "RetrieveTotalRecordCount", "kind": "FunctionImport", "url": "RetrieveTotalRecordCount"}));
    reply(json!({"@odata.context": format!("{}$metadata", req.api_base), "value": value}))
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// CSDL generated from the model (Web API notes: "$metadata (CSDL)"): lookups as `_x_value`
/// Edm.Guid plus navigation properties, the ChangeTracking capability on tracked entity sets.
pub(crate) fn csdl(model: &Model) -> Reply {
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:Reference Uri="http://vocabularies.odata.org/OData.Capabilities.V1.xml"><edmx:Include Namespace="Org.OData.Capabilities.V1" Alias="Capabilities"/></edmx:Reference><edmx:DataServices><Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">"#,
    );
    x.push_str(r#"<EntityType Name="crmbaseentity" Abstract="true"/><EntityType Name="principal" BaseType="mscrm.crmbaseentity" Abstract="true"><Key><PropertyRef Name="ownerid"/></Key><Property Name="ownerid" Type="Edm.Guid"/></EntityType>"#);
    for e in &model.entities {
        x.push_str(&format!(r#"<EntityType Name="{}" BaseType="mscrm.crmbaseentity"><Key><PropertyRef Name="{}"/></Key>"#, e.logical_name, e.primary_id));
        for a in e.attrs.iter().filter(|a| a.is_odata()) {
            let extra = match a.ty {
                AttrType::Money { .. } => r#" Scale="Variable""#,
                _ => "",
            };
            x.push_str(&format!(
                r#"<Property Name="{}" Type="{}"{extra}/>"#,
                xml_attr(&a.odata_name()),
                a.ty.edm_type()
            ));
        }
        for a in e.attrs.iter().filter(|a| a.is_odata()) {
            if let Some(targets) = a.ty.targets() {
                for t in targets {
                    let nav = if targets.len() > 1 && !matches!(a.ty, AttrType::Owner(_)) {
                        format!("{}_{}", a.logical_name, t)
                    } else {
                        a.logical_name.clone()
                    };
                    let target_pk = format!("{t}id");
                    x.push_str(&format!(r#"<NavigationProperty Name="{nav}" Type="mscrm.{t}" Nullable="false"><ReferentialConstraint Property="{}" ReferencedProperty="{target_pk}"/></NavigationProperty>"#, a.odata_name()));
                    if matches!(a.ty, AttrType::Owner(_)) {
                        break;
                    }
                }
            }
        }
        x.push_str("</EntityType>");
    }
    x.push_str(r#"<ComplexType Name="WhoAmIResponse"><Property Name="BusinessUnitId" Type="Edm.Guid" Nullable="false"/><Property Name="UserId" Type="Edm.Guid" Nullable="false"/><Property Name="OrganizationId" Type="Edm.Guid" Nullable="false"/></ComplexType>"#);
    x.push_str(r#"<Function Name="WhoAmI"><ReturnType Type="mscrm.WhoAmIResponse" Nullable="false"/></Function><Function Name="RetrieveTotalRecordCount"><Parameter Name="EntityNames" Type="Collection(Edm.String)" Nullable="false"/><ReturnType Type="mscrm.RetrieveTotalRecordCountResponse" Nullable="false"/></Function>"#);
    x.push_str(r#"<EntityContainer Name="System">"#);
    for e in &model.entities {
        x.push_str(&format!(
            r#"<EntitySet Name="{}" EntityType="Microsoft.Dynamics.CRM.{}">"#,
            e.set_name, e.logical_name
        ));
        if e.change_tracking {
            x.push_str(r#"<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record><PropertyValue Property="Supported" Bool="true"/></Record></Annotation>"#);
        }
        x.push_str("</EntitySet>");
    }
    x.push_str(r#"<FunctionImport Name="WhoAmI" Function="Microsoft.Dynamics.CRM.WhoAmI"/><FunctionImport Name="RetrieveTotalRecordCount" Function="Microsoft.Dynamics.CRM.RetrieveTotalRecordCount"/></EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"#);
    Reply {
        status: 200,
        content_type: "application/xml",
        body: x.into_bytes(),
        headers: Vec::new(),
        rows: 0,
        work: Work::default(),
    }
}
