//! Limits every request is held to before a handler sees it, read from the contracts themselves.
//!
//! Each string and repeated field of every request message is checked, at any depth:
//! - no string contains a NUL character (PostgreSQL cannot store one in `TEXT`, and no Stripe
//!   parameter takes one);
//! - a string is at most the length its proto comment documents ("at most 1024 characters"), else
//!   Stripe's general limit of 5000 characters;
//! - a repeated field has at most the entries its comment documents ("at most 200", "up to 4"),
//!   else 250.
//!
//! The documented limits are parsed from the comments in the descriptor set `settle-proto` embeds,
//! so a limit written in a contract is enforced without a second list to keep in step. A request is
//! walked in its wire form, which costs one encode and one pass over the bytes.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::encoding::{WireType, decode_key, decode_varint};
use prost::{Message, Name};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use settle_proto::common::v1::ErrorReason;

use crate::error::ApiError;

/// Stripe's limit for a string parameter that documents none.
pub const DEFAULT_MAX_CHARS: usize = 5000;
/// The entries a repeated parameter that documents no limit may have.
pub const DEFAULT_MAX_ITEMS: usize = 250;
/// Nesting beyond this is refused (no settle request nests this deep).
const MAX_DEPTH: usize = 32;

/// What a field is, for the walk.
#[derive(Debug, Clone)]
enum Kind {
    Text {
        max_chars: usize,
    },
    /// A nested message (map entries included), by index into [`Limits::messages`].
    Message(Option<usize>),
    Other,
}

#[derive(Debug, Clone)]
struct FieldLimits {
    name: String,
    kind: Kind,
    /// `Some(max)` for a repeated field.
    max_items: Option<usize>,
    /// A map entry: its key/value are checked, its name is not shown per key.
    is_map: bool,
}

#[derive(Debug, Default)]
struct MessageLimits {
    fields: HashMap<u32, FieldLimits>,
}

#[derive(Debug, Default)]
struct Limits {
    messages: Vec<MessageLimits>,
    by_name: HashMap<String, usize>,
}

fn limits() -> &'static Limits {
    static LIMITS: OnceLock<Limits> = OnceLock::new();
    LIMITS.get_or_init(|| {
        // The set is generated at build time from the same protos (a unit test reads it); an
        // unreadable one would leave only the checks that need no descriptor.
        FileDescriptorSet::decode(settle_proto::FILE_DESCRIPTOR_SET)
            .map(|set| Limits::build(&set))
            .unwrap_or_default()
    })
}

impl Limits {
    fn build(set: &FileDescriptorSet) -> Limits {
        // Pass 1: every message's full name and its leading field comments.
        let mut found: Vec<(String, DescriptorProto, Vec<Option<String>>)> = Vec::new();
        for file in &set.file {
            let comments: HashMap<Vec<i32>, String> = file
                .source_code_info
                .iter()
                .flat_map(|info| &info.location)
                .filter_map(|l| {
                    l.leading_comments
                        .clone()
                        .or_else(|| l.trailing_comments.clone())
                        .map(|c| (l.path.clone(), c))
                })
                .collect();
            for (i, message) in file.message_type.iter().enumerate() {
                let path = vec![4, i32::try_from(i).unwrap_or(i32::MAX)];
                collect(&format!(".{}", file.package()), message, path, &comments, &mut found);
            }
        }
        let mut limits = Limits::default();
        for (i, (name, _, _)) in found.iter().enumerate() {
            limits.by_name.insert(name.clone(), i);
        }
        // Pass 2: each field's kind and limits.
        for (_, message, comments) in &found {
            let mut fields = HashMap::new();
            for (field, comment) in message.field.iter().zip(comments) {
                let repeated = field.label() == Label::Repeated;
                let comment = comment.as_deref().map(normalize).unwrap_or_default();
                let kind = match field.r#type() {
                    Type::String => {
                        Kind::Text { max_chars: documented_chars(&comment).unwrap_or(DEFAULT_MAX_CHARS) }
                    }
                    Type::Message => Kind::Message(limits.by_name.get(field.type_name()).copied()),
                    _ => Kind::Other,
                };
                let is_map = matches!(kind, Kind::Message(Some(i)) if found[i].1.options.as_ref().is_some_and(|o| o.map_entry()));
                let max_items = repeated.then(|| documented_items(&comment).unwrap_or(DEFAULT_MAX_ITEMS));
                let number = u32::try_from(field.number()).unwrap_or_default();
                fields.insert(number, FieldLimits { name: field.name().to_owned(), kind, max_items, is_map });
            }
            limits.messages.push(MessageLimits { fields });
        }
        limits
    }
}

