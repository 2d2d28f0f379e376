//! Entity and attribute definitions of the simulated organization.
//!
//! The model mirrors what `EntityDefinitions` reports for real tables
//! (Web API notes: "EntityDefinitions metadata endpoint" to
//! "AttributeType values and JSON value shapes"): each stored column has an `AttributeType`;
//! lookups are OData properties only as `_x_value` (Web API notes: "$metadata (CSDL)"); and the
//! `AttributeOf` companions (`<choice>name`, `<lookup>name`, `<polymorphic lookup>type`) and
//! virtual attributes exist in metadata but are not OData properties (`IsValidODataAttribute`
//! false).

use std::collections::HashMap;

use uuid::Uuid;

/// Option values and labels of a choice column.
type Options = &'static [(i32, &'static str)];

/// `DateTimeBehavior` of a DateTime column (Web API notes: "DateTime behaviours").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behavior {
    /// Stored in UTC, returned with `Z`.
    UserLocal,
    /// `Edm.Date`, no time part.
    DateOnly,
    /// Returned with `Z` although not UTC.
    TimeZoneIndependent,
}

impl Behavior {
    /// Name as serialized in metadata.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Behavior::UserLocal => "UserLocal",
            Behavior::DateOnly => "DateOnly",
            Behavior::TimeZoneIndependent => "TimeZoneIndependent",
        }
    }
}

/// Attribute types (the `AttributeTypeCode` enum plus the Virtual sub-kinds).
#[derive(Clone, Debug)]
pub(crate) enum AttrType {
    /// Single-line text.
    String {
        /// MaxLength.
        max_len: u32,
        /// Format (Text, Email, Url, Phone).
        format: &'static str,
    },
    /// Multi-line text.
    Memo {
        /// MaxLength.
        max_len: u32,
    },
    /// Int32.
    Integer {
        /// MinValue.
        min: i32,
        /// MaxValue.
        max: i32,
    },
    /// Int64 (e.g. versionnumber).
    BigInt,
    /// Decimal with `precision` fractional digits.
    Decimal {
        /// Precision (scale) 0–10.
        precision: u8,
    },
    /// Float.
    Double {
        /// Precision 0–5.
        precision: u8,
    },
    /// Currency; stored with 4 decimals.
    Money {
        /// Display precision.
        precision: u8,
    },
    /// Two options.
    Boolean {
        /// Label of `true`.
        true_label: &'static str,
        /// Label of `false`.
        false_label: &'static str,
    },
    /// Date and time.
    DateTime(Behavior),
    /// Choice.
    Picklist(Options),
    /// statecode.
    State(Options),
    /// statuscode.
    Status(Options),
    /// Multi-select choice (AttributeType Virtual).
    MultiSelect(Options),
    /// Lookup to one table.
    Lookup(&'static [&'static str]),
    /// Customer lookup (account or contact).
    Customer(&'static [&'static str]),
    /// Owner lookup (systemuser or team).
    Owner(&'static [&'static str]),
    /// GUID.
    Uniqueidentifier,
    /// A virtual attribute with the given AttributeTypeName (`ImageType`, `VirtualType`).
    Virtual(&'static str),
    /// EntityName companion (`owneridtype`).
    EntityName,
}

