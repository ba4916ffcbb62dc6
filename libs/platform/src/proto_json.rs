//! settle's messages as Stripe-style JSON, read through the descriptor set `settle-proto` embeds:
//! field names as in the proto (Stripe's), enums as Stripe's lower-case values, absent optional
//! fields as `null`. Its use is `previous_attributes` of `*.updated` events ([`previous_attributes`]),
//! which must show any top-level field that changed without a hand-kept list of fields per object.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::{Message, Name};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde_json::{Map, Value};

/// Every message and enum of the descriptor set, by fully qualified name (`.settle.invoices.v1.Invoice`).
struct Registry {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, EnumDescriptorProto>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = Registry { messages: HashMap::new(), enums: HashMap::new() };
        // The set is generated at build time from the same protos; an unreadable one leaves the
        // registry empty and every rendering `null`, which only loses `previous_attributes` detail.
        if let Ok(set) = FileDescriptorSet::decode(settle_proto::FILE_DESCRIPTOR_SET) {
            for file in set.file {
                let scope = format!(".{}", file.package());
                for message in file.message_type {
                    registry.add_message(&scope, message);
                }
                for en in file.enum_type {
                    registry.enums.insert(format!("{scope}.{}", en.name()), en);
                }
            }
        }
        registry
    })
}

impl Registry {
    fn add_message(&mut self, scope: &str, message: DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested.clone());
        }
        for en in &message.enum_type {
            self.enums.insert(format!("{name}.{}", en.name()), en.clone());
        }
        self.messages.insert(name, message);
    }
}

/// `message` as a JSON object (`null` if its type is not in the descriptor set or it cannot be read).
pub fn to_json<M: Message + Name>(message: &M) -> Value {
    let name = format!(".{}", M::full_name());
    registry()
        .messages
        .get(&name)
        .and_then(|descriptor| decode_message(&message.encode_to_vec(), descriptor))
        .unwrap_or(Value::Null)
}

/// Stripe's `previous_attributes`: the old value of every top-level field whose value differs between
/// `before` and `after`, or `None` when nothing changed.
pub fn previous_attributes<M: Message + Name>(before: &M, after: &M) -> Option<Value> {
    let (Value::Object(before), Value::Object(after)) = (to_json(before), to_json(after)) else {
        return None;
    };
    let changed: Map<String, Value> = before
        .iter()
        .filter(|(key, old)| after.get(*key) != Some(*old))
        .map(|(key, old)| (key.clone(), old.clone()))
        .chain(after.keys().filter(|key| !before.contains_key(*key)).map(|key| (key.clone(), Value::Null)))
        .collect();
    (!changed.is_empty()).then_some(Value::Object(changed))
}

/// A reader over protobuf wire bytes.
struct Wire<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn fixed64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }

    fn fixed32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }

    fn delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }

    /// Skips one value of `wire_type`.
    fn skip(&mut self, wire_type: u64) -> Option<()> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.fixed64().map(drop),
            2 => self.delimited().map(drop),
            5 => self.fixed32().map(drop),
            _ => None,
        }
    }
}

/// Whether values of this type may be packed (every scalar but strings, bytes and messages).
fn packable(kind: Type) -> bool {
    !matches!(kind, Type::String | Type::Bytes | Type::Message | Type::Group)
}