fn collect(
    scope: &str,
    message: &DescriptorProto,
    path: Vec<i32>,
    comments: &HashMap<Vec<i32>, String>,
    out: &mut Vec<(String, DescriptorProto, Vec<Option<String>>)>,
) {
    let name = format!("{scope}.{}", message.name());
    let field_comments = (0..message.field.len())
        .map(|i| {
            let mut field_path = path.clone();
            field_path.extend([2, i32::try_from(i).unwrap_or(i32::MAX)]);
            comments.get(&field_path).cloned()
        })
        .collect();
    for (i, nested) in message.nested_type.iter().enumerate() {
        let mut nested_path = path.clone();
        nested_path.extend([3, i32::try_from(i).unwrap_or(i32::MAX)]);
        collect(&name, nested, nested_path, comments, out);
    }
    out.push((name, message.clone(), field_comments));
}

/// Lower case, whitespace collapsed, so a limit wrapped across comment lines still reads.
fn normalize(comment: &str) -> String {
    comment.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The numbers a comment gives after "at most" / "up to", each with the words that follow it.
fn stated_limits(comment: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    let words: Vec<&str> =
        comment.split(' ').map(|w| w.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())).collect();
    let mut found = Vec::new();
    for i in 0..words.len().saturating_sub(2) {
        let lead = (words[i], words[i + 1]);
        if matches!(lead, ("at", "most") | ("up", "to")) {
            let digits: String = words[i + 2].chars().filter(|c| c.is_ascii_digit() || *c == ',').collect();
            let number = digits.replace(',', "");
            if !number.is_empty()
                && words[i + 2].starts_with(|c: char| c.is_ascii_digit())
                && let Ok(n) = number.parse::<usize>()
            {
                let after = words[i + 3..].iter().take(3).copied().collect();
                found.push((n, after));
            }
        }
    }
    found.into_iter()
}

/// "at most 1024 characters", "up to 10 alphanumeric characters".
fn documented_chars(comment: &str) -> Option<usize> {
    stated_limits(comment)
        .find(|(_, after)| after.iter().any(|w| w.starts_with("characters")))
        .map(|(n, _)| n)
}

/// "at most 200", "up to 4 custom fields" — not "at most 12 decimal places", not characters.
fn documented_items(comment: &str) -> Option<usize> {
    stated_limits(comment)
        .find(|(_, after)| {
            !after
                .iter()
                .any(|w| w.starts_with("characters") || w.starts_with("decimal") || w.starts_with("years"))
        })
        .map(|(n, _)| n)
}

/// Checks `request` against the limits of its message type.
pub fn check<M: Message + Name>(request: &M) -> Result<(), ApiError> {
    let limits = limits();
    let Some(&index) = limits.by_name.get(&format!(".{}", M::full_name())) else {
        return Ok(());
    };
    let bytes = request.encode_to_vec();
    let mut path = Vec::new();
    walk(limits, index, &bytes, &mut path, 0, false).map_err(|v| v.into_error())
}

/// One step of a parameter path.
#[derive(Debug, Clone)]
enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

/// A limit a request broke.
#[derive(Debug)]
struct Violation {
    param: String,
    message: String,
}

