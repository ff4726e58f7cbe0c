//! What the API server refuses at `kubectl apply` (field validation Strict) before any rule runs:
//! a VirtualMachine checked against the structural OpenAPI v3 schema of KubeVirt's CRD, with the
//! API server's own paths and wording.
//!
//! The semantics follow apiextensions-apiserver, in its order: unknown fields are found by pruning
//! (independent of `type`: an object where a string belongs still has its keys reported), then
//! nulls of non-nullable fields are dropped (defaulted where a default exists), then the pruned
//! object is validated. The API server stops after the first stage that fails; this reports all
//! stages at once, so a fix loop needs one round.
//!
//! Only what is surely refused is reported, with or without KubeVirt's webhooks. Its mutating
//! webhook re-serialises `spec` through KubeVirt's Go types before the API server checks the
//! schema, so some things the schema alone refuses pass in a real cluster and are not reported:
//! an empty string for an enum (`omitempty` drops it), a JSON number for a quantity (it becomes a
//! string), a quantity with surrounding spaces or without a number (`M` reads as 0), and most
//! missing required fields (they come back as `""` or `0`; see `KUBEVIRT_REFUSED_WHEN_MISSING`).
//! Each rule was checked against kube-apiserver 1.32, with and without virt-api v1.6.6.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::sync::OnceLock;

use serde_json::{Map, Number, Value};

const KUBEVIRT_V1_6_6_JSON: &str =
    include_str!("../../../schemas/kubevirt.io_virtualmachines-v1.6.6.json");

/// The one `pattern` this validator enforces: Kubernetes' quantity (every `pattern` in the
/// VirtualMachine's spec). Other patterns need a regex engine and are skipped.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// Far deeper than any CRD (KubeVirt's is about 25 levels); bounds the recursion of compiling.
const MAX_SCHEMA_DEPTH: usize = 64;

/// Bounds the recursion of validating: only arrays nested under an array without `items`
/// can go deeper than the schema, and nothing there is reported past this depth.
const MAX_VALUE_DEPTH: usize = 256;

/// 2^53 - 1: the API server (kube-openapi) takes a fractional float as an integer only below it.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// The `required` fields whose omission KubeVirt v1.6.6 refuses (its mutating webhook's schema
/// check or its validating webhook), each measured against virt-api v1.6.6. The webhook
/// re-serialises `spec` through Go types before the API server validates, so a missing required
/// field comes back as `""`, `0` or `{}` and the API server's own check never fires; for the CRD's
/// other required fields (e.g. `volumes[].containerDisk.image`) the omission is accepted, and
/// `interfaces[].binding.name` could not be measured (it needs a binding plugin configured).
const KUBEVIRT_REFUSED_WHEN_MISSING: &[&str] = &[
    "spec",
    "spec.dataVolumeTemplates[].spec",
    "spec.template",
    "spec.template.spec.accessCredentials[].sshPublicKey.propagationMethod",
    "spec.template.spec.accessCredentials[].sshPublicKey.propagationMethod.qemuGuestAgent.users",
    "spec.template.spec.accessCredentials[].sshPublicKey.source",
    "spec.template.spec.accessCredentials[].userPassword.propagationMethod",
    "spec.template.spec.accessCredentials[].userPassword.source",
    "spec.template.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[].preference",
    "spec.template.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[].preference.matchExpressions[].key",
    "spec.template.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[].preference.matchExpressions[].operator",
    "spec.template.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[].preference.matchFields[].key",
    "spec.template.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[].preference.matchFields[].operator",
    "spec.template.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[].weight",
    "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
    "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[].matchExpressions[].key",
    "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[].matchExpressions[].operator",
    "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[].matchFields[].key",
    "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[].matchFields[].operator",
    "spec.template.spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm",
    "spec.template.spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.labelSelector.matchExpressions[].key",
    "spec.template.spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.labelSelector.matchExpressions[].operator",
    "spec.template.spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.namespaceSelector.matchExpressions[].key",
    "spec.template.spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.namespaceSelector.matchExpressions[].operator",
    "spec.template.spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.topologyKey",
    "spec.template.spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[].weight",
    "spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[].labelSelector.matchExpressions[].key",
    "spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[].labelSelector.matchExpressions[].operator",
    "spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[].namespaceSelector.matchExpressions[].key",
    "spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[].namespaceSelector.matchExpressions[].operator",
    "spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[].topologyKey",
    "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm",
    "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.labelSelector.matchExpressions[].key",
    "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.labelSelector.matchExpressions[].operator",
    "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.namespaceSelector.matchExpressions[].key",
    "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.namespaceSelector.matchExpressions[].operator",
    "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.topologyKey",
    "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[].weight",
    "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[].labelSelector.matchExpressions[].key",
    "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[].labelSelector.matchExpressions[].operator",
    "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[].namespaceSelector.matchExpressions[].key",
    "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[].namespaceSelector.matchExpressions[].operator",
    "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[].topologyKey",
    "spec.template.spec.domain",
    "spec.template.spec.domain.devices",
    "spec.template.spec.domain.devices.disks[].blockSize.custom.logical",
    "spec.template.spec.domain.devices.disks[].blockSize.custom.physical",
    "spec.template.spec.domain.devices.disks[].name",
    "spec.template.spec.domain.devices.filesystems[].virtiofs",
    "spec.template.spec.domain.devices.inputs[].type",
    "spec.template.spec.domain.devices.interfaces[].dhcpOptions.privateOptions[].option",
    "spec.template.spec.domain.devices.interfaces[].name",
    "spec.template.spec.domain.devices.interfaces[].ports[].port",
    "spec.template.spec.domain.devices.sound.name",
    "spec.template.spec.domain.firmware.kernelBoot.container.image",
    "spec.template.spec.livenessProbe.httpGet.port",
    "spec.template.spec.livenessProbe.tcpSocket.port",
    "spec.template.spec.networks[].multus.networkName",
    "spec.template.spec.networks[].name",
    "spec.template.spec.readinessProbe.httpGet.port",
    "spec.template.spec.readinessProbe.tcpSocket.port",
    "spec.template.spec.topologySpreadConstraints[].labelSelector.matchExpressions[].key",
    "spec.template.spec.topologySpreadConstraints[].labelSelector.matchExpressions[].operator",
    "spec.template.spec.topologySpreadConstraints[].maxSkew",
    "spec.template.spec.topologySpreadConstraints[].topologyKey",
    "spec.template.spec.topologySpreadConstraints[].whenUnsatisfiable",
    "spec.template.spec.volumes[].dataVolume.name",
    "spec.template.spec.volumes[].emptyDisk.capacity",
    "spec.template.spec.volumes[].hostDisk.path",
    "spec.template.spec.volumes[].hostDisk.type",
    "spec.template.spec.volumes[].name",
];