fn decode_message(bytes: &[u8], descriptor: &DescriptorProto) -> Option<Value> {
    let mut singles: HashMap<i32, Value> = HashMap::new();
    let mut lists: HashMap<i32, Vec<Value>> = HashMap::new();
    let mut maps: HashMap<i32, Map<String, Value>> = HashMap::new();
    let mut wire = Wire { bytes, pos: 0 };
    while !wire.done() {
        let key = wire.varint()?;
        let (number, wire_type) = (i32::try_from(key >> 3).ok()?, key & 7);
        let Some(field) = descriptor.field.iter().find(|f| f.number() == number) else {
            wire.skip(wire_type)?;
            continue;
        };
        let kind = field.r#type();
        let repeated = field.label() == Label::Repeated;
        if let Some(entry) = map_entry(field) {
            let (key, value) = decode_map_entry(wire.delimited()?, entry)?;
            maps.entry(number).or_default().insert(key, value);
        } else if repeated && wire_type == 2 && packable(kind) {
            let mut packed = Wire { bytes: wire.delimited()?, pos: 0 };
            while !packed.done() {
                let value = decode_value(&mut packed, field, scalar_wire_type(kind))?;
                lists.entry(number).or_default().push(value);
            }
        } else {
            let value = decode_value(&mut wire, field, wire_type)?;
            if repeated {
                lists.entry(number).or_default().push(value);
            } else {
                singles.insert(number, value);
            }
        }
    }
    let mut object = Map::new();
    for field in &descriptor.field {
        let number = field.number();
        let value = if map_entry(field).is_some() {
            Value::Object(maps.remove(&number).unwrap_or_default())
        } else if field.label() == Label::Repeated {
            Value::Array(lists.remove(&number).unwrap_or_default())
        } else {
            singles.remove(&number).unwrap_or_else(|| default_value(field))
        };
        object.insert(field.name().to_owned(), value);
    }
    Some(Value::Object(object))
}

/// The entry type of a map field, if `field` is one.
fn map_entry(field: &FieldDescriptorProto) -> Option<&'static DescriptorProto> {
    if field.r#type() != Type::Message || field.label() != Label::Repeated {
        return None;
    }
    registry()
        .messages
        .get(field.type_name())
        .filter(|entry| entry.options.as_ref().is_some_and(|o| o.map_entry()))
}

fn decode_map_entry(bytes: &[u8], entry: &DescriptorProto) -> Option<(String, Value)> {
    let Value::Object(mut object) = decode_message(bytes, entry)? else {
        return None;
    };
    let key = match object.remove("key")? {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Some((key, object.remove("value").unwrap_or(Value::Null)))
}

fn scalar_wire_type(kind: Type) -> u64 {
    match kind {
        Type::Double | Type::Fixed64 | Type::Sfixed64 => 1,
        Type::Float | Type::Fixed32 | Type::Sfixed32 => 5,
        Type::String | Type::Bytes | Type::Message | Type::Group => 2,
        _ => 0,
    }
}

fn decode_value(wire: &mut Wire<'_>, field: &FieldDescriptorProto, wire_type: u64) -> Option<Value> {
    let kind = field.r#type();
    if wire_type != scalar_wire_type(kind) {
        return None;
    }
    Some(match kind {
        Type::Double => number_f64(f64::from_bits(wire.fixed64()?)),
        Type::Float => number_f64(f64::from(f32::from_bits(wire.fixed32()?))),
        // Two's complement reinterpretation is what the wire format specifies for these types.
        Type::Int64 | Type::Sfixed64 => Value::from(wire.varint_or_fixed(kind)? as i64),
        Type::Uint64 | Type::Fixed64 => Value::from(wire.varint_or_fixed(kind)?),
        Type::Int32 | Type::Sfixed32 => Value::from(wire.varint_or_fixed(kind)? as i32),
        Type::Uint32 | Type::Fixed32 => Value::from(wire.varint_or_fixed(kind)? as u32),
        Type::Sint32 | Type::Sint64 => {
            let raw = wire.varint()?;
            Value::from((raw >> 1) as i64 ^ -((raw & 1) as i64))
        }
        Type::Bool => Value::Bool(wire.varint()? != 0),
        Type::Enum => enum_value(field.type_name(), wire.varint()? as i32),
        Type::String => Value::String(String::from_utf8_lossy(wire.delimited()?).into_owned()),
        Type::Bytes => Value::String(wire.delimited()?.iter().map(|b| format!("{b:02x}")).collect()),
        Type::Message => {
            let bytes = wire.delimited()?;
            match registry().messages.get(field.type_name()) {
                Some(descriptor) => decode_message(bytes, descriptor)?,
                None => Value::Null,
            }
        }
        Type::Group => return None,
    })
}

impl Wire<'_> {
    fn varint_or_fixed(&mut self, kind: Type) -> Option<u64> {
        match kind {
            Type::Fixed64 | Type::Sfixed64 => self.fixed64(),
            Type::Fixed32 | Type::Sfixed32 => self.fixed32().map(u64::from),
            _ => self.varint(),
        }
    }
}