impl Violation {
    fn new(path: &[Step<'_>], message: impl FnOnce(&str) -> String) -> Violation {
        let param = param_name(path);
        let message = message(&param);
        Violation { param, message }
    }

    fn into_error(self) -> ApiError {
        ApiError::invalid_param(&self.param, ErrorReason::ParameterInvalid, self.message)
    }
}

/// Stripe's parameter notation: `amount_details[line_items][3][product_name]`.
fn param_name(path: &[Step<'_>]) -> String {
    let mut name = String::new();
    for (i, step) in path.iter().enumerate() {
        match (i, step) {
            (0, Step::Field(field)) => name.push_str(field),
            (_, Step::Field(field)) => {
                name.push('[');
                name.push_str(field);
                name.push(']');
            }
            (_, Step::Index(index)) => {
                name.push('[');
                name.push_str(&index.to_string());
                name.push(']');
            }
        }
    }
    name
}

fn walk<'a>(
    limits: &'a Limits,
    message: usize,
    mut bytes: &[u8],
    path: &mut Vec<Step<'a>>,
    depth: usize,
    map_entry: bool,
) -> Result<(), Violation> {
    if depth > MAX_DEPTH {
        return Err(Violation::new(path, |p| format!("Invalid object: {p} is nested too deeply.")));
    }
    let Some(fields) = limits.messages.get(message) else { return Ok(()) };
    let mut counts: HashMap<u32, usize> = HashMap::new();
    while !bytes.is_empty() {
        // The bytes come from encoding a decoded message, so they are well formed; anything
        // unreadable ends the walk rather than refusing a request prost accepted.
        let Ok((number, wire)) = decode_key(&mut bytes) else { return Ok(()) };
        let payload = match wire {
            WireType::Varint => {
                let _ = decode_varint(&mut bytes);
                continue;
            }
            WireType::SixtyFourBit => {
                bytes = bytes.get(8..).unwrap_or_default();
                continue;
            }
            WireType::ThirtyTwoBit => {
                bytes = bytes.get(4..).unwrap_or_default();
                continue;
            }
            WireType::LengthDelimited => {
                let Ok(len) = decode_varint(&mut bytes) else { return Ok(()) };
                let Some(len) = usize::try_from(len).ok().filter(|l| *l <= bytes.len()) else {
                    return Ok(());
                };
                let (payload, rest) = bytes.split_at(len);
                bytes = rest;
                payload
            }
            WireType::StartGroup | WireType::EndGroup => return Ok(()),
        };
        let Some(field) = fields.fields.get(&number) else { continue };
        let position = counts.entry(number).or_default();
        let index = *position;
        *position += 1;
        // A map entry's key and value are named by the map (keys are client input).
        if !map_entry {
            path.push(Step::Field(&field.name));
        }
        if let Some(max) = field.max_items {
            if index >= max {
                let error =
                    Violation::new(path, |p| format!("Invalid array: {p} must have at most {max} entries."));
                return Err(error);
            }
            if !field.is_map {
                path.push(Step::Index(index));
            }
        }
        match &field.kind {
            Kind::Text { max_chars } => check_text(payload, *max_chars, path)?,
            Kind::Message(Some(nested)) => walk(limits, *nested, payload, path, depth + 1, field.is_map)?,
            // Packed scalars and bytes carry no text.
            Kind::Message(None) | Kind::Other => {}
        }
        if field.max_items.is_some() && !field.is_map {
            path.pop();
        }
        if !map_entry {
            path.pop();
        }
    }
    Ok(())
}

fn check_text(payload: &[u8], max_chars: usize, path: &[Step<'_>]) -> Result<(), Violation> {
    // prost decoded the field, so it is UTF-8.
    let text = std::str::from_utf8(payload).unwrap_or_default();
    if text.contains('\0') {
        return Err(Violation::new(path, |p| {
            format!("Invalid string: {p} must not contain NUL characters.")
        }));
    }
    // Byte length bounds the character count: most strings skip the count.
    if text.len() > max_chars && text.chars().count() > max_chars {
        return Err(Violation::new(path, |p| {
            format!("Invalid string: {p} must be at most {max_chars} characters long.")
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_proto::settle::invoices::v1 as inv;
    use settle_proto::settle::payments::v1 as pay;

    fn line_item(name: &str) -> pay::PaymentIntentAmountDetailsLineItemParams {
        pay::PaymentIntentAmountDetailsLineItemParams {
            product_name: name.to_owned(),
            quantity: 1,
            unit_cost: 100,
            ..Default::default()
        }
    }

    fn intent_with(
        items: Vec<pay::PaymentIntentAmountDetailsLineItemParams>,
    ) -> pay::CreatePaymentIntentRequest {
        pay::CreatePaymentIntentRequest {
            amount: 100,
            currency: "usd".into(),
            amount_details: Some(pay::PaymentIntentAmountDetailsParams {
                line_items: items,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn refused(error: ApiError) -> (String, String) {
        assert_eq!(error.code, tonic::Code::InvalidArgument);
        assert_eq!(error.reason, ErrorReason::ParameterInvalid);
        let (field, _) = error.field_violations.first().cloned().unwrap_or_default();
        (field, error.message)
    }

    #[test]
    fn documented_limits_are_read_from_the_contracts() {
        assert_eq!(
            documented_chars("the product name of the line item (at most 1024 characters). required."),
            Some(1024)
        );
        assert_eq!(documented_chars("a name (required, at most 100 characters)."), Some(100));
        assert_eq!(documented_chars("a quantity with at most 12 decimal places"), None);
        assert_eq!(documented_items("line items (at most 200)."), Some(200));
        assert_eq!(documented_items("up to 4 custom fields displayed on the invoice."), Some(4));
        assert_eq!(documented_items("only accurate up to 10,000."), Some(10_000));
        assert_eq!(documented_items("a list of at most 12 decimal places"), None);
    }

    #[test]
    fn documented_limits_of_nested_parameters_are_enforced() {
        assert!(check(&intent_with(vec![line_item(&"x".repeat(1024))])).is_ok());
        let long = check(&intent_with(vec![line_item("ok"), line_item(&"x".repeat(1025))])).unwrap_err();
        assert_eq!(
            refused(long),
            (
                "amount_details[line_items][1][product_name]".to_owned(),
                "Invalid string: amount_details[line_items][1][product_name] must be at most 1024 characters long."
                    .to_owned()
            )
        );
        assert!(check(&intent_with((0..200).map(|_| line_item("a")).collect())).is_ok());
        let many = check(&intent_with((0..201).map(|_| line_item("a")).collect())).unwrap_err();
        assert_eq!(refused(many).0, "amount_details[line_items]");
    }

    #[test]
    fn nul_characters_are_refused_anywhere() {
        let request = inv::CreateInvoiceRequest { description: Some("memo\0".into()), ..Default::default() };
        assert_eq!(refused(check(&request).unwrap_err()).0, "description");
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("k".to_owned(), "v\0".to_owned());
        let request = inv::CreateInvoiceRequest { metadata, ..Default::default() };
        assert_eq!(refused(check(&request).unwrap_err()).0, "metadata");
    }

    #[test]
    fn undocumented_strings_take_stripes_general_limit() {
        let ok = inv::GetInvoiceRequest { id: "i".repeat(DEFAULT_MAX_CHARS), ..Default::default() };
        assert!(check(&ok).is_ok());
        let long = inv::GetInvoiceRequest { id: "i".repeat(DEFAULT_MAX_CHARS + 1), ..Default::default() };
        assert_eq!(refused(check(&long).unwrap_err()).0, "id");
        // Characters, not bytes.
        let wide = inv::GetInvoiceRequest { id: "é".repeat(DEFAULT_MAX_CHARS), ..Default::default() };
        assert!(check(&wide).is_ok());
    }

    #[test]
    fn every_documented_request_limit_is_known() {
        let limits = limits();
        assert!(limits.messages.len() > 100, "the descriptor set was read");
        let product_name = limits.by_name[".settle.payments.v1.PaymentIntentAmountDetailsLineItemParams"];
        let field = limits.messages[product_name].fields.values().find(|f| f.name == "product_name").unwrap();
        assert!(matches!(field.kind, Kind::Text { max_chars: 1024 }));
    }
}