/// The VirtualMachine schema of KubeVirt v1.6.6, with `required` narrowed to
/// `KUBEVIRT_REFUSED_WHEN_MISSING`; compiled on first use.
pub fn kubevirt_v1_6_6() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // The file and the list are part of the build, not input; a unit test proves they compile.
        Schema::from_json_str(KUBEVIRT_V1_6_6_JSON)
            .and_then(|schema| schema.retain_required(KUBEVIRT_REFUSED_WHEN_MISSING))
            .expect("the shipped VirtualMachine schema compiles")
    })
}

/// Why a schema could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the schema is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{path}: a schema must be a JSON object")]
    NotAnObject { path: String },
    #[error("{path}: `{keyword}` has the wrong shape")]
    BadKeyword { path: String, keyword: &'static str },
    #[error("{path}: unsupported type {found:?}")]
    UnsupportedType { path: String, found: String },
    #[error("{path}: nested deeper than {MAX_SCHEMA_DEPTH} schemas")]
    TooDeep { path: String },
    #[error("{field}: not a required field of the schema")]
    NotRequired { field: String },
}

/// One thing the API server would refuse, at a path such as `spec.template.spec.domain.devices.disks[1].name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub path: String,
    pub kind: ViolationKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ViolationKind {
    /// Not in the schema: the strict decoding error.
    UnknownField,
    /// `found` is the JSON type of the value: `string`, `integer`, `number`, `boolean`, `object`, `array`, `null`.
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    /// `allowed` as the API server prints them (Go's `%v` of each enum value).
    NotInEnum {
        value: Value,
        allowed: Vec<String>,
    },
    MissingRequired,
    PatternMismatch {
        value: String,
        pattern: &'static str,
    },
    TooMany {
        len: usize,
        max: usize,
    },
    /// A repeated element of an `x-kubernetes-list-type: set`, or repeated keys of a `map` list.
    Duplicate {
        value: Value,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.kind {
            ViolationKind::UnknownField => write!(f, "unknown field {}", go_quote(path)),
            ViolationKind::WrongType { expected, found } => write!(
                f,
                "{path}: Invalid value: \"{found}\": {path} in body must be of type {expected}: \"{found}\""
            ),
            ViolationKind::NotInEnum { value, allowed } => {
                let allowed: Vec<String> = allowed.iter().map(|a| go_quote(a)).collect();
                write!(
                    f,
                    "{path}: Unsupported value: {}: supported values: {}",
                    go_value(value),
                    allowed.join(", ")
                )
            }
            ViolationKind::MissingRequired => write!(f, "{path}: Required value"),
            ViolationKind::PatternMismatch { value, pattern } => write!(
                f,
                "{path}: Invalid value: {}: {path} in body should match '{pattern}'",
                go_quote(value)
            ),
            ViolationKind::TooMany { len, max } => {
                write!(f, "{path}: Too many: {len}: must have at most {max} items")
            }
            ViolationKind::Duplicate { value } => {
                write!(f, "{path}: Duplicate value: {}", go_value(value))
            }
        }
    }
}

/// A compiled structural schema.
#[derive(Debug)]
pub struct Schema {
    root: Node,
}

impl Schema {
    /// [`Schema::from_json`] of JSON text.
    pub fn from_json_str(text: &str) -> Result<Schema, SchemaError> {
        Schema::from_json(&serde_json::from_str(text)?)
    }

    /// Compiles an `openAPIV3Schema`. Keywords the validator does not enforce are ignored.
    pub fn from_json(schema: &Value) -> Result<Schema, SchemaError> {
        Ok(Schema {
            root: compile(schema, "openAPIV3Schema", 0)?,
        })
    }

    /// Keeps only the listed `required` entries, named by schema path: `spec.template`,
    /// `spec.template.spec.volumes[].name` (`[]` for list items, `.*` for map values). For a
    /// cluster whose webhooks fill in some required fields before the API server validates.
    pub fn retain_required(mut self, fields: &[&str]) -> Result<Schema, SchemaError> {
        let wanted: HashSet<&str> = fields.iter().copied().collect();
        let mut unmatched = wanted.clone();
        retain_required_in(&mut self.root, &mut String::new(), &wanted, &mut unmatched);
        match unmatched.into_iter().min() {
            Some(field) => Err(SchemaError::NotRequired {
                field: field.to_owned(),
            }),
            None => Ok(self),
        }
    }

