//! What the fuzzer learned from earlier answers: object ids (by owner and type), their statuses,
//! stream cursors and past mutating calls. Later requests reuse them — the owner's own ids to reach
//! deep paths, another account's or the other mode's to probe isolation — and answers are checked
//! against who owns what. Only ordered collections, so generation replays from a seed.

use std::collections::BTreeMap;

use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};

/// Who a request acts for: the development account in test and in live mode, and another account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Test,
    Live,
    Other,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Test, Scope::Live, Scope::Other];

    pub fn key(self) -> &'static str {
        match self {
            Scope::Test => settle_platform::auth::DEV_API_KEY,
            Scope::Live => settle_testkit::LIVE_API_KEY,
            Scope::Other => settle_testkit::OTHER_API_KEY,
        }
    }

    pub fn account(self) -> &'static str {
        match self {
            Scope::Test | Scope::Live => settle_platform::auth::DEV_ACCOUNT,
            Scope::Other => settle_testkit::OTHER_ACCOUNT,
        }
    }

    pub fn livemode(self) -> bool {
        self == Scope::Live
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Test => "test",
            Scope::Live => "live",
            Scope::Other => "other-account",
        }
    }
}

/// Prefixes of ids the services generate (`libs/platform/src/ids.rs`); only these identify an
/// object, so only these are owned (a customer id is the client's own string).
pub const GENERATED_PREFIXES: &[&str] = &[
    "patt_", "cbtxn_", "ch_", "cn_", "cnli_", "evt_", "in_", "ii_", "il_", "inpay_", "par_", "pi_", "pr_",
    "re_", "saga_",
];