impl AttrType {
    /// `AttributeType` enum name.
    pub(crate) fn type_code(&self) -> &'static str {
        match self {
            AttrType::String { .. } => "String",
            AttrType::Memo { .. } => "Memo",
            AttrType::Integer { .. } => "Integer",
            AttrType::BigInt => "BigInt",
            AttrType::Decimal { .. } => "Decimal",
            AttrType::Double { .. } => "Double",
            AttrType::Money { .. } => "Money",
            AttrType::Boolean { .. } => "Boolean",
            AttrType::DateTime(_) => "DateTime",
            AttrType::Picklist(_) => "Picklist",
            AttrType::State(_) => "State",
            AttrType::Status(_) => "Status",
            AttrType::MultiSelect(_) | AttrType::Virtual(_) => "Virtual",
            AttrType::Lookup(_) => "Lookup",
            AttrType::Customer(_) => "Customer",
            AttrType::Owner(_) => "Owner",
            AttrType::Uniqueidentifier => "Uniqueidentifier",
            AttrType::EntityName => "EntityName",
        }
    }

    /// `AttributeTypeName.Value`.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            AttrType::MultiSelect(_) => "MultiSelectPicklistType",
            AttrType::Virtual(n) => n,
            other => match other.type_code() {
                "String" => "StringType",
                "Memo" => "MemoType",
                "Integer" => "IntegerType",
                "BigInt" => "BigIntType",
                "Decimal" => "DecimalType",
                "Double" => "DoubleType",
                "Money" => "MoneyType",
                "Boolean" => "BooleanType",
                "DateTime" => "DateTimeType",
                "Picklist" => "PicklistType",
                "State" => "StateType",
                "Status" => "StatusType",
                "Lookup" => "LookupType",
                "Customer" => "CustomerType",
                "Owner" => "OwnerType",
                "Uniqueidentifier" => "UniqueidentifierType",
                _ => "EntityNameType",
            },
        }
    }

    /// Metadata derived type (`@odata.type` without the `#Microsoft.Dynamics.CRM.` prefix).
    pub(crate) fn metadata_type(&self) -> &'static str {
        match self {
            AttrType::String { .. } => "StringAttributeMetadata",
            AttrType::Memo { .. } => "MemoAttributeMetadata",
            AttrType::Integer { .. } => "IntegerAttributeMetadata",
            AttrType::BigInt => "BigIntAttributeMetadata",
            AttrType::Decimal { .. } => "DecimalAttributeMetadata",
            AttrType::Double { .. } => "DoubleAttributeMetadata",
            AttrType::Money { .. } => "MoneyAttributeMetadata",
            AttrType::Boolean { .. } => "BooleanAttributeMetadata",
            AttrType::DateTime(_) => "DateTimeAttributeMetadata",
            AttrType::Picklist(_) => "PicklistAttributeMetadata",
            AttrType::State(_) => "StateAttributeMetadata",
            AttrType::Status(_) => "StatusAttributeMetadata",
            AttrType::MultiSelect(_) => "MultiSelectPicklistAttributeMetadata",
            AttrType::Lookup(_) | AttrType::Customer(_) | AttrType::Owner(_) => {
                "LookupAttributeMetadata"
            }
            AttrType::Uniqueidentifier => "UniqueIdentifierAttributeMetadata",
            AttrType::Virtual("ImageType") => "ImageAttributeMetadata",
            AttrType::Virtual(_) => "AttributeMetadata",
            AttrType::EntityName => "EntityNameAttributeMetadata",
        }
    }

    /// CSDL type of the OData property.
    pub(crate) fn edm_type(&self) -> &'static str {
        match self {
            AttrType::String { .. } | AttrType::Memo { .. } | AttrType::MultiSelect(_) => {
                "Edm.String"
            }
            AttrType::Integer { .. }
            | AttrType::Picklist(_)
            | AttrType::State(_)
            | AttrType::Status(_) => "Edm.Int32",
            AttrType::BigInt => "Edm.Int64",
            AttrType::Decimal { .. } | AttrType::Money { .. } => "Edm.Decimal",
            AttrType::Double { .. } => "Edm.Double",
            AttrType::Boolean { .. } => "Edm.Boolean",
            AttrType::DateTime(Behavior::DateOnly) => "Edm.Date",
            AttrType::DateTime(_) => "Edm.DateTimeOffset",
            AttrType::Lookup(_)
            | AttrType::Customer(_)
            | AttrType::Owner(_)
            | AttrType::Uniqueidentifier => "Edm.Guid",
            AttrType::Virtual(_) => "Edm.Binary",
            AttrType::EntityName => "Edm.String",
        }
    }

    /// Stored scale of Decimal (its precision) and Money (always 4) values.
    pub(crate) fn scale(&self) -> u8 {
        match self {
            AttrType::Decimal { precision } => *precision,
            AttrType::Money { .. } => 4,
            _ => 0,
        }
    }

    /// Lookup targets, if this is a lookup kind.
    pub(crate) fn targets(&self) -> Option<&'static [&'static str]> {
        match self {
            AttrType::Lookup(t) | AttrType::Customer(t) | AttrType::Owner(t) => Some(t),
            _ => None,
        }
    }

    /// Option set of a choice-like column.
    pub(crate) fn options(&self) -> Option<Options> {
        match self {
            AttrType::Picklist(o)
            | AttrType::State(o)
            | AttrType::Status(o)
            | AttrType::MultiSelect(o) => Some(o),
            _ => None,
        }
    }

    /// True for String and Memo (the only types `contains` & co. accept).
    pub(crate) fn is_text(&self) -> bool {
        matches!(self, AttrType::String { .. } | AttrType::Memo { .. })
    }
}