    /// Everything the API server would refuse in `object`: first the unknown fields, sorted as the
    /// API server lists them, then the rest in document order.
    pub fn validate(&self, object: &Value) -> Vec<Violation> {
        let mut walker = Walker::default();
        walker.walk(&self.root, object, Scope::ROOT, 0);
        let mut violations = walker.violations;
        violations.sort_by(|a, b| match (&a.kind, &b.kind) {
            (ViolationKind::UnknownField, ViolationKind::UnknownField) => a.path.cmp(&b.path),
            (ViolationKind::UnknownField, _) => Ordering::Less,
            (_, ViolationKind::UnknownField) => Ordering::Greater,
            _ => Ordering::Equal,
        });
        violations
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl JsonType {
    fn name(self) -> &'static str {
        match self {
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::String => "string",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Default)]
enum Additional {
    /// No `additionalProperties` (or `false`): other keys are unknown fields.
    #[default]
    None,
    /// `additionalProperties: true`: other keys are kept and not looked into.
    Any,
    Schema(Box<Node>),
}

#[derive(Debug, Default)]
enum ListType {
    #[default]
    Atomic,
    Set,
    Map(Vec<String>),
}

#[derive(Debug, Default)]
struct Node {
    json_type: Option<JsonType>,
    int_or_string: bool,
    nullable: bool,
    has_default: bool,
    preserve_unknown: bool,
    embedded_resource: bool,
    properties: BTreeMap<String, Node>,
    additional: Additional,
    items: Option<Box<Node>>,
    required: Vec<String>,
    enum_values: Vec<Value>,
    quantity_pattern: bool,
    max_items: Option<usize>,
    list_type: ListType,
}

impl Node {
    /// The schema of member `key`, as the API server's pruning and null-dropping look it up.
    fn member(&self, key: &str) -> Option<&Node> {
        match (self.properties.get(key), &self.additional) {
            (Some(node), _) => Some(node),
            (None, Additional::Schema(node)) => Some(node),
            _ => None,
        }
    }

    fn expected_type(&self) -> Option<&'static str> {
        match (self.json_type, self.int_or_string) {
            (Some(json_type), _) => Some(json_type.name()),
            (None, true) => Some("integer,string"),
            (None, false) => None,
        }
    }
}

fn compile(value: &Value, path: &str, depth: usize) -> Result<Node, SchemaError> {
    let bad = |keyword| SchemaError::BadKeyword {
        path: path.to_owned(),
        keyword,
    };
    if depth > MAX_SCHEMA_DEPTH {
        return Err(SchemaError::TooDeep {
            path: path.to_owned(),
        });
    }
    let Value::Object(map) = value else {
        return Err(SchemaError::NotAnObject {
            path: path.to_owned(),
        });
    };
    let flag = |keyword| match map.get(keyword) {
        None => Ok(false),
        Some(Value::Bool(set)) => Ok(*set),
        Some(_) => Err(bad(keyword)),
    };
    let strings = |keyword| match map.get(keyword) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| bad(keyword)))
            .collect(),
        Some(_) => Err(bad(keyword)),
    };
    let mut node = Node {
        json_type: match map.get("type") {
            None => None,
            Some(Value::String(name)) => Some(parse_type(name, path)?),
            Some(_) => return Err(bad("type")),
        },
        int_or_string: flag("x-kubernetes-int-or-string")?,
        nullable: flag("nullable")?,
        has_default: map.contains_key("default"),
        preserve_unknown: flag("x-kubernetes-preserve-unknown-fields")?,
        embedded_resource: flag("x-kubernetes-embedded-resource")?,
        required: strings("required")?,
        ..Node::default()
    };
    if let Some(properties) = map.get("properties") {
        let properties = properties.as_object().ok_or_else(|| bad("properties"))?;
        for (name, schema) in properties {
            let child = compile(schema, &format!("{path}.properties.{name}"), depth + 1)?;
            node.properties.insert(name.clone(), child);
        }
    }
    node.additional = match map.get("additionalProperties") {
        None | Some(Value::Bool(false)) => Additional::None,
        Some(Value::Bool(true)) => Additional::Any,
        Some(schema) => {
            let child = compile(schema, &format!("{path}.additionalProperties"), depth + 1)?;
            Additional::Schema(Box::new(child))
        }
    };
    if let Some(items) = map.get("items") {
        node.items = Some(Box::new(compile(
            items,
            &format!("{path}.items"),
            depth + 1,
        )?));
    }
    if let Some(values) = map.get("enum") {
        node.enum_values = values.as_array().ok_or_else(|| bad("enum"))?.clone();
    }
    node.quantity_pattern = map.get("pattern").and_then(Value::as_str) == Some(QUANTITY_PATTERN);
    if let Some(max) = map.get("maxItems") {
        let max = max.as_u64().ok_or_else(|| bad("maxItems"))?;
        node.max_items = Some(usize::try_from(max).unwrap_or(usize::MAX));
    }
    node.list_type = match map.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(strings("x-kubernetes-list-map-keys")?),
        _ => ListType::Atomic,
    };
    Ok(node)
}