fn number_f64(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// An enum value as Stripe writes it: `INVOICE_STATUS_OPEN` → `open`; the zero value is `null`.
fn enum_value(type_name: &str, number: i32) -> Value {
    let Some(descriptor) = registry().enums.get(type_name) else {
        return Value::from(number);
    };
    if number == 0 {
        return Value::Null;
    }
    let prefix = descriptor
        .value
        .iter()
        .find(|v| v.number() == 0)
        .and_then(|v| v.name().strip_suffix("UNSPECIFIED"))
        .unwrap_or_default();
    match descriptor.value.iter().find(|v| v.number() == number) {
        Some(value) => Value::String(value.name().trim_start_matches(prefix).to_ascii_lowercase()),
        None => Value::from(number),
    }
}

/// What an absent field reads as: `null` where Stripe's field is nullable (optional fields,
/// messages, oneof members, enums at their zero value), else the proto3 default.
fn default_value(field: &FieldDescriptorProto) -> Value {
    if field.proto3_optional() || field.oneof_index.is_some() {
        return Value::Null;
    }
    match field.r#type() {
        Type::Message | Type::Group | Type::Enum => Value::Null,
        Type::String | Type::Bytes => Value::String(String::new()),
        Type::Bool => Value::Bool(false),
        Type::Double | Type::Float => number_f64(0.0),
        _ => Value::from(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_proto::common::v1::{Address, ApiError, ApiErrorType, Shipping};
    use settle_proto::settle::payments::v1 as payments;

    #[test]
    fn renders_strings_optionals_enums_and_nested_messages() {
        let error = ApiError {
            code: Some("card_declined".into()),
            r#type: ApiErrorType::CardError as i32,
            ..Default::default()
        };
        let json = to_json(&error);
        assert_eq!(json["code"], "card_declined");
        assert_eq!(json["type"], "card_error");
        assert_eq!(json["message"], Value::Null, "absent optional fields are null");
        let shipping = Shipping {
            name: Some("Ada".into()),
            address: Some(Address { city: Some("Paris".into()), ..Default::default() }),
            ..Default::default()
        };
        let json = to_json(&shipping);
        assert_eq!(json["address"]["city"], "Paris");
        assert_eq!(json["address"]["line1"], Value::Null);
        assert_eq!(json["carrier"], Value::Null);
    }

    #[test]
    fn renders_maps_lists_and_numbers() {
        let mut intent = payments::PaymentIntent {
            id: "pi_1".into(),
            amount: -5,
            payment_method_types: vec!["card".into(), "us_bank_account".into()],
            ..Default::default()
        };
        intent.metadata.insert("order".into(), "42".into());
        let json = to_json(&intent);
        assert_eq!(json["amount"], -5);
        assert_eq!(json["amount_received"], 0, "plain scalars read as their default");
        assert_eq!(json["metadata"]["order"], "42");
        assert_eq!(json["payment_method_types"], serde_json::json!(["card", "us_bank_account"]));
        assert_eq!(json["status"], Value::Null, "the zero enum value is null");
    }

    #[test]
    fn previous_attributes_name_only_what_changed_with_its_old_value() {
        let before = Shipping { name: Some("Ada".into()), phone: Some("1".into()), ..Default::default() };
        let after = Shipping { name: Some("Bob".into()), carrier: Some("UPS".into()), ..before.clone() };
        let previous = previous_attributes(&before, &after).unwrap();
        assert_eq!(previous, serde_json::json!({ "name": "Ada", "carrier": null }));
        assert_eq!(previous_attributes(&before, &before), None);
    }
}