/// Where an attribute's value lives in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    /// The row's primary key.
    Pk,
    /// The row's version (`versionnumber`).
    Version,
    /// A stored column at this index of `Row::values`.
    Col(usize),
    /// Not stored (companions, virtual attributes).
    None,
}

/// One attribute of an entity.
#[derive(Clone, Debug)]
pub(crate) struct AttrDef {
    /// Logical name.
    pub(crate) logical_name: String,
    /// Type.
    pub(crate) ty: AttrType,
    /// Parent attribute for companions.
    pub(crate) attribute_of: Option<String>,
    /// Where the value is stored.
    pub(crate) storage: Storage,
    /// IsPrimaryId.
    pub(crate) primary_id: bool,
    /// IsPrimaryName.
    pub(crate) primary_name: bool,
    /// IsCustomAttribute.
    pub(crate) custom: bool,
    /// MetadataId.
    pub(crate) metadata_id: Uuid,
    /// Display label.
    pub(crate) display_name: String,
}

impl AttrDef {
    /// Whether this attribute is an OData property (`IsValidODataAttribute`).
    pub(crate) fn is_odata(&self) -> bool {
        self.attribute_of.is_none()
            && !matches!(self.ty, AttrType::Virtual(_) | AttrType::EntityName)
    }

    /// OData property name: `_x_value` for lookups, the logical name otherwise.
    pub(crate) fn odata_name(&self) -> String {
        if self.ty.targets().is_some() {
            format!("_{}_value", self.logical_name)
        } else {
            self.logical_name.clone()
        }
    }
}

/// One entity (table).
#[derive(Clone, Debug)]
pub(crate) struct EntityDef {
    /// Logical name.
    pub(crate) logical_name: String,
    /// EntitySetName.
    pub(crate) set_name: String,
    /// ObjectTypeCode.
    pub(crate) otc: i32,
    /// ChangeTrackingEnabled.
    pub(crate) change_tracking: bool,
    /// IsCustomEntity.
    pub(crate) custom: bool,
    /// PrimaryIdAttribute.
    pub(crate) primary_id: String,
    /// PrimaryNameAttribute.
    pub(crate) primary_name: String,
    /// Display label.
    pub(crate) display_name: String,
    /// MetadataId.
    pub(crate) metadata_id: Uuid,
    /// Attributes in metadata order.
    pub(crate) attrs: Vec<AttrDef>,
    /// Attribute index of each stored column.
    pub(crate) columns: Vec<usize>,
    /// OData property name → attribute index.
    pub(crate) by_odata: HashMap<String, usize>,
    /// Logical name → attribute index.
    pub(crate) by_logical: HashMap<String, usize>,
}

impl EntityDef {
    /// Attribute by OData property name.
    pub(crate) fn odata_attr(&self, name: &str) -> Option<&AttrDef> {
        self.by_odata.get(name).map(|&i| &self.attrs[i])
    }

    /// Attribute by logical name.
    pub(crate) fn attr(&self, logical: &str) -> Option<&AttrDef> {
        self.by_logical.get(logical).map(|&i| &self.attrs[i])
    }

