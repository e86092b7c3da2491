//! Which patch strategy and merge key each field of each API type has, as the API server's
//! OpenAPI document declares them (`x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`, both taken from the Go types' struct tags).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The patch metadata of one field of an API type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMeta {
    /// The type of the field's value, of its list items or of its map values
    /// (`io.k8s.api.core.v1.PodCondition`), when it is an API type.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    /// The field is a list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub list: bool,
    /// The field is a map with arbitrary keys (`additionalProperties`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub map: bool,
    /// `x-kubernetes-patch-strategy`: `merge`, `replace`, `retainKeys`, or `merge,retainKeys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// `x-kubernetes-patch-merge-key`.
    #[serde(default, rename = "key", skip_serializing_if = "Option::is_none")]
    pub merge_key: Option<String>,
}

impl FieldMeta {
    fn strategies(&self) -> impl Iterator<Item = &str> {
        self.strategy.as_deref().unwrap_or("").split(',')
    }

    /// The list is merged (by [`FieldMeta::merge_key`], or as a set of scalars).
    pub fn merges(&self) -> bool {
        self.strategies().any(|s| s == "merge")
    }

    /// The map is replaced whole, never merged.
    pub fn replaces(&self) -> bool {
        self.strategies().any(|s| s == "replace")
    }

    /// A two-way patch of this field's maps carries `$retainKeys`.
    pub fn retains_keys(&self) -> bool {
        self.strategies().any(|s| s == "retainKeys")
    }

    /// The merge key, empty for none (a list of scalars).
    pub fn key(&self) -> &str {
        self.merge_key.as_deref().unwrap_or("")
    }
}

/// The patch metadata of the API types, by OpenAPI definition name, and the definition of
/// each `group/version/Kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchSchema {
    /// Where the metadata came from.
    pub source: String,
    /// `v1/Pod` (core) or `apps/v1/Deployment` -> definition name.
    pub kinds: BTreeMap<String, String>,
    /// Definition name -> field name -> metadata. Fields that are plain scalars without a
    /// strategy are left out.
    pub types: BTreeMap<String, BTreeMap<String, FieldMeta>>,
}

/// The metadata this crate ships: kube-apiserver v1.28.0's `/openapi/v2`, trimmed by
/// [`PatchSchema::from_openapi_v2`]. A test against the real server checks it.
const BUILTIN: &str = include_str!("patch_schema.json");

const DEFINITIONS: &str = "#/definitions/";

impl PatchSchema {
    /// The Kubernetes API's patch metadata as this crate ships it.
    pub fn builtin() -> &'static PatchSchema {
        static SCHEMA: OnceLock<PatchSchema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            // Checked by this crate's tests; an empty schema (every list atomic) is the
            // safe fallback should the embedded file ever be broken.
            serde_json::from_str(BUILTIN).unwrap_or_default()
        })
    }

    /// The patch metadata of an OpenAPI v2 document (an API server's `/openapi/v2`).
    pub fn from_openapi_v2(doc: &Value, source: &str) -> PatchSchema {
        let mut schema = PatchSchema {
            source: source.to_string(),
            ..Default::default()
        };
        let Some(defs) = doc.get("definitions").and_then(Value::as_object) else {
            return schema;
        };
        for (name, def) in defs {
            for gvk in def
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let part = |k: &str| gvk.get(k).and_then(Value::as_str).unwrap_or("");
                let key = match part("group") {
                    "" => format!("{}/{}", part("version"), part("kind")),
                    group => format!("{group}/{}/{}", part("version"), part("kind")),
                };
                schema.kinds.entry(key).or_insert_with(|| name.clone());
            }
            let mut fields = BTreeMap::new();
            for (field, prop) in def
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let meta = field_meta(prop);
                if meta != FieldMeta::default() {
                    fields.insert(field.clone(), meta);
                }
            }
            if !fields.is_empty() {
                schema.types.insert(name.clone(), fields);
            }
        }
        schema
    }

    /// The definition of a kind (`apiVersion` as objects carry it: `v1`, `apps/v1`).
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .get(&format!("{api_version}/{kind}"))
            .map(String::as_str)
    }

    /// The metadata of `field` in definition `type_name`.
    pub fn field(&self, type_name: &str, field: &str) -> Option<&FieldMeta> {
        self.types.get(type_name)?.get(field)
    }
}

fn field_meta(prop: &Value) -> FieldMeta {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let reference = |v: Option<&Value>| {
        text(v.and_then(|v| v.get("$ref")))
            .map(|r| r.strip_prefix(DEFINITIONS).unwrap_or(&r).to_string())
    };
    let kind = prop.get("type").and_then(Value::as_str);
    let (list, map, type_name) = match kind {
        Some("array") => (true, false, reference(prop.get("items"))),
        Some("object") if prop.get("additionalProperties").is_some() => {
            (false, true, reference(prop.get("additionalProperties")))
        }
        _ => (false, false, reference(Some(prop))),
    };
    FieldMeta {
        type_name,
        list,
        map,
        strategy: text(prop.get("x-kubernetes-patch-strategy")),
        merge_key: text(prop.get("x-kubernetes-patch-merge-key")),
    }
}

/// Where a patch walk stands in the schema: the API type of the current map, if known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'s> {
    schema: &'s PatchSchema,
    type_name: Option<&'s str>,
    /// The current map is a map with arbitrary keys whose values are of `type_name`.
    map_of: bool,
}

/// What is known of one field under a cursor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'s> {
    pub meta: Option<&'s FieldMeta>,
    /// The cursor for the field's value (for a list, for its items).
    pub inner: Cursor<'s>,
}

impl<'s> Cursor<'s> {
    /// The cursor of the top of an object of `type_name` (`None`: nothing known, every list
    /// is atomic and every map merges).
    pub fn new(schema: &'s PatchSchema, type_name: Option<&'s str>) -> Self {
        Cursor {
            schema,
            type_name,
            map_of: false,
        }
    }

    /// The field `name` of the map under this cursor.
    pub fn field(&self, name: &str) -> Field<'s> {
        if self.map_of {
            // A value of a map with arbitrary keys: the map's value type, no strategy.
            return Field {
                meta: None,
                inner: Cursor::new(self.schema, self.type_name),
            };
        }
        let meta = self
            .type_name
            .and_then(|t| self.schema.types.get(t))
            .and_then(|fields| fields.get(name));
        let inner = Cursor {
            schema: self.schema,
            type_name: meta.and_then(|m| m.type_name.as_deref()),
            map_of: meta.is_some_and(|m| m.map),
        };
        Field { meta, inner }
    }
}

impl Field<'_> {
    pub fn merges(&self) -> bool {
        self.meta.is_some_and(FieldMeta::merges)
    }

    pub fn replaces(&self) -> bool {
        self.meta.is_some_and(FieldMeta::replaces)
    }

    pub fn retains_keys(&self) -> bool {
        self.meta.is_some_and(FieldMeta::retains_keys)
    }

    pub fn key(&self) -> &str {
        self.meta.map_or("", FieldMeta::key)
    }
}