fn retain_required_in(
    node: &mut Node,
    path: &mut String,
    wanted: &HashSet<&str>,
    unmatched: &mut HashSet<&str>,
) {
    let len = path.len();
    node.required.retain(|name| {
        let field = if len == 0 {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        unmatched.remove(field.as_str());
        wanted.contains(field.as_str())
    });
    for (name, child) in &mut node.properties {
        if len > 0 {
            path.push('.');
        }
        path.push_str(name);
        retain_required_in(child, path, wanted, unmatched);
        path.truncate(len);
    }
    if let Some(items) = &mut node.items {
        path.push_str("[]");
        retain_required_in(items, path, wanted, unmatched);
        path.truncate(len);
    }
    if let Additional::Schema(values) = &mut node.additional {
        path.push_str(".*");
        retain_required_in(values, path, wanted, unmatched);
        path.truncate(len);
    }
}

fn parse_type(name: &str, path: &str) -> Result<JsonType, SchemaError> {
    Ok(match name {
        "object" => JsonType::Object,
        "array" => JsonType::Array,
        "string" => JsonType::String,
        "integer" => JsonType::Integer,
        "number" => JsonType::Number,
        "boolean" => JsonType::Boolean,
        _ => {
            return Err(SchemaError::UnsupportedType {
                path: path.to_owned(),
                found: name.to_owned(),
            });
        }
    })
}

/// What applies at a value besides its schema.
#[derive(Debug, Clone, Copy)]
struct Scope {
    /// The object itself: `apiVersion`, `kind` and `metadata` are the API server's, `status` is special.
    root: bool,
    /// False under the root's `status`: the status subresource drops it before validation,
    /// but the decoder refuses its unknown fields first.
    validate: bool,
    /// Below `x-kubernetes-preserve-unknown-fields` through arrays (the pruner's `skipPrune`).
    preserved: bool,
}

impl Scope {
    const ROOT: Scope = Scope {
        root: true,
        validate: true,
        preserved: false,
    };
}

#[derive(Default)]
struct Walker {
    violations: Vec<Violation>,
    path: String,
}

impl Walker {
    fn report(&mut self, kind: ViolationKind) {
        let path = self.path.clone();
        self.violations.push(Violation { path, kind });
    }

    fn walk(&mut self, node: &Node, value: &Value, scope: Scope, depth: usize) {
        if depth > MAX_VALUE_DEPTH {
            return;
        }
        if scope.validate {
            self.check(node, value);
        }
        let preserve = node.preserve_unknown || scope.preserved;
        match value {
            Value::Object(members) => self.walk_members(node, members, scope, preserve, depth),
            Value::Array(elements) => {
                let inner = Scope {
                    root: false,
                    validate: scope.validate,
                    preserved: preserve,
                };
                for (index, element) in elements.iter().enumerate() {
                    let len = self.path.len();
                    // Writing to a String cannot fail.
                    let _ = write!(self.path, "[{index}]");
                    match &node.items {
                        Some(items) => self.walk(items, element, inner, depth + 1),
                        None if !preserve => self.walk_unschematized(element, depth + 1),
                        None => {}
                    }
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }

    fn walk_members(
        &mut self,
        node: &Node,
        members: &Map<String, Value>,
        scope: Scope,
        preserve: bool,
        depth: usize,
    ) {
        for (key, value) in members {
            let is_meta = matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
            if is_meta && (scope.root || node.embedded_resource) {
                let bad_metadata = key == "metadata" && !value.is_object() && !value.is_null();
                if scope.root && scope.validate && bad_metadata {
                    self.with_key(key, |walker| walker.report(wrong_type("object", value)));
                }
                continue;
            }
            let inner = Scope {
                root: false,
                validate: scope.validate && !(scope.root && key == "status"),
                preserved: false,
            };
            match node.member(key) {
                // A null is dropped (or defaulted) before validation; only its key is checked.
                Some(_) if value.is_null() => {}
                Some(child) => {
                    self.with_key(key, |walker| walker.walk(child, value, inner, depth + 1))
                }
                None if preserve || matches!(node.additional, Additional::Any) => {}
                None => self.with_key(key, |walker| walker.report(ViolationKind::UnknownField)),
            }
        }
        if !scope.validate {
            return;
        }
        for name in &node.required {
            let member = node.member(name);
            let present = match members.get(name) {
                None => member.is_some_and(|m| m.has_default),
                Some(Value::Null) => member.is_none_or(|m| m.nullable || m.has_default),
                Some(_) => true,
            };
            if !present {
                self.with_key(name, |walker| walker.report(ViolationKind::MissingRequired));
            }
        }
    }

    /// An element of an array without `items`: the pruner reports every key of an object in it.
    fn walk_unschematized(&mut self, value: &Value, depth: usize) {
        if depth > MAX_VALUE_DEPTH {
            return;
        }
        match value {
            Value::Object(members) => {
                for key in members.keys() {
                    self.with_key(key, |walker| walker.report(ViolationKind::UnknownField));
                }
            }
            Value::Array(elements) => {
                for (index, element) in elements.iter().enumerate() {
                    let len = self.path.len();
                    let _ = write!(self.path, "[{index}]");
                    self.walk_unschematized(element, depth + 1);
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }

    fn with_key(&mut self, key: &str, visit: impl FnOnce(&mut Walker)) {
        let len = self.path.len();
        if len > 0 {
            self.path.push('.');
        }
        self.path.push_str(key);
        visit(self);
        self.path.truncate(len);
    }

    /// The checks on the value itself, as kube-openapi runs them: each independently.
    fn check(&mut self, node: &Node, value: &Value) {
        if value.is_null() {
            // Only array elements get here: members that are null were dropped.
            if let (false, Some(expected)) = (node.nullable, node.expected_type()) {
                self.report(wrong_type(expected, value));
            }
            return;
        }
        if let Some(json_type) = node.json_type {
            if !has_type(json_type, value) {
                self.report(wrong_type(json_type.name(), value));
            }
        } else if node.int_or_string && !(value.is_string() || value.is_number()) {
            // A non-integral number is refused by the schema, but KubeVirt's webhook turns a
            // number into a quantity string first: not reported.
            self.report(wrong_type("integer,string", value));
        }
        // KubeVirt's webhook drops an empty string (omitempty) before the API server sees it.
        let empty_string = value.as_str() == Some("");
        if !node.enum_values.is_empty()
            && !empty_string
            && !node.enum_values.iter().any(|v| same_value(v, value))
        {
            self.report(ViolationKind::NotInEnum {
                value: value.clone(),
                allowed: node.enum_values.iter().map(go_plain).collect(),
            });
        }
        if let (true, Some(text)) = (node.quantity_pattern, value.as_str()) {
            // KubeVirt's webhook parses quantities with surrounding spaces trimmed.
            let trimmed = text.trim();
            if !is_quantity(trimmed) && !is_numberless_quantity(trimmed) {
                self.report(ViolationKind::PatternMismatch {
                    value: text.to_owned(),
                    pattern: QUANTITY_PATTERN,
                });
            }
        }
        if let Value::Array(elements) = value {
            if let Some(max) = node.max_items.filter(|max| elements.len() > *max) {
                self.report(ViolationKind::TooMany {
                    len: elements.len(),
                    max,
                });
            }
            match &node.list_type {
                ListType::Atomic => {}
                ListType::Set => self.check_set(elements),
                ListType::Map(keys) => self.check_map_list(node, keys, elements),
            }
        }
    }

    /// The second occurrence of each repeated scalar, as the API server reports it.
    /// Objects and arrays in a set are not compared.
    fn check_set(&mut self, elements: &[Value]) {
        let mut seen: HashMap<ScalarKey<'_>, usize> = HashMap::with_capacity(elements.len());
        for (index, element) in elements.iter().enumerate() {
            let Some(key) = ScalarKey::of(element) else {
                continue;
            };
            let count = seen.entry(key).or_insert(0);
            *count += 1;
            if *count == 2 {
                let value = element.clone();
                self.report_at_index(index, ViolationKind::Duplicate { value });
            }
        }
    }

    /// Repeated key tuples in a list-type map; a missing key is a value of its own, as in Go.
    /// Elements whose key holds an object or an array are not compared.
    fn check_map_list(&mut self, node: &Node, keys: &[String], elements: &[Value]) {
        if elements.iter().any(|e| !e.is_object() && !e.is_null()) {
            return; // already a WrongType; the API server stops the list check there too
        }
        // (name, nullable): a null key of a non-nullable field was dropped, so it is missing.
        let mut keys: Vec<(&String, bool)> = keys
            .iter()
            .map(|key| {
                let field = node.items.as_ref().and_then(|items| items.member(key));
                (key, field.is_some_and(|f| f.nullable))
            })
            .collect();
        keys.sort();
        let mut seen: HashMap<Vec<Option<ScalarKey<'_>>>, usize> = HashMap::new();
        'elements: for (index, element) in elements.iter().enumerate() {
            let mut tuple = Vec::with_capacity(keys.len());
            let mut shown = Map::new();
            for (key, nullable) in &keys {
                match element.get(key.as_str()) {
                    None => tuple.push(None),
                    Some(Value::Null) if !nullable => tuple.push(None),
                    Some(value) => {
                        let Some(scalar) = ScalarKey::of(value) else {
                            continue 'elements;
                        };
                        tuple.push(Some(scalar));
                        shown.insert((*key).clone(), value.clone());
                    }
                }
            }
            let count = seen.entry(tuple).or_insert(0);
            *count += 1;
            if *count == 2 {
                let value = Value::Object(shown);
                self.report_at_index(index, ViolationKind::Duplicate { value });
            }
        }
    }

    fn report_at_index(&mut self, index: usize, kind: ViolationKind) {
        let len = self.path.len();
        let _ = write!(self.path, "[{index}]");
        self.report(kind);
        self.path.truncate(len);
    }
}

/// A scalar as Go compares interface values: `1` and `1.0` differ (int64 and float64), and an
/// integer past int64 is a float, as Go decodes it.
#[derive(Debug, PartialEq, Eq, Hash)]
enum ScalarKey<'a> {
    Null,
    Bool(bool),
    Str(&'a str),
    Int(i64),
    Float(u64),
}

impl<'a> ScalarKey<'a> {
    fn of(value: &'a Value) -> Option<ScalarKey<'a>> {
        Some(match value {
            Value::Null => ScalarKey::Null,
            Value::Bool(set) => ScalarKey::Bool(*set),
            Value::String(text) => ScalarKey::Str(text),
            Value::Number(number) => match (number.as_i64(), number.as_f64()) {
                (Some(int), _) => ScalarKey::Int(int),
                // +0.0 and -0.0 are one map key in Go.
                (None, Some(float)) => ScalarKey::Float((float + 0.0).to_bits()),
                (None, None) => return None,
            },
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
}

fn wrong_type(expected: &'static str, value: &Value) -> ViolationKind {
    ViolationKind::WrongType {
        expected,
        found: type_name(value),
    }
}

/// The JSON type kube-openapi names for a decoded value; an integer past int64 decodes as a float.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(json_type: JsonType, value: &Value) -> bool {
    match (json_type, value) {
        (JsonType::Object, Value::Object(_))
        | (JsonType::Array, Value::Array(_))
        | (JsonType::String, Value::String(_))
        | (JsonType::Boolean, Value::Bool(_))
        | (JsonType::Number, Value::Number(_)) => true,
        (JsonType::Integer, Value::Number(number)) => is_integer(number),
        _ => false,
    }
}

/// Whether the API server takes this number where an integer belongs. Measured on
/// kube-apiserver 1.32: a whole float within int64 passes (`2.0`, `1e3`); a float within 2^53
/// whose fraction is below a relative 1e-9 of it passes (kube-openapi's `IsFloat64AJSONInteger`,
/// positive numbers only); an integer past int64 does not (Go decodes it as a float).
fn is_integer(number: &Number) -> bool {
    if number.is_i64() {
        return true;
    }
    if number.is_u64() {
        return false;
    }
    let Some(float) = number.as_f64() else {
        return false;
    };
    let int64_range = -9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0;
    if float.fract() == 0.0 && int64_range.contains(&float) {
        return true;
    }
    let whole = float.trunc();
    float > 0.0
        && float <= MAX_SAFE_INTEGER
        && whole != 0.0
        && (float - whole) / (float + whole) < 1e-9
}

/// Enum membership; numbers compare by value, as kube-openapi converts them before comparing.
fn same_value(allowed: &Value, value: &Value) -> bool {
    match (allowed, value) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => allowed == value,
    }
}

/// Matches [`QUANTITY_PATTERN`] exactly: `sign? number suffix?`, with the suffix one of
/// `[KMGTPE]i`, `[numkMGTPE]`, or `[eE] sign? number`. The number is taken greedily, which is
/// exact because no suffix starts with a digit or a dot.
fn is_quantity(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let Some(suffix) = strip_number(unsigned) else {
        return false;
    };
    is_unit_suffix(suffix)
        || suffix.strip_prefix(['e', 'E']).is_some_and(|exponent| {
            let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            strip_number(exponent) == Some("")
        })
}

/// A quantity without a number (`M`, `+`, `.`, `e3`): the pattern refuses it, but Go's
/// `resource.ParseQuantity` reads it as 0, and KubeVirt's webhook writes `"0"` back before the
/// API server checks the pattern.
fn is_numberless_quantity(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let suffix = unsigned.strip_prefix('.').unwrap_or(unsigned);
    let integer_exponent = suffix.strip_prefix(['e', 'E']).is_some_and(|exponent| {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    !text.is_empty() && (is_unit_suffix(suffix) || integer_exponent)
}

/// No suffix, a binary one (`Ki` to `Ei`) or a decimal one (`n` to `E`).
fn is_unit_suffix(suffix: &str) -> bool {
    matches!(
        suffix.as_bytes(),
        [] | [b'K' | b'M' | b'G' | b'T' | b'P' | b'E', b'i']
            | [b'n' | b'u' | b'm' | b'k' | b'M' | b'G' | b'T' | b'P' | b'E']
    )
}

/// Strips the longest prefix matching `[0-9]+(\.[0-9]*)?|\.[0-9]+`; `None` if there is none.
fn strip_number(text: &str) -> Option<&str> {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let whole = digits(text);
    let rest = &text[whole..];
    match rest.strip_prefix('.') {
        Some(fraction) => {
            let decimals = digits(fraction);
            (whole > 0 || decimals > 0).then(|| &fraction[decimals..])
        }
        None => (whole > 0).then_some(rest),
    }
}

/// Go's `%q` for the characters a manifest has in practice.
fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(quoted, "\\x{:02x}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A value as Go's `%v` prints it (strings bare).
fn go_plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => go_value(other),
    }
}

/// A value as `field.Error` prints it: strings quoted, numbers and booleans bare, objects as
/// Go's `%#v` of a `map[string]interface {}` (keys sorted).
fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "\"null\"".to_owned(),
        Value::Bool(set) => set.to_string(),
        Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(int), _) => int.to_string(),
            (None, Some(float)) => go_float(float),
            (None, None) => number.to_string(),
        },
        Value::String(text) => go_quote(text),
        Value::Array(elements) => {
            let shown: Vec<String> = elements.iter().map(go_nested).collect();
            format!("[]interface {{}}{{{}}}", shown.join(", "))
        }
        Value::Object(members) => {
            let mut shown: Vec<(&String, String)> = members
                .iter()
                .map(|(key, value)| (key, go_nested(value)))
                .collect();
            shown.sort();
            let shown: Vec<String> = shown
                .into_iter()
                .map(|(key, value)| format!("{}:{value}", go_quote(key)))
                .collect();
            format!("map[string]interface {{}}{{{}}}", shown.join(", "))
        }
    }
}

/// Go's `%v` of a float64: the shortest digits, in exponent form below 1e-4 and from 1e6 on
/// (`9.223372036854776e+18`, `1e+06`, `0.5`).
fn go_float(float: f64) -> String {
    let scientific = format!("{float:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    match exponent.parse::<i32>() {
        Ok(exponent) if !(-4..6).contains(&exponent) => {
            let sign = if exponent < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
        }
        _ => float.to_string(),
    }
}

/// Inside a `%#v` map or slice, nested compounds are elided: only the API server's top level matters.
fn go_nested(value: &Value) -> String {
    match value {
        Value::Null => "interface {}(nil)".to_owned(),
        Value::Array(_) => "[]interface {}{...}".to_owned(),
        Value::Object(_) => "map[string]interface {}{...}".to_owned(),
        scalar => go_value(scalar),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Messages below are copied from kube-apiserver 1.32 answering the same manifests.
    fn vm() -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": "vm1", "namespace": "default", "labels": {"app": "x"}},
            "spec": {
                "runStrategy": "Always",
                "dataVolumeTemplates": [{
                    "metadata": {"name": "dv1"},
                    "spec": {
                        "storage": {"resources": {"requests": {"storage": "10Gi"}}},
                        "source": {"blank": {}}
                    }
                }],
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "domain": {
                            "cpu": {"cores": 2},
                            "resources": {"requests": {"memory": "1Gi"}},
                            "devices": {
                                "disks": [
                                    {"name": "root", "disk": {"bus": "virtio"}},
                                    {"name": "cloudinit", "disk": {"bus": "virtio"}}
                                ],
                                "interfaces": [{"name": "default", "masquerade": {}}]
                            }
                        },
                        "networks": [{"name": "default", "pod": {}}],
                        "volumes": [
                            {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:latest"}},
                            {"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config\n"}},
                            {"name": "dv", "dataVolume": {"name": "dv1"}}
                        ]
                    }
                }
            }
        })
    }

    fn messages(vm: &Value) -> Vec<String> {
        kubevirt_v1_6_6()
            .validate(vm)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// `vm()` with `edit` applied at the JSON pointer `at`.
    fn with(at: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let mut vm = vm();
        edit(vm.pointer_mut(at).expect("fixture path"));
        vm
    }

    fn set(at: &str, key: &str, value: Value) -> Value {
        with(at, |parent| {
            parent[key] = value;
        })
    }

    const DOMAIN: &str = "/spec/template/spec/domain";
    const DISKS: &str = "/spec/template/spec/domain/devices/disks";
    const REQUESTS: &str = "/spec/template/spec/domain/resources/requests";

    #[test]
    fn shipped_schema_compiles() {
        assert!(Schema::from_json_str(KUBEVIRT_V1_6_6_JSON).is_ok());
        kubevirt_v1_6_6();
    }

    #[test]
    fn valid_vm_is_clean() {
        assert_eq!(messages(&vm()), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let mut vm = vm();
        vm["spec"]["template"]["volumes"] = json!([]);
        vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["foo"] = json!(1);
        assert_eq!(
            messages(&vm),
            [
                r#"unknown field "spec.template.spec.domain.devices.disks[0].foo""#,
                r#"unknown field "spec.template.volumes""#,
            ]
        );
    }

    #[test]
    fn keys_are_unknown_wherever_the_schema_has_no_place_for_them() {
        let vm = set(&format!("{DOMAIN}/cpu"), "cores", json!({"a": 1}));
        assert_eq!(
            messages(&vm),
            [
                r#"unknown field "spec.template.spec.domain.cpu.cores.a""#,
                r#"spec.template.spec.domain.cpu.cores: Invalid value: "object": spec.template.spec.domain.cpu.cores in body must be of type integer: "object""#,
            ]
        );
        let vm = set("/spec/template/spec", "nodeSelector", json!([{"a": 1}]));
        assert!(
            messages(&vm)
                .contains(&r#"unknown field "spec.template.spec.nodeSelector[0].a""#.to_owned())
        );
        let vm = set("/spec", "status", json!({"foo": 1}));
        assert_eq!(messages(&vm), [r#"unknown field "spec.status""#]);
    }

    #[test]
    fn wrong_types_read_like_the_api_server() {
        let vm = set(&format!("{DOMAIN}/cpu"), "cores", json!("two"));
        assert_eq!(
            messages(&vm),
            [
                r#"spec.template.spec.domain.cpu.cores: Invalid value: "string": spec.template.spec.domain.cpu.cores in body must be of type integer: "string""#
            ]
        );
        let vm = set("/spec", "running", json!("yes"));
        assert_eq!(
            messages(&vm),
            [
                r#"spec.running: Invalid value: "string": spec.running in body must be of type boolean: "string""#
            ]
        );
    }

    #[test]
    fn map_values_are_checked_against_additional_properties() {
        let vm = set("/spec/template/spec", "nodeSelector", json!({"a": 1}));
        assert_eq!(
            messages(&vm),
            [
                r#"spec.template.spec.nodeSelector.a: Invalid value: "integer": spec.template.spec.nodeSelector.a in body must be of type string: "integer""#
            ]
        );
    }

    #[test]
    fn enum_violations_list_the_supported_values() {
        let at = "/spec/dataVolumeTemplates/0/spec";
        let vm = set(at, "contentType", json!("foo"));
        assert_eq!(
            messages(&vm),
            [
                r#"spec.dataVolumeTemplates[0].spec.contentType: Unsupported value: "foo": supported values: "kubevirt", "archive""#
            ]
        );
        let vm = set(at, "contentType", json!(1));
        assert_eq!(
            messages(&vm),
            [
                r#"spec.dataVolumeTemplates[0].spec.contentType: Invalid value: "integer": spec.dataVolumeTemplates[0].spec.contentType in body must be of type string: "integer""#,
                r#"spec.dataVolumeTemplates[0].spec.contentType: Unsupported value: 1: supported values: "kubevirt", "archive""#,
            ]
        );
        // KubeVirt's webhook drops the empty string (omitempty) before the API server sees it.
        assert!(messages(&set(at, "contentType", json!(""))).is_empty());
        assert!(messages(&set(at, "contentType", json!("archive"))).is_empty());
    }

    #[test]
    fn missing_required_fields_are_reported() {
        let vm = with(&format!("{DISKS}/0"), |disk| {
            if let Some(disk) = disk.as_object_mut() {
                disk.remove("name");
            }
        });
        assert_eq!(
            messages(&vm),
            ["spec.template.spec.domain.devices.disks[0].name: Required value"]
        );
        let vm = set(&format!("{DISKS}/0"), "name", json!(null));
        assert_eq!(
            messages(&vm),
            ["spec.template.spec.domain.devices.disks[0].name: Required value"]
        );
        let vm = set("", "spec", json!(null));
        assert_eq!(messages(&vm), ["spec: Required value"]);
        let vm = set(DOMAIN, "devices", json!(null));
        assert_eq!(
            messages(&vm),
            ["spec.template.spec.domain.devices: Required value"]
        );
    }

    #[test]
    fn required_fields_kubevirt_fills_in_are_not_reported() {
        let vm = set("/spec/template/spec/volumes/0", "containerDisk", json!({}));
        assert!(messages(&vm).is_empty());
        let plain = Schema::from_json_str(KUBEVIRT_V1_6_6_JSON).expect("schema");
        let found: Vec<String> = plain
            .validate(&vm)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            ["spec.template.spec.volumes[0].containerDisk.image: Required value"]
        );
    }

    #[test]
    fn int_or_string_takes_integers_and_strings() {
        for memory in [
            json!(1024),
            json!("1Gi"),
            json!(2.0),
            json!(1.5),
            json!(null),
        ] {
            assert!(messages(&set(REQUESTS, "memory", memory)).is_empty());
        }
        let probe = json!({"tcpSocket": {"port": "ssh"}, "httpGet": {"port": 8080}});
        assert!(messages(&set("/spec/template/spec", "readinessProbe", probe)).is_empty());
        assert_eq!(
            messages(&set(REQUESTS, "memory", json!(true))),
            [
                r#"spec.template.spec.domain.resources.requests.memory: Invalid value: "boolean": spec.template.spec.domain.resources.requests.memory in body must be of type integer,string: "boolean""#
            ]
        );
    }

    #[test]
    fn quantities_must_match_the_pattern() {
        assert_eq!(
            messages(&set(REQUESTS, "memory", json!("1GB"))),
            [format!(
                "spec.template.spec.domain.resources.requests.memory: Invalid value: \"1GB\": spec.template.spec.domain.resources.requests.memory in body should match '{QUANTITY_PATTERN}'"
            )]
        );
        assert!(messages(&set(REQUESTS, "memory", json!(" 1Gi "))).is_empty());
        let accepted = [
            "1", "1.", ".5", "+1.5e-3", "-1", "1e3", "1E", "1Ei", "1Ki", "1k", "1m", "1e1.5", "01",
        ];
        let refused = [
            "", ".", "+", "1e", "1e+", "1K", "1ki", "1GB", "1 Gi", "1.5.5", "e1", "٣", "1Gi\n",
        ];
        for text in accepted {
            assert!(is_quantity(text), "{text:?}");
        }
        for text in refused {
            assert!(!is_quantity(text), "{text:?}");
        }
        // Refused by the pattern, but KubeVirt's webhook turns them into "0" first.
        for text in ["M", "Ei", "+", "-", ".", "+.Ki", "e3", "E-3"] {
            assert!(is_numberless_quantity(text), "{text:?}");
            assert!(
                messages(&set(REQUESTS, "memory", json!(text))).is_empty(),
                "{text:?}"
            );
        }
        for text in ["", "e", "e1.5", ".e", "1GB", "K", "ki"] {
            assert!(!is_numberless_quantity(text), "{text:?}");
        }
    }

    #[test]
    fn nulls_are_dropped_from_objects_but_not_from_lists() {
        assert!(messages(&set(&format!("{DOMAIN}/cpu"), "cores", json!(null))).is_empty());
        assert!(
            messages(&set(
                "/spec/template/spec",
                "nodeSelector",
                json!({"a": null})
            ))
            .is_empty()
        );
        let vm = with(DISKS, |disks| {
            if let Some(disks) = disks.as_array_mut() {
                disks.push(json!(null));
            }
        });
        assert_eq!(
            messages(&vm),
            [
                r#"spec.template.spec.domain.devices.disks[2]: Invalid value: "null": spec.template.spec.domain.devices.disks[2] in body must be of type object: "null""#
            ]
        );
        // dataVolumeTemplates items are nullable.
        assert!(messages(&set("/spec", "dataVolumeTemplates", json!([null]))).is_empty());
    }

    #[test]
    fn integers_follow_the_api_servers_number_rules() {
        let cores = |value: Value| messages(&set(&format!("{DOMAIN}/cpu"), "cores", value));
        for accepted in [
            json!(2.0),
            json!(1e3),
            json!(2.0000000001),
            json!(1_u64 << 40),
        ] {
            assert!(cores(accepted.clone()).is_empty(), "{accepted}");
        }
        let huge: Value = serde_json::from_str("9223372036854775808").expect("json");
        for refused in [json!(2.5), json!(-2.0000000001), json!(1e20), huge] {
            assert_eq!(
                cores(refused.clone()),
                [
                    r#"spec.template.spec.domain.cpu.cores: Invalid value: "number": spec.template.spec.domain.cpu.cores in body must be of type integer: "number""#
                ],
                "{refused}"
            );
        }
    }

    #[test]
    fn preserve_unknown_fields_keeps_unknown_keys_but_checks_known_ones() {
        let vm = set(
            "/spec/template",
            "metadata",
            json!({"foo": {"a": 1}, "labels": {"a": 1}}),
        );
        assert!(messages(&vm).is_empty());
        let clock = json!({"foo": 1, "timer": {"bar": 1, "hpet": {"present": "x"}}});
        assert_eq!(
            messages(&set(DOMAIN, "clock", clock)),
            [
                r#"unknown field "spec.template.spec.domain.clock.timer.bar""#,
                r#"spec.template.spec.domain.clock.timer.hpet.present: Invalid value: "string": spec.template.spec.domain.clock.timer.hpet.present in body must be of type boolean: "string""#,
            ]
        );
    }

    #[test]
    fn status_and_metadata_belong_to_the_api_server() {
        let vm = set(
            "",
            "status",
            json!({"foo": 1, "ready": "x", "conditions": "x"}),
        );
        assert_eq!(messages(&vm), [r#"unknown field "status.foo""#]);
        let vm = set("", "metadata", json!({"name": "vm1", "anything": {"a": 1}}));
        assert!(messages(&vm).is_empty());
        let vm = set("", "metadata", json!("x"));
        assert_eq!(
            messages(&vm),
            [
                r#"metadata: Invalid value: "string": metadata in body must be of type object: "string""#
            ]
        );
    }

    #[test]
    fn long_lists_are_checked_for_max_items_and_duplicates() {
        let disks: Vec<Value> = (0..257).map(|i| json!({"name": format!("d{i}")})).collect();
        let vm = set(&format!("{DOMAIN}/devices"), "disks", Value::Array(disks));
        assert_eq!(
            messages(&vm),
            ["spec.template.spec.domain.devices.disks: Too many: 257: must have at most 256 items"]
        );
        let users = json!([{"sshPublicKey": {
            "source": {"secret": {"secretName": "s"}},
            "propagationMethod": {"qemuGuestAgent": {"users": ["a", "b", "a", "a"]}}
        }}]);
        assert_eq!(
            messages(&set("/spec/template/spec", "accessCredentials", users)),
            [
                r#"spec.template.spec.accessCredentials[0].sshPublicKey.propagationMethod.qemuGuestAgent.users[2]: Duplicate value: "a""#
            ]
        );
        let claims = json!([{"name": "a"}, {"name": "a"}]);
        assert_eq!(
            messages(&set("/spec/template/spec", "resourceClaims", claims)),
            [
                r#"spec.template.spec.resourceClaims[1]: Duplicate value: map[string]interface {}{"name":"a"}"#
            ]
        );
        let constraint =
            json!({"maxSkew": 1, "topologyKey": "k", "whenUnsatisfiable": "DoNotSchedule"});
        let constraints = json!([constraint, constraint]);
        assert_eq!(
            messages(&set(
                "/spec/template/spec",
                "topologySpreadConstraints",
                constraints
            )),
            [
                r#"spec.template.spec.topologySpreadConstraints[1]: Duplicate value: map[string]interface {}{"topologyKey":"k", "whenUnsatisfiable":"DoNotSchedule"}"#
            ]
        );
    }

    #[test]
    fn deep_or_large_input_does_not_panic() {
        // Deeper than MAX_VALUE_DEPTH, but not so deep that dropping the Value overflows the stack.
        let mut deep = json!({"k": 1});
        for _ in 0..1_000 {
            deep = Value::Array(vec![deep]);
        }
        let vm = set("/spec/template/spec", "nodeSelector", json!({"a": deep}));
        assert_eq!(
            messages(&vm).len(),
            1,
            "only the type; nothing past the depth bound"
        );
        let users: Vec<Value> = (0..200_000)
            .map(|i| json!(format!("u{}", i % 100_000)))
            .collect();
        let access = json!([{"sshPublicKey": {
            "source": {"secret": {"secretName": "s"}},
            "propagationMethod": {"qemuGuestAgent": {"users": users}}
        }}]);
        assert_eq!(
            messages(&set("/spec/template/spec", "accessCredentials", access)).len(),
            100_000
        );
    }

    #[test]
    fn numbers_print_as_go_prints_them() {
        let cases = [
            (json!(9223372036854775808_u64), "9.223372036854776e+18"),
            (json!(1e6), "1e+06"),
            (json!(123456.0), "123456"),
            (json!(0.5), "0.5"),
            (json!(0.00001), "1e-05"),
            (json!(-3), "-3"),
        ];
        for (number, printed) in cases {
            assert_eq!(go_value(&number), printed);
        }
    }

    #[test]
    fn bad_schemas_are_errors() {
        assert!(matches!(
            Schema::from_json(&json!("x")),
            Err(SchemaError::NotAnObject { .. })
        ));
        let bad_type = json!({"properties": {"a": {"type": "date"}}});
        assert!(matches!(
            Schema::from_json(&bad_type),
            Err(SchemaError::UnsupportedType { .. })
        ));
        let bad_required = json!({"required": "a"});
        assert!(matches!(
            Schema::from_json(&bad_required),
            Err(SchemaError::BadKeyword {
                keyword: "required",
                ..
            })
        ));
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "array", "items": deep});
        }
        assert!(matches!(
            Schema::from_json(&deep),
            Err(SchemaError::TooDeep { .. })
        ));
        let plain = Schema::from_json_str(KUBEVIRT_V1_6_6_JSON).expect("schema");
        assert!(matches!(
            plain.retain_required(&["spec.template.spec.volumes[].nope"]),
            Err(SchemaError::NotRequired { .. })
        ));
    }

    #[test]
    fn embedded_resources_and_open_maps() {
        let schema = Schema::from_json(&json!({
            "type": "object",
            "properties": {
                "inner": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
                "open": {"type": "object", "additionalProperties": true}
            }
        }))
        .expect("schema");
        let object = json!({
            "inner": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"x": 1}, "spec": {}, "data": {}},
            "open": {"anything": {"at": ["all"]}}
        });
        let found: Vec<String> = schema
            .validate(&object)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, [r#"unknown field "inner.data""#]);
    }
}