    /// The primary name attribute's stored column index.
    pub(crate) fn primary_name_col(&self) -> Option<usize> {
        match self.attr(&self.primary_name)?.storage {
            Storage::Col(c) => Some(c),
            _ => None,
        }
    }
}

/// All entities of the simulated organization.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    /// Entities; the index is used by [`crate::sim::value::Value::Lookup`].
    pub(crate) entities: Vec<EntityDef>,
}

/// Index of `account` in [`Model::entities`].
pub(crate) const ACCOUNT: usize = 0;
/// Index of `contact`.
pub(crate) const CONTACT: usize = 1;
/// Index of `opportunity`.
pub(crate) const OPPORTUNITY: usize = 2;
/// Index of `systemuser`.
pub(crate) const SYSTEMUSER: usize = 3;
/// Index of `team`.
pub(crate) const TEAM: usize = 4;
/// Index of `transactioncurrency`.
pub(crate) const CURRENCY: usize = 5;
/// Index of `new_widget`.
pub(crate) const WIDGET: usize = 6;

/// A deterministic GUID from a name (metadata ids must be stable across runs).
pub(crate) fn name_guid(name: &str) -> Uuid {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in name.bytes() {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    Uuid::from_u128(h)
}

const STATE_ACTIVE: Options = &[(0, "Active"), (1, "Inactive")];
const STATUS_ACTIVE: Options = &[(1, "Active"), (2, "Inactive")];
const INDUSTRY: Options = &[
    (1, "Accounting"),
    (2, "Agriculture and Non-petrol Natural Resource Extraction"),
    (3, "Broadcasting Printing and Publishing"),
    (4, "Brokers"),
    (5, "Building Supply Retail"),
    (6, "Business Services"),
    (7, "Consulting"),
    (8, "Consumer Services"),
];
const ACCOUNT_CATEGORY: Options = &[(1, "Preferred Customer"), (2, "Standard")];
const GENDER: Options = &[(1, "Male"), (2, "Female")];
const FAMILY: Options = &[
    (1, "Single"),
    (2, "Married"),
    (3, "Divorced"),
    (4, "Widowed"),
];
const OPP_STATE: Options = &[(0, "Open"), (1, "Won"), (2, "Lost")];
const OPP_STATUS: Options = &[
    (1, "In Progress"),
    (2, "On Hold"),
    (3, "Won"),
    (4, "Canceled"),
    (5, "Out-Sold"),
];
const RATING: Options = &[(1, "Hot"), (2, "Warm"), (3, "Cold")];
const ACCESS_MODE: Options = &[
    (0, "Read-Write"),
    (1, "Administrative"),
    (4, "Non-interactive"),
];
const TEAM_TYPE: Options = &[(0, "Owner"), (1, "Access")];
const WIDGET_CATEGORY: Options = &[
    (100000000, "Gadget"),
    (100000001, "Gizmo"),
    (100000002, "Doohickey"),
    (100000003, "Thingamajig"),
];
const COLORS: Options = &[(1, "Red"), (2, "Green"), (3, "Blue"), (9, "Ultraviolet")];

const T_ACCOUNT: &[&str] = &["account"];
const T_CONTACT: &[&str] = &["contact"];
const T_USER: &[&str] = &["systemuser"];
const T_CURRENCY: &[&str] = &["transactioncurrency"];
const T_CUSTOMER: &[&str] = &["account", "contact"];
const T_OWNER: &[&str] = &["systemuser", "team"];

/// Builds one entity; companions are added automatically.
struct EntityBuilder {
    def: EntityDef,
}

impl EntityBuilder {
    fn new(logical: &str, set: &str, otc: i32, tracked: bool, display: &str) -> Self {
        let custom = logical.starts_with("new_");
        EntityBuilder {
            def: EntityDef {
                logical_name: logical.into(),
                set_name: set.into(),
                otc,
                change_tracking: tracked,
                custom,
                primary_id: format!("{logical}id"),
                primary_name: String::new(),
                display_name: display.into(),
                metadata_id: name_guid(logical),
                attrs: Vec::new(),
                columns: Vec::new(),
                by_odata: HashMap::new(),
                by_logical: HashMap::new(),
            },
        }
    }

    fn push(&mut self, name: &str, ty: AttrType, attribute_of: Option<String>, storage: Storage) {
        let entity = self.def.logical_name.clone();
        let display = name
            .trim_start_matches("new_")
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ");
        let idx = self.def.attrs.len();
        let attr = AttrDef {
            logical_name: name.into(),
            custom: self.def.custom && name.starts_with("new_"),
            primary_id: name == self.def.primary_id,
            primary_name: false,
            metadata_id: name_guid(&format!("{entity}.{name}")),
            display_name: display,
            ty,
            attribute_of,
            storage,
        };
        if attr.is_odata() {
            self.def.by_odata.insert(attr.odata_name(), idx);
        }
        self.def.by_logical.insert(name.into(), idx);
        self.def.attrs.push(attr);
    }

    fn pk(mut self) -> Self {
        let pk = self.def.primary_id.clone();
        self.push(&pk, AttrType::Uniqueidentifier, None, Storage::Pk);
        self
    }

    fn col(mut self, name: &str, ty: AttrType) -> Self {
        let storage = match ty {
            AttrType::Virtual(_) => Storage::None,
            _ if name == "versionnumber" => Storage::Version,
            _ => {
                self.def.columns.push(self.def.attrs.len());
                Storage::Col(self.def.columns.len() - 1)
            }
        };
        let companions: Vec<(String, AttrType)> = match &ty {
            AttrType::Picklist(_)
            | AttrType::State(_)
            | AttrType::Status(_)
            | AttrType::Boolean { .. }
            | AttrType::MultiSelect(_) => {
                vec![(format!("{name}name"), AttrType::Virtual("VirtualType"))]
            }
            AttrType::Lookup(_) => vec![(
                format!("{name}name"),
                AttrType::String {
                    max_len: 100,
                    format: "Text",
                },
            )],
            AttrType::Customer(_) | AttrType::Owner(_) => vec![
                (
                    format!("{name}name"),
                    AttrType::String {
                        max_len: 100,
                        format: "Text",
                    },
                ),
                (format!("{name}type"), AttrType::EntityName),
            ],
            _ => vec![],
        };
        self.push(name, ty, None, storage);
        for (c, t) in companions {
            self.push(&c, t, Some(name.to_string()), Storage::None);
        }
        self
    }

    fn name(mut self, name: &str, max_len: u32) -> Self {
        self.def.primary_name = name.into();
        self = self.col(
            name,
            AttrType::String {
                max_len,
                format: "Text",
            },
        );
        let last = self.def.by_logical[name];
        self.def.attrs[last].primary_name = true;
        self
    }

    fn system(self) -> Self {
        self.col("createdon", AttrType::DateTime(Behavior::UserLocal))
            .col("modifiedon", AttrType::DateTime(Behavior::UserLocal))
            .col("versionnumber", AttrType::BigInt)
    }

    fn build(self) -> EntityDef {
        self.def
    }
}

fn s(max_len: u32) -> AttrType {
    AttrType::String {
        max_len,
        format: "Text",
    }
}

impl Model {
    /// This model with one more stored attribute on entity `ei`, as when a maker adds a column
    /// in Dataverse: `type_code` is an `AttributeType` name (`String`, `Memo`, `Integer`,
    /// `BigInt`, `Decimal`, `Double`, `Money`, `Boolean`, `DateTime`). `None` for another type.
    pub(crate) fn with_attribute(&self, ei: usize, name: &str, type_code: &str) -> Option<Model> {
        let ty = match type_code {
            "String" => s(100),
            "Memo" => AttrType::Memo { max_len: 2000 },
            "Integer" => AttrType::Integer {
                min: i32::MIN,
                max: i32::MAX,
            },
            "BigInt" => AttrType::BigInt,
            "Decimal" => AttrType::Decimal { precision: 2 },
            "Double" => AttrType::Double { precision: 2 },
            "Money" => AttrType::Money { precision: 2 },
            "Boolean" => AttrType::Boolean {
                true_label: "Yes",
                false_label: "No",
            },
            "DateTime" => AttrType::DateTime(Behavior::UserLocal),
            _ => return None,
        };
        let mut model = self.clone();
        let builder = EntityBuilder {
            def: self.entities[ei].clone(),
        };
        model.entities[ei] = builder.col(name, ty).build();
        Some(model)
    }

    /// The fixed model of the simulated organization.
    pub(crate) fn standard() -> Model {
        let account = EntityBuilder::new("account", "accounts", 1, true, "Account")
            .pk()
            .name("name", 160)
            .col("accountnumber", s(20))
            .col("description", AttrType::Memo { max_len: 2000 })
            .col(
                "numberofemployees",
                AttrType::Integer {
                    min: 0,
                    max: 1_000_000_000,
                },
            )
            .col("revenue", AttrType::Money { precision: 2 })
            .col("creditlimit", AttrType::Money { precision: 2 })
            .col("exchangerate", AttrType::Decimal { precision: 10 })
            .col("address1_city", s(80))
            .col("address1_latitude", AttrType::Double { precision: 5 })
            .col(
                "telephone1",
                AttrType::String {
                    max_len: 50,
                    format: "Phone",
                },
            )
            .col(
                "websiteurl",
                AttrType::String {
                    max_len: 200,
                    format: "Url",
                },
            )
            .col("industrycode", AttrType::Picklist(INDUSTRY))
            .col("accountcategorycode", AttrType::Picklist(ACCOUNT_CATEGORY))
            .col(
                "creditonhold",
                AttrType::Boolean {
                    true_label: "Yes",
                    false_label: "No",
                },
            )
            .col(
                "donotemail",
                AttrType::Boolean {
                    true_label: "Do Not Allow",
                    false_label: "Allow",
                },
            )
            .col("statecode", AttrType::State(STATE_ACTIVE))
            .col("statuscode", AttrType::Status(STATUS_ACTIVE))
            .col("parentaccountid", AttrType::Lookup(T_ACCOUNT))
            .col("primarycontactid", AttrType::Lookup(T_CONTACT))
            .col("transactioncurrencyid", AttrType::Lookup(T_CURRENCY))
            .col("ownerid", AttrType::Owner(T_OWNER))
            .col("createdby", AttrType::Lookup(T_USER))
            .col("modifiedby", AttrType::Lookup(T_USER))
            .col("entityimage", AttrType::Virtual("ImageType"))
            .system()
            .build();
        let contact = EntityBuilder::new("contact", "contacts", 2, true, "Contact")
            .pk()
            .name("fullname", 160)
            .col("firstname", s(50))
            .col("lastname", s(50))
            .col(
                "emailaddress1",
                AttrType::String {
                    max_len: 100,
                    format: "Email",
                },
            )
            .col("birthdate", AttrType::DateTime(Behavior::DateOnly))
            .col("annualincome", AttrType::Money { precision: 2 })
            .col("gendercode", AttrType::Picklist(GENDER))
            .col("familystatuscode", AttrType::Picklist(FAMILY))
            .col(
                "donotphone",
                AttrType::Boolean {
                    true_label: "Do Not Allow",
                    false_label: "Allow",
                },
            )
            .col("statecode", AttrType::State(STATE_ACTIVE))
            .col("statuscode", AttrType::Status(STATUS_ACTIVE))
            .col("parentcustomerid", AttrType::Customer(T_CUSTOMER))
            .col("transactioncurrencyid", AttrType::Lookup(T_CURRENCY))
            .col("ownerid", AttrType::Owner(T_OWNER))
            .col("createdby", AttrType::Lookup(T_USER))
            .col("entityimage", AttrType::Virtual("ImageType"))
            .system()
            .build();
        let opportunity =
            EntityBuilder::new("opportunity", "opportunities", 3, true, "Opportunity")
                .pk()
                .name("name", 300)
                .col("description", AttrType::Memo { max_len: 2000 })
                .col("estimatedvalue", AttrType::Money { precision: 2 })
                .col("estimatedclosedate", AttrType::DateTime(Behavior::DateOnly))
                .col("closeprobability", AttrType::Integer { min: 0, max: 100 })
                .col("opportunityratingcode", AttrType::Picklist(RATING))
                .col("statecode", AttrType::State(OPP_STATE))
                .col("statuscode", AttrType::Status(OPP_STATUS))
                .col("customerid", AttrType::Customer(T_CUSTOMER))
                .col("parentaccountid", AttrType::Lookup(T_ACCOUNT))
                .col("parentcontactid", AttrType::Lookup(T_CONTACT))
                .col("transactioncurrencyid", AttrType::Lookup(T_CURRENCY))
                .col("ownerid", AttrType::Owner(T_OWNER))
                .col("createdby", AttrType::Lookup(T_USER))
                .system()
                .build();
        let systemuser = EntityBuilder::new("systemuser", "systemusers", 8, false, "User")
            .pk()
            .name("fullname", 200)
            .col("domainname", s(1024))
            .col(
                "internalemailaddress",
                AttrType::String {
                    max_len: 100,
                    format: "Email",
                },
            )
            .col(
                "isdisabled",
                AttrType::Boolean {
                    true_label: "Disabled",
                    false_label: "Enabled",
                },
            )
            .col("accessmode", AttrType::Picklist(ACCESS_MODE))
            .system()
            .build();
        let team = EntityBuilder::new("team", "teams", 9, false, "Team")
            .pk()
            .name("name", 160)
            .col("teamtype", AttrType::Picklist(TEAM_TYPE))
            .system()
            .build();
        let currency = EntityBuilder::new(
            "transactioncurrency",
            "transactioncurrencies",
            9105,
            false,
            "Currency",
        )
        .pk()
        .name("currencyname", 100)
        .col("isocurrencycode", s(5))
        .col("currencysymbol", s(10))
        .col("exchangerate", AttrType::Decimal { precision: 10 })
        .system()
        .build();
        let widget = EntityBuilder::new("new_widget", "new_widgets", 10001, true, "Widget")
            .pk()
            .name("new_name", 100)
            .col("new_weight", AttrType::Decimal { precision: 2 })
            .col(
                "new_quantity",
                AttrType::Integer {
                    min: -2_147_483_648,
                    max: 2_147_483_647,
                },
            )
            .col("new_serial", AttrType::BigInt)
            .col("new_score", AttrType::Double { precision: 5 })
            .col("new_price", AttrType::Money { precision: 2 })
            .col(
                "new_isactive",
                AttrType::Boolean {
                    true_label: "Yes",
                    false_label: "No",
                },
            )
            .col("new_launchdate", AttrType::DateTime(Behavior::DateOnly))
            .col(
                "new_calibratedat",
                AttrType::DateTime(Behavior::TimeZoneIndependent),
            )
            .col("new_category", AttrType::Picklist(WIDGET_CATEGORY))
            .col("new_colors", AttrType::MultiSelect(COLORS))
            .col("new_externalid", AttrType::Uniqueidentifier)
            .col("new_accountid", AttrType::Lookup(T_ACCOUNT))
            .col("new_notes", AttrType::Memo { max_len: 4000 })
            .col("statecode", AttrType::State(STATE_ACTIVE))
            .col("statuscode", AttrType::Status(STATUS_ACTIVE))
            .col("transactioncurrencyid", AttrType::Lookup(T_CURRENCY))
            .col("ownerid", AttrType::Owner(T_OWNER))
            .system()
            .build();
        Model {
            entities: vec![
                account,
                contact,
                opportunity,
                systemuser,
                team,
                currency,
                widget,
            ],
        }
    }

    /// Entity index by logical name.
    pub(crate) fn by_logical(&self, name: &str) -> Option<usize> {
        self.entities.iter().position(|e| e.logical_name == name)
    }

    /// Entity index by entity set name (case-sensitive,
    /// Web API notes: "Entity set names vs logical names; service document").
    pub(crate) fn by_set(&self, name: &str) -> Option<usize> {
        self.entities.iter().position(|e| e.set_name == name)
    }
}