/// Whether `s` looks like an id the services generated.
pub fn is_generated_id(s: &str) -> bool {
    s.len() < 100
        && GENERATED_PREFIXES.iter().any(|p| s.starts_with(p) && s.len() > p.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// How many of each kind are kept (the newest), so a long run stays small.
const KEEP: usize = 200;

fn push_bounded(list: &mut Vec<String>, value: String) {
    if list.contains(&value) {
        return;
    }
    if list.len() >= KEEP {
        list.remove(0);
    }
    list.push(value);
}

/// A mutating call that was answered, for replaying its idempotency key.
#[derive(Debug, Clone)]
pub struct PastCall {
    pub scope: Scope,
    pub method: usize,
    pub body: Vec<u8>,
    pub idempotency_key: String,
    /// The answer's body when it succeeded.
    pub answer: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone)]
pub struct Harvest {
    /// Object ids by owner, and by owner and message type.
    pub ids: BTreeMap<Scope, Vec<String>>,
    pub by_type: BTreeMap<(Scope, String), Vec<String>>,
    /// The last status seen of each object (an enum value name, e.g. `INVOICE_STATUS_OPEN`).
    pub status: BTreeMap<String, String>,
    /// Who owns each id.
    pub owner: BTreeMap<String, Scope>,
    /// Stream and page cursors by owner.
    pub cursors: BTreeMap<Scope, Vec<String>>,
    pub past: Vec<PastCall>,
}

impl Harvest {
    /// Records every object in `message`, an answer to `scope`.
    pub fn absorb(&mut self, scope: Scope, message: &DynamicMessage) {
        self.walk(scope, message, 0);
    }

    fn walk(&mut self, scope: Scope, message: &DynamicMessage, depth: usize) {
        if depth > 16 {
            return;
        }
        let descriptor = message.descriptor();
        if descriptor.full_name() == "google.protobuf.Any" {
            if let Some(inner) = unpack_any(descriptor.parent_pool(), message) {
                self.walk(scope, &inner, depth + 1);
            }
            return;
        }
        let id = message
            .get_field_by_name("id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .filter(|id| is_generated_id(id));
        if let Some(id) = &id {
            self.owner.entry(id.clone()).or_insert(scope);
            push_bounded(self.ids.entry(scope).or_default(), id.clone());
            push_bounded(
                self.by_type.entry((scope, descriptor.full_name().to_owned())).or_default(),
                id.clone(),
            );
            if let Some(field) = descriptor.get_field_by_name("status")
                && let Some(number) = message.get_field(&field).as_enum_number()
                && let Some(kind) = field.kind().as_enum().cloned()
                && let Some(value) = kind.get_value(number)
            {
                self.status.insert(id.clone(), value.name().to_owned());
            }
        }
        for (field, value) in message.fields() {
            if field.name() == "cursor"
                && let Some(cursor) = value.as_str()
                && !cursor.is_empty()
                && cursor.len() < 200
            {
                push_bounded(self.cursors.entry(scope).or_default(), cursor.to_owned());
            }
            self.walk_value(scope, value, depth);
        }
    }

    fn walk_value(&mut self, scope: Scope, value: &Value, depth: usize) {
        match value {
            Value::Message(inner) => self.walk(scope, inner, depth + 1),
            Value::List(items) => items.iter().for_each(|v| self.walk_value(scope, v, depth + 1)),
            Value::Map(entries) => {
                // Map values in key order: a HashMap's order would make generation unrepeatable.
                let mut entries: Vec<_> = entries.iter().collect();
                entries.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
                entries.into_iter().for_each(|(_, v)| self.walk_value(scope, v, depth + 1));
            }
            _ => {}
        }
    }

    /// Ids of `scope` (of `type_name` when given and known).
    pub fn ids_of(&self, scope: Scope, type_name: Option<&str>) -> &[String] {
        if let Some(type_name) = type_name
            && let Some(ids) = self.by_type.get(&(scope, type_name.to_owned()))
            && !ids.is_empty()
        {
            return ids;
        }
        self.ids.get(&scope).map_or(&[], Vec::as_slice)
    }

    /// Ids of `scope` starting with `prefix`, in order.
    pub fn ids_with_prefix(&self, scope: Scope, prefix: &str) -> Vec<&String> {
        self.ids
            .get(&scope)
            .map(|ids| ids.iter().filter(|id| id.starts_with(prefix)).collect())
            .unwrap_or_default()
    }

    /// Ids of `scope` with `prefix` whose last seen status ends with one of `statuses`
    /// (`OPEN`, `SUCCEEDED` …).
    pub fn ids_in_status(&self, scope: Scope, prefix: &str, statuses: &[&str]) -> Vec<&String> {
        self.ids_with_prefix(scope, prefix)
            .into_iter()
            .filter(|id| self.status.get(*id).is_some_and(|s| statuses.iter().any(|want| s.ends_with(want))))
            .collect()
    }

    pub fn remember(&mut self, call: PastCall) {
        if self.past.len() >= KEEP {
            self.past.remove(0);
        }
        self.past.push(call);
    }
}

/// The message inside an `Any`, when its type is in the pool.
pub fn unpack_any(pool: &DescriptorPool, any: &DynamicMessage) -> Option<DynamicMessage> {
    let type_url = any.get_field_by_name("type_url")?.as_str()?.to_owned();
    let value = any.get_field_by_name("value")?.as_bytes()?.clone();
    let name = type_url.rsplit('/').next()?;
    DynamicMessage::decode(pool.get_message_by_name(name)?, value).ok()
}

/// Every `(message type, id, livemode)` of objects in `message` (an answer), for the isolation
/// checks: an object of another owner, or of the other mode, must never be in an answer.
pub fn objects(message: &DynamicMessage) -> Vec<(String, String, Option<bool>)> {
    let mut out = Vec::new();
    collect_objects(message, &mut out, 0);
    out
}

fn collect_objects(message: &DynamicMessage, out: &mut Vec<(String, String, Option<bool>)>, depth: usize) {
    if depth > 16 {
        return;
    }
    let descriptor = message.descriptor();
    if descriptor.full_name() == "google.protobuf.Any" {
        if let Some(inner) = unpack_any(descriptor.parent_pool(), message) {
            collect_objects(&inner, out, depth + 1);
        }
        return;
    }
    if let Some(id) = message.get_field_by_name("id").and_then(|v| v.as_str().map(str::to_owned))
        && is_generated_id(&id)
    {
        let livemode = descriptor
            .get_field_by_name("livemode")
            .and_then(|_| message.get_field_by_name("livemode")?.as_bool());
        out.push((descriptor.full_name().to_owned(), id, livemode));
    }
    for (_, value) in message.fields() {
        collect_value(value, out, depth);
    }
}

fn collect_value(value: &Value, out: &mut Vec<(String, String, Option<bool>)>, depth: usize) {
    match value {
        Value::Message(inner) => collect_objects(inner, out, depth + 1),
        Value::List(items) => items.iter().for_each(|v| collect_value(v, out, depth + 1)),
        Value::Map(entries) => entries.values().for_each(|v| collect_value(v, out, depth + 1)),
        _ => {}
    }
}
