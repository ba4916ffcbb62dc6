//! Generates one request from a seed, an index and what earlier answers taught (the harvest): a
//! method, a caller with its metadata, and a body. Bodies are dynamic messages built from the
//! method's input descriptor, so every field of every RPC is reached without per-RPC code, with a
//! plausible value most of the time (so requests get past validation and into deep paths) and a
//! hostile one as often as the case's flavor asks. A few recipes build known-good requests (an
//! invoice with lines, a succeeded intent, an attach, a credit note) to keep the state rich.
//!
//! The same seed, index and harvest give the same request, byte for byte.

use prost::Message;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value,
};

use super::harvest::{Harvest, Scope};
use super::schema::Method;
use crate::rng::Rng;

/// The largest string a hostile field gets outside the oversized flavor (~1 MiB).
pub const HUGE_STRING: usize = 1 << 20;

/// What kind of hostility a case carries: the class its answers are reported under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flavor {
    /// A known-good request from a recipe.
    Valid,
    /// Plausible values everywhere, the harvest's own ids: a well-formed request of any RPC.
    Plausible,
    /// i64/i32 min and max, zero, negatives, sums that overflow.
    ExtremeNumbers,
    /// Strings up to ~1 MiB.
    HugeStrings,
    /// NUL bytes, odd Unicode, injection-looking and malformed text.
    OddText,
    /// Enum numbers no enum has.
    BadEnums,
    /// Many repeated entries and map entries, nested messages filled to their depth.
    ManyEntries,
    /// Ids and cursors of another account or of the other mode.
    ForeignIds,
    /// `settle-account` / `settle-livemode` sent with a normal key, to act for someone else.
    ForgedMetadata,
    /// A missing, garbage or truncated `authorization`.
    BadAuth,
    /// An idempotency key that is empty, too long, blank or odd.
    BadIdempotencyKey,
    /// An earlier call again, with its idempotency key: it must replay.
    IdempotencyReplay,
    /// An earlier idempotency key with a different body: it must be refused.
    IdempotencyConflict,
    /// A message above 1 MiB.
    Oversized,
    /// Bytes that are not a valid encoding of the input message.
    MalformedBytes,
    /// Many concurrent `StreamEvents`-like streams at once.
    ManyStreams,
}

impl Flavor {
    const WEIGHTED: [(Flavor, u32); 16] = [
        (Flavor::Valid, 22),
        (Flavor::Plausible, 14),
        (Flavor::ExtremeNumbers, 8),
        (Flavor::HugeStrings, 5),
        (Flavor::OddText, 8),
        (Flavor::BadEnums, 5),
        (Flavor::ManyEntries, 4),
        (Flavor::ForeignIds, 12),
        (Flavor::ForgedMetadata, 5),
        (Flavor::BadAuth, 3),
        (Flavor::BadIdempotencyKey, 3),
        (Flavor::IdempotencyReplay, 4),
        (Flavor::IdempotencyConflict, 3),
        (Flavor::Oversized, 1),
        (Flavor::MalformedBytes, 3),
        (Flavor::ManyStreams, 1),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Valid => "valid",
            Flavor::Plausible => "plausible",
            Flavor::ExtremeNumbers => "extreme-numbers",
            Flavor::HugeStrings => "huge-strings",
            Flavor::OddText => "odd-text",
            Flavor::BadEnums => "bad-enums",
            Flavor::ManyEntries => "many-entries",
            Flavor::ForeignIds => "foreign-ids",
            Flavor::ForgedMetadata => "forged-metadata",
            Flavor::BadAuth => "bad-auth",
            Flavor::BadIdempotencyKey => "bad-idempotency-key",
            Flavor::IdempotencyReplay => "idempotency-replay",
            Flavor::IdempotencyConflict => "idempotency-conflict",
            Flavor::Oversized => "oversized",
            Flavor::MalformedBytes => "malformed-bytes",
            Flavor::ManyStreams => "many-streams",
        }
    }
}

/// Who a case calls as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A normal API key of `Scope`.
    Key(Scope),
    /// No valid key: whatever `authorization` holds (nothing when `None`).
    Unauthenticated(Option<String>),
}

impl Caller {
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Caller::Key(scope) => Some(*scope),
            Caller::Unauthenticated(_) => None,
        }
    }
}

/// One generated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub index: u64,
    pub flavor: Flavor,
    /// Index into the catalog.
    pub method: usize,
    /// Which of the method's nodes to call (index into `Method::nodes`).
    pub node: usize,
    pub caller: Caller,
    /// Extra metadata (besides `authorization`), in order.
    pub metadata: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub body: Vec<u8>,
    /// For `ManyStreams`: how many streams to open at once.
    pub streams: usize,
    /// The answer an idempotent replay must give (the earlier call's).
    pub replay_of: Option<Vec<u8>>,
    /// For a conflicting reuse of an idempotency key that earlier succeeded.
    pub conflicts_with_success: bool,
}

/// Generates cases for the methods of a catalog.
pub struct Generator<'a> {
    pub methods: &'a [Method],
    pub seed: u64,
    /// The Unix time timestamps are drawn around (fixed per run, so a run's requests replay).
    pub now: i64,
}

impl<'a> Generator<'a> {
    pub fn new(methods: &'a [Method], seed: u64) -> Generator<'a> {
        Generator::at(methods, seed, settle_platform::time::now_unix())
    }

    pub fn at(methods: &'a [Method], seed: u64, now: i64) -> Generator<'a> {
        Generator { methods, seed, now }
    }

    /// Request `index` of the run. The first requests walk every served method once, so each RPC
    /// is covered whatever the count.
    pub fn case(&self, index: u64, harvest: &Harvest) -> Case {
        let mut rng = Rng::fork(self.seed, index);
        let served: Vec<usize> =
            (0..self.methods.len()).filter(|i| !self.methods[*i].nodes.is_empty()).collect();
        let weights: Vec<u32> = Flavor::WEIGHTED.iter().map(|(_, w)| *w).collect();
        let mut flavor = Flavor::WEIGHTED[rng.weighted(&weights)].0;
        if (index as usize) < served.len() {
            flavor = Flavor::Plausible;
        }
        let scope = Scope::ALL[rng.weighted(&[4, 2, 2])];
        let mut case = Case {
            index,
            flavor,
            method: 0,
            node: 0,
            caller: Caller::Key(scope),
            metadata: Vec::new(),
            idempotency_key: None,
            body: Vec::new(),
            streams: 0,
            replay_of: None,
            conflicts_with_success: false,
        };
        if served.is_empty() {
            return case;
        }
        case.method =
            served[if (index as usize) < served.len() { index as usize } else { rng.index(served.len()) }];

        match flavor {
            Flavor::Valid => {
                if let Some((method, body)) = self.recipe(&mut rng, scope, harvest) {
                    case.method = method;
                    case.body = body;
                } else {
                    case.flavor = Flavor::Plausible;
                    case.body = self.body(&mut rng, case.method, scope, Flavor::Plausible, harvest);
                }
            }
            Flavor::IdempotencyReplay | Flavor::IdempotencyConflict => {
                let candidates: Vec<_> =
                    harvest.past.iter().filter(|p| p.method < self.methods.len()).collect();
                if candidates.is_empty() {
                    case.flavor = Flavor::Plausible;
                    case.body = self.body(&mut rng, case.method, scope, Flavor::Plausible, harvest);
                } else {
                    let past = candidates[rng.index(candidates.len())];
                    case.method = past.method;
                    case.caller = Caller::Key(past.scope);
                    case.idempotency_key = Some(past.idempotency_key.clone());
                    if flavor == Flavor::IdempotencyReplay {
                        case.body = past.body.clone();
                        case.replay_of = past.answer.clone();
                    } else {
                        let mut body =
                            self.body(&mut rng, past.method, past.scope, Flavor::Plausible, harvest);
                        if body == past.body {
                            // Still a different request: one more field the server must not ignore.
                            body.extend(self.body(
                                &mut rng,
                                past.method,
                                past.scope,
                                Flavor::Plausible,
                                harvest,
                            ));
                        }
                        // Different bytes can be the same request (a repeated field's last value
                        // wins, unknown fields are dropped): only a request the server reads
                        // differently must be refused.
                        let read = |bytes: &[u8]| {
                            prost_reflect::DynamicMessage::decode(
                                self.methods[past.method].input.clone(),
                                bytes,
                            )
                            .ok()
                            .map(|mut m| {
                                m.take_unknown_fields().for_each(drop);
                                m
                            })
                        };
                        let differs = match (read(&body), read(&past.body)) {
                            (Some(new), Some(old)) => new != old,
                            _ => body != past.body,
                        };
                        case.conflicts_with_success = past.answer.is_some() && differs;
                        case.body = body;
                    }
                }
            }
            Flavor::ManyStreams => {
                if let Some(stream) = (0..self.methods.len())
                    .find(|i| self.methods[*i].server_streaming && !self.methods[*i].nodes.is_empty())
                {
                    case.method = stream;
                }
                case.streams = rng.between(8, 96) as usize;
                // Mostly a plain subscription, so the streams open and hold server resources.
                if rng.chance(0.4) {
                    case.body = self.body(&mut rng, case.method, scope, Flavor::Plausible, harvest);
                }
            }
            Flavor::MalformedBytes => {
                let mut body = self.body(&mut rng, case.method, scope, Flavor::Plausible, harvest);
                malform(&mut rng, &mut body);
                case.body = body;
            }
            Flavor::Oversized => {
                case.body = self.body(&mut rng, case.method, scope, Flavor::Plausible, harvest);
                // An unknown field the server must still refuse to buffer: past 1 MiB, up to 6 MiB.
                let size = rng.between(1 << 20, 6 << 20) as usize;
                append_unknown_bytes(&mut case.body, 4_000, size);
            }
            _ => {
                case.body = self.body(&mut rng, case.method, scope, flavor, harvest);
            }
        }

        let method = &self.methods[case.method];
        case.node = rng.index(method.nodes.len().max(1));
        if method.mutating && case.idempotency_key.is_none() && rng.chance(0.8) {
            case.idempotency_key = Some(format!("fuzz-{}-{index}", self.seed));
        }
        match case.flavor {
            Flavor::ForgedMetadata => {
                let other = Scope::ALL[rng.index(3)];
                if rng.chance(0.7) {
                    case.metadata
                        .push((settle_platform::auth::ACCOUNT_HEADER.to_owned(), other.account().to_owned()));
                }
                let livemode = ["true", "false", "1", "yes", "TRUE", ""][rng.index(6)];
                case.metadata.push((settle_platform::auth::LIVEMODE_HEADER.to_owned(), livemode.to_owned()));
                if rng.chance(0.2) {
                    case.metadata.push(("settle-account".to_owned(), "acct_settlesystem".to_owned()));
                }
            }
            Flavor::BadAuth => {
                let key = scope.key();
                let garbage = [
                    None,
                    Some(String::new()),
                    Some("Bearer".to_owned()),
                    Some("Bearer ".to_owned()),
                    Some(format!("Basic {key}")),
                    Some(format!("Bearer {key}x")),
                    Some(format!("Bearer {}", &key[..key.len() - 1])),
                    Some(format!("Bearer  {key}  {key}")),
                    Some(format!("Bearer sk_test_{}", "a".repeat(rng.between(1, 16_000) as usize))),
                    Some("Bearer sk_internal_settle_dev".to_owned()),
                    Some("Bearer sk_live_".to_owned()),
                    Some(format!("Bearer {}", key.to_uppercase())),
                ];
                case.caller = Caller::Unauthenticated(garbage[rng.index(garbage.len())].clone());
            }
            Flavor::BadIdempotencyKey => {
                let keys = [
                    String::new(),
                    " ".to_owned(),
                    "\t".to_owned(),
                    "k".repeat(256),
                    "k".repeat(rng.between(257, 8_000) as usize),
                    "key with spaces".to_owned(),
                    "%00".to_owned(),
                    "'; DROP TABLE idempotency_keys; --".to_owned(),
                ];
                case.idempotency_key = Some(keys[rng.index(keys.len())].clone());
            }
            _ => {}
        }
        case
    }

    /// A dynamic message for `method`'s input, encoded.
    fn body(&self, rng: &mut Rng, method: usize, scope: Scope, flavor: Flavor, harvest: &Harvest) -> Vec<u8> {
        let method = &self.methods[method];
        let mut budget = if flavor == Flavor::HugeStrings { 2 * HUGE_STRING } else { 64 * 1024 };
        let ctx =
            Fill { scope, flavor, harvest, output: method.output.full_name().to_owned(), now: self.now };
        let message = fill(rng, &ctx, &method.input, 0, &mut budget);
        encode(&message)
    }

    fn find(&self, path: &str) -> Option<usize> {
        self.methods.iter().position(|m| m.path == path && !m.nodes.is_empty())
    }

    /// A known-good request (method, body) built from the harvest, if its method is served.
    fn recipe(&self, rng: &mut Rng, scope: Scope, harvest: &Harvest) -> Option<(usize, Vec<u8>)> {
        use settle_proto::settle::creditnotes::v1 as cn;
        use settle_proto::settle::invoices::v1 as inv;
        use settle_proto::settle::payments::v1 as pay;

        let customer = format!("cus_fuzz_{}_{}", scope.name().replace('-', "_"), rng.below(3));
        let pick =
            |rng: &mut Rng, ids: Vec<&String>| (!ids.is_empty()).then(|| ids[rng.index(ids.len())].clone());
        let drafts = harvest.ids_in_status(scope, "in_", &["DRAFT"]);
        let open = harvest.ids_in_status(scope, "in_", &["OPEN"]);
        let open_or_paid = harvest.ids_in_status(scope, "in_", &["OPEN", "PAID"]);
        let succeeded = harvest.ids_in_status(scope, "pi_", &["SUCCEEDED"]);
        let processing = harvest.ids_in_status(scope, "pi_", &["PROCESSING"]);
        let credit_notes = harvest.ids_in_status(scope, "cn_", &["ISSUED"]);
        let amount = rng.between(100, 5_000) as i64;

        let settled = rng.chance(0.8);
        let choice = rng.weighted(&[4, 5, 3, 4, 5, 2, 3, 2, 1, 2, 2, 1]);
        let (path, body) = match choice {
            0 => (
                "/settle.invoices.v1.InvoiceService/CreateInvoice",
                inv::CreateInvoiceRequest {
                    customer: Some(customer),
                    currency: Some("usd".into()),
                    collection_method: Some(if rng.chance(0.7) {
                        inv::InvoiceCollectionMethod::SendInvoice as i32
                    } else {
                        inv::InvoiceCollectionMethod::ChargeAutomatically as i32
                    }),
                    days_until_due: Some(30),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            1 => (
                "/settle.invoices.v1.InvoiceService/AddLines",
                inv::AddLinesRequest {
                    id: pick(rng, drafts)?,
                    lines: (0..rng.between(1, 3))
                        .map(|_| inv::InvoiceLineParams { amount: Some(amount), ..Default::default() })
                        .collect(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            2 => (
                "/settle.invoices.v1.InvoiceService/FinalizeInvoice",
                inv::FinalizeInvoiceRequest { id: pick(rng, drafts)?, ..Default::default() }.encode_to_vec(),
            ),
            3 => (
                "/settle.payments.v1.PaymentIntentService/CreatePaymentIntent",
                pay::CreatePaymentIntentRequest {
                    amount,
                    currency: "usd".into(),
                    customer: Some(customer),
                    payment_method: Some(
                        ["pm_card_visa", "pm_card_visa", "pm_us_bank_account", "pm_card_chargeDeclined"]
                            [rng.index(4)]
                        .into(),
                    ),
                    confirm: Some(true),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            4 => (
                "/settle.invoices.v1.InvoiceService/AttachPayment",
                inv::AttachPaymentRequest {
                    id: pick(rng, open)?,
                    payment: Some(inv::attach_payment_request::Payment::PaymentIntent(pick(
                        rng,
                        if settled { succeeded } else { processing.clone() },
                    )?)),
                    expand: vec![],
                }
                .encode_to_vec(),
            ),
            5 => (
                "/settle.payments.v1.TestHelperService/SettlePaymentIntent",
                pay::SettlePaymentIntentRequest {
                    id: pick(rng, processing)?,
                    outcome: if rng.chance(0.8) {
                        pay::SettlementOutcome::Succeeded as i32
                    } else {
                        pay::SettlementOutcome::Failed as i32
                    },
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            6 => (
                "/settle.creditnotes.v1.CreditNoteService/CreateCreditNote",
                cn::CreateCreditNoteRequest {
                    invoice: pick(rng, open_or_paid)?,
                    amount: Some(rng.between(1, 300) as i64),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            7 => (
                "/settle.invoices.v1.InvoiceService/PayInvoice",
                inv::PayInvoiceRequest { id: pick(rng, open)?, ..Default::default() }.encode_to_vec(),
            ),
            8 => (
                "/settle.creditnotes.v1.CreditNoteService/VoidCreditNote",
                cn::VoidCreditNoteRequest { id: pick(rng, credit_notes)? }.encode_to_vec(),
            ),
            9 => (
                "/settle.invoices.v1.CustomerBalanceService/CreateBalanceTransaction",
                inv::CreateBalanceTransactionRequest {
                    customer,
                    amount: if rng.chance(0.5) { -amount } else { amount },
                    currency: "usd".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            10 => (
                "/settle.payments.v1.RefundService/CreateRefund",
                pay::CreateRefundRequest {
                    payment_intent: Some(pick(rng, succeeded)?),
                    amount: Some(rng.between(1, 200) as i64),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            _ => {
                let now = self.now;
                (
                    "/settle.payments.v1.PaymentRecordService/ReportPayment",
                    pay::ReportPaymentRequest {
                        amount_requested: Some(pay::PaymentRecordAmount {
                            currency: "usd".into(),
                            value: amount,
                        }),
                        customer_details: Some(pay::PaymentRecordCustomerDetails {
                            customer: Some(customer),
                            ..Default::default()
                        }),
                        initiated_at: now - 60,
                        payment_method_details: Some(pay::PaymentRecordPaymentMethodDetailsParams {
                            custom: Some(pay::PaymentRecordCustomPaymentMethodDetails {
                                display_name: "Check".into(),
                                r#type: None,
                            }),
                            r#type: Some(pay::PaymentRecordPaymentMethodDetailsType::Custom as i32),
                            ..Default::default()
                        }),
                        outcome: Some(pay::ReportPaymentOutcome::Guaranteed as i32),
                        guaranteed: Some(pay::PaymentRecordGuaranteedParams { guaranteed_at: now - 30 }),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                )
            }
        };
        Some((self.find(path)?, body))
    }
}

/// What field values are drawn from.
struct Fill<'h> {
    scope: Scope,
    flavor: Flavor,
    harvest: &'h Harvest,
    /// The method's output type: an `id` field of the input names one of those.
    output: String,
    now: i64,
}

/// Field names that reference an object, with the prefix of its id.
const REFERENCES: &[(&str, &str)] = &[
    ("invoice", "in_"),
    ("from_invoice", "in_"),
    ("to_invoice", "in_"),
    ("payment_intent", "pi_"),
    ("charge", "ch_"),
    ("latest_charge", "ch_"),
    ("credit_note", "cn_"),
    ("refund", "re_"),
    ("payment_record", "pr_"),
    ("payment_attempt_record", "par_"),
    ("invoice_payment", "inpay_"),
    ("invoice_item", "ii_"),
    ("invoiceitem", "ii_"),
    ("line", "il_"),
    ("line_item", "il_"),
    ("transaction", "cbtxn_"),
    ("saga", "saga_"),
    ("event", "evt_"),
    ("attachment", "patt_"),
    ("payment", "pi_"),
];

/// Text a server must survive without an INTERNAL: NUL bytes, odd Unicode, injection-looking and
/// query-breaking input, and ids that are nearly right.
const ODD_TEXT: &[&str] = &[
    "\0",
    "in_\0abc",
    "usd\0",
    "\u{202e}dsu",
    "\u{feff}usd",
    "e\u{301}\u{301}\u{301}",
    "\u{1f4b8}\u{1f4b8}",
    "\u{ffff}\u{fffe}",
    "\u{10ffff}",
    "\\x00\\xff",
    "' OR '1'='1",
    "'; DROP TABLE invoices; --",
    "%_%",
    "status:'open' AND",
    "amount>=\"",
    "metadata['k",
    "((((((((((",
    "\"\\",
    "in_",
    "pi_",
    "cus_",
    "in_../../etc/passwd",
    "USD",
    "us",
    "xxx",
    "\r\n",
    "  ",
];

/// The extreme integers every numeric field is tried with.
const EXTREME_I64: &[i64] = &[
    0,
    -1,
    1,
    i64::MIN,
    i64::MAX,
    i64::MAX - 1,
    i64::MIN + 1,
    1 << 53,
    -(1 << 53),
    99_999_999,
    100_000_000,
    -2_000,
    i32::MAX as i64 + 1,
];
const EXTREME_I32: &[i32] = &[0, -1, 1, i32::MIN, i32::MAX, 101, 201, 1_000_000, -100];

fn fill(
    rng: &mut Rng,
    ctx: &Fill<'_>,
    descriptor: &MessageDescriptor,
    depth: usize,
    budget: &mut usize,
) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    let deep = ctx.flavor == Flavor::ManyEntries;
    let set_probability = match depth {
        0 => 0.75,
        1 => 0.5,
        _ if deep => 0.6,
        _ => 0.3,
    };
    let max_depth = if deep { 8 } else { 4 };
    let mut oneofs_done: Vec<String> = Vec::new();
    for field in descriptor.fields() {
        if let Some(oneof) = field.containing_oneof()
            && !field.field_descriptor_proto().proto3_optional()
        {
            // One member of a oneof at most (sometimes two, which the wire allows: the last wins).
            if oneofs_done.contains(&oneof.name().to_owned()) && !rng.chance(0.05) {
                continue;
            }
            if !rng.chance(1.0 / oneof.fields().len().max(1) as f64 + 0.2) {
                continue;
            }
            oneofs_done.push(oneof.name().to_owned());
        } else if !rng.chance(set_probability) {
            continue;
        }
        if let Kind::Message(_) = field.kind()
            && depth >= max_depth
            && !field.is_map()
        {
            continue;
        }
        let value = if field.is_map() {
            map_value(rng, ctx, &field, depth, budget)
        } else if field.is_list() {
            let count = repeat_count(rng, ctx.flavor);
            Value::List((0..count).map(|_| single(rng, ctx, &field, depth, budget)).collect())
        } else {
            single(rng, ctx, &field, depth, budget)
        };
        message.set_field(&field, value);
    }
    message
}

fn repeat_count(rng: &mut Rng, flavor: Flavor) -> u64 {
    if flavor == Flavor::ManyEntries && rng.chance(0.5) {
        [201, 251, 1_000, 5_000][rng.index(4)]
    } else {
        rng.weighted(&[3, 5, 2, 1]) as u64
    }
}

fn map_value(
    rng: &mut Rng,
    ctx: &Fill<'_>,
    field: &FieldDescriptor,
    depth: usize,
    budget: &mut usize,
) -> Value {
    let Kind::Message(entry) = field.kind() else { return Value::Map(Default::default()) };
    let key_field = entry.map_entry_key_field();
    let value_field = entry.map_entry_value_field();
    let count = if ctx.flavor == Flavor::ManyEntries && rng.chance(0.5) {
        [51, 100, 1_000][rng.index(3)]
    } else {
        rng.below(4)
    };
    let mut map = std::collections::HashMap::new();
    for n in 0..count {
        let key = match single(rng, ctx, &key_field, depth, budget) {
            Value::String(s) => MapKey::String(if map.contains_key(&MapKey::String(s.clone())) {
                format!("{s}{n}")
            } else {
                s
            }),
            Value::I32(v) => MapKey::I32(v),
            Value::I64(v) => MapKey::I64(v),
            Value::U32(v) => MapKey::U32(v),
            Value::U64(v) => MapKey::U64(v),
            Value::Bool(v) => MapKey::Bool(v),
            _ => MapKey::String(format!("k{n}")),
        };
        map.insert(key, single(rng, ctx, &value_field, depth, budget));
    }
    Value::Map(map)
}

/// Whether this field, in this case, gets its flavor's hostile value (else a plausible one).
fn hostile(rng: &mut Rng, ctx: &Fill<'_>, wanted: Flavor) -> bool {
    ctx.flavor == wanted && rng.chance(0.5)
}

fn single(rng: &mut Rng, ctx: &Fill<'_>, field: &FieldDescriptor, depth: usize, budget: &mut usize) -> Value {
    let name = field.name();
    match field.kind() {
        Kind::String => Value::String(string(rng, ctx, name, budget)),
        Kind::Bytes => Value::Bytes(string(rng, ctx, name, budget).into_bytes().into()),
        Kind::Bool => Value::Bool(rng.chance(0.5)),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(int64(rng, ctx, name)),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(if hostile(rng, ctx, Flavor::ExtremeNumbers) {
            [0, u64::MAX, 1 << 63][rng.index(3)]
        } else {
            int64(rng, ctx, name).unsigned_abs()
        }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(if hostile(rng, ctx, Flavor::ExtremeNumbers) {
                EXTREME_I32[rng.index(EXTREME_I32.len())]
            } else {
                plausible_int(rng, ctx, name) as i32
            })
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(if hostile(rng, ctx, Flavor::ExtremeNumbers) {
            [0, u32::MAX][rng.index(2)]
        } else {
            plausible_int(rng, ctx, name) as u32
        }),
        Kind::Double => Value::F64(if hostile(rng, ctx, Flavor::ExtremeNumbers) {
            [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MAX, f64::MIN_POSITIVE][rng.index(6)]
        } else {
            rng.between(0, 10_000) as f64 / 100.0
        }),
        Kind::Float => Value::F32(if hostile(rng, ctx, Flavor::ExtremeNumbers) {
            [f32::NAN, f32::INFINITY, f32::MAX][rng.index(3)]
        } else {
            rng.between(0, 10_000) as f32 / 100.0
        }),
        Kind::Enum(kind) => {
            let values: Vec<i32> = kind.values().map(|v| v.number()).collect();
            if hostile(rng, ctx, Flavor::BadEnums) || values.is_empty() {
                Value::EnumNumber([-1, 9_999, i32::MAX, i32::MIN, values.len() as i32 + 1][rng.index(5)])
            } else {
                // Mostly a real value other than the zero `UNSPECIFIED`.
                let pick =
                    if values.len() > 1 && rng.chance(0.85) { 1 + rng.index(values.len() - 1) } else { 0 };
                Value::EnumNumber(values[pick])
            }
        }
        Kind::Message(inner) => Value::Message(fill(rng, ctx, &inner, depth + 1, budget)),
    }
}

fn plausible_int(rng: &mut Rng, ctx: &Fill<'_>, name: &str) -> i64 {
    if name == "limit" {
        return rng.between(1, 100) as i64;
    }
    if name.contains("quantity") {
        return rng.between(1, 5) as i64;
    }
    if name.ends_with("_at") || name == "created" || name.contains("date") {
        return ctx.now + rng.between(0, 86_400 * 60) as i64 - 86_400;
    }
    if name.contains("days") {
        return rng.between(1, 60) as i64;
    }
    rng.between(1, 5_000) as i64
}

fn int64(rng: &mut Rng, ctx: &Fill<'_>, name: &str) -> i64 {
    if hostile(rng, ctx, Flavor::ExtremeNumbers) {
        EXTREME_I64[rng.index(EXTREME_I64.len())]
    } else {
        plausible_int(rng, ctx, name)
    }
}

fn string(rng: &mut Rng, ctx: &Fill<'_>, name: &str, budget: &mut usize) -> String {
    if hostile(rng, ctx, Flavor::HugeStrings) && *budget > 1_024 {
        let len = (rng.between(1_024, HUGE_STRING as u64) as usize).min(*budget);
        *budget -= len;
        let unit = ["a", "in_", "\u{e9}", "\u{1f4b8}", "0"][rng.index(5)];
        return unit.repeat(len / unit.len());
    }
    if hostile(rng, ctx, Flavor::OddText) {
        let base = ODD_TEXT[rng.index(ODD_TEXT.len())];
        return if rng.chance(0.3) {
            let real = plausible_string(rng, ctx, name);
            format!("{real}{base}")
        } else {
            base.to_owned()
        };
    }
    if ctx.flavor == Flavor::ForeignIds && is_reference(name) && rng.chance(0.8) {
        let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != ctx.scope).collect();
        let other = others[rng.index(others.len())];
        if name == "cursor" {
            let cursors = ctx.harvest.cursors.get(&other).map_or(&[][..], Vec::as_slice);
            if !cursors.is_empty() {
                return cursors[rng.index(cursors.len())].clone();
            }
        }
        if let Some(id) = reference(rng, ctx.harvest, other, name, &ctx.output) {
            return id;
        }
    }
    plausible_string(rng, ctx, name)
}

fn is_reference(name: &str) -> bool {
    name == "id"
        || name == "cursor"
        || name == "starting_after"
        || name == "ending_before"
        || name.ends_with("_id")
        || REFERENCES.iter().any(|(n, _)| *n == name)
}

/// An id of `scope` fit for a field called `name`.
fn reference(rng: &mut Rng, harvest: &Harvest, scope: Scope, name: &str, output: &str) -> Option<String> {
    let candidates: Vec<&String> = if name == "id" {
        harvest.ids_of(scope, Some(output)).iter().collect()
    } else if let Some((_, prefix)) = REFERENCES.iter().find(|(n, _)| *n == name) {
        harvest.ids_with_prefix(scope, prefix)
    } else {
        harvest.ids_of(scope, None).iter().collect()
    };
    (!candidates.is_empty()).then(|| candidates[rng.index(candidates.len())].clone())
}

fn plausible_string(rng: &mut Rng, ctx: &Fill<'_>, name: &str) -> String {
    match name {
        "currency" => return ["usd", "usd", "usd", "eur"][rng.index(4)].to_owned(),
        "customer" => return format!("cus_fuzz_{}_{}", ctx.scope.name().replace('-', "_"), rng.below(3)),
        "payment_method" => {
            return [
                "pm_card_visa",
                "pm_us_bank_account",
                "pm_card_chargeDeclined",
                "pm_card_chargeDeclinedInsufficientFunds",
            ][rng.index(4)]
            .to_owned();
        }
        "expand" => {
            return ["confirmation_secret", "payments", "lines", "data.payments", "latest_charge"]
                [rng.index(5)]
            .to_owned();
        }
        "query" => {
            return [
                "status:'open'",
                "amount>=1000",
                "customer:'cus_fuzz_test_1'",
                "total>100 AND status:'paid'",
                "metadata['k']:'v'",
                "status:'succeeded' OR amount<5",
            ][rng.index(6)]
            .to_owned();
        }
        "type" | "types" => {
            return [
                "invoice.paid",
                "payment_intent.succeeded",
                "invoice.*",
                "credit_note.created",
                "nothing.matches",
            ][rng.index(5)]
            .to_owned();
        }
        "cursor" => {
            let cursors = ctx.harvest.cursors.get(&ctx.scope).map_or(&[][..], Vec::as_slice);
            if !cursors.is_empty() && rng.chance(0.8) {
                return cursors[rng.index(cursors.len())].clone();
            }
        }
        _ => {}
    }
    if is_reference(name)
        && rng.chance(0.85)
        && let Some(id) = reference(rng, ctx.harvest, ctx.scope, name, &ctx.output)
    {
        return id;
    }
    format!("fuzz {} {}", name, rng.below(1_000))
}

/// Encodes `message` with map entries in key order: prost-reflect keeps maps in a `HashMap`, whose
/// order differs from one process to the next, and a seed must replay the same bytes.
pub fn encode(message: &DynamicMessage) -> Vec<u8> {
    let mut out = Vec::new();
    let descriptor = message.descriptor();
    for (field, value) in message.fields() {
        match (field.kind(), value) {
            (Kind::Message(entry), Value::Map(map)) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (key, value) in entries {
                    let mut pair = DynamicMessage::new(entry.clone());
                    pair.set_field(&entry.map_entry_key_field(), Value::from(key.clone()));
                    pair.set_field(&entry.map_entry_value_field(), value.clone());
                    length_delimited(&mut out, field.number(), &encode(&pair));
                }
            }
            (Kind::Message(_), Value::Message(inner)) => {
                length_delimited(&mut out, field.number(), &encode(inner))
            }
            (Kind::Message(_), Value::List(items)) => {
                for item in items {
                    if let Value::Message(inner) = item {
                        length_delimited(&mut out, field.number(), &encode(inner));
                    }
                }
            }
            _ => {
                // A scalar, enum or packed list: prost-reflect encodes it deterministically.
                let mut single = DynamicMessage::new(descriptor.clone());
                single.set_field(&field, value.clone());
                out.extend(single.encode_to_vec());
            }
        }
    }
    out
}

fn length_delimited(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    prost::encoding::encode_varint(u64::from((number << 3) | 2), out);
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Breaks a valid encoding: truncation, a flipped byte, a length past the end, a wrong wire type,
/// invalid UTF-8 in a string, or plain noise.
fn malform(rng: &mut Rng, body: &mut Vec<u8>) {
    match rng.below(6) {
        0 if !body.is_empty() => {
            let cut = rng.index(body.len());
            body.truncate(cut);
        }
        1 if !body.is_empty() => {
            let at = rng.index(body.len());
            body[at] ^= 0xff;
        }
        2 => body.extend_from_slice(&[0x0a, 0xff, 0xff, 0xff, 0x0f, b'x']),
        3 => body.extend_from_slice(&[0x0d, 0x01]),
        4 => {
            // Field 1 as a length-delimited string holding bytes that are not UTF-8.
            body.splice(0..0, [0x0a, 0x04, 0xff, 0xfe, 0xc3, 0x28]);
        }
        _ => {
            *body = (0..rng.between(1, 64)).map(|_| rng.next_u64() as u8).collect();
        }
    }
}

/// Appends unknown length-delimited fields (number `field`) holding `size` bytes in all.
fn append_unknown_bytes(body: &mut Vec<u8>, field: u32, size: usize) {
    let key = (field << 3) | 2;
    prost::encoding::encode_varint(u64::from(key), body);
    prost::encoding::encode_varint(size as u64, body);
    body.resize(body.len() + size, b'z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::harvest::PastCall;
    use crate::process::Service;
    use prost_reflect::DescriptorPool;

    fn methods() -> Vec<Method> {
        let pool = DescriptorPool::decode(settle_proto::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|e| panic!("descriptor set: {e}"));
        let mut methods = super::super::schema::catalog(&pool, &[]);
        for method in &mut methods {
            method.nodes = vec![Service::Invoices];
        }
        methods
    }

    fn harvest() -> Harvest {
        let mut harvest = Harvest::default();
        for (scope, ids) in [
            (Scope::Test, ["in_test1", "pi_test1", "cn_test1"]),
            (Scope::Other, ["in_other1", "pi_other1", "cn_other1"]),
            (Scope::Live, ["in_live1", "pi_live1", "cn_live1"]),
        ] {
            for id in ids {
                harvest.ids.entry(scope).or_default().push(id.to_owned());
                harvest.owner.insert(id.to_owned(), scope);
            }
        }
        harvest.status.insert("in_test1".into(), "INVOICE_STATUS_OPEN".into());
        harvest.status.insert("pi_test1".into(), "PAYMENT_INTENT_STATUS_SUCCEEDED".into());
        harvest.cursors.insert(Scope::Other, vec!["cursor-of-other".into()]);
        harvest.remember(PastCall {
            scope: Scope::Test,
            method: 0,
            body: vec![],
            idempotency_key: "k1".into(),
            answer: Some(vec![1]),
        });
        harvest
    }

    #[test]
    fn the_same_seed_gives_the_same_requests() {
        let methods = methods();
        let harvest = harvest();
        let a = Generator::at(&methods, 42, 1_800_000_000);
        let b = Generator::at(&methods, 42, 1_800_000_000);
        for index in 0..400 {
            assert_eq!(a.case(index, &harvest), b.case(index, &harvest), "request {index}");
        }
    }

    #[test]
    fn another_seed_gives_other_requests() {
        let methods = methods();
        let harvest = harvest();
        let (a, b) = (Generator::new(&methods, 1), Generator::new(&methods, 2));
        let differing = (0..200).filter(|i| a.case(*i, &harvest) != b.case(*i, &harvest)).count();
        assert!(differing > 150, "{differing}");
    }

    #[test]
    fn the_first_requests_cover_every_method_once() {
        let methods = methods();
        let generator = Generator::new(&methods, 7);
        let covered: std::collections::BTreeSet<usize> =
            (0..methods.len() as u64).map(|i| generator.case(i, &Harvest::default()).method).collect();
        assert_eq!(covered.len(), methods.len());
    }

    #[test]
    fn every_flavor_is_generated_and_bodies_decode_unless_malformed() {
        let methods = methods();
        let harvest = harvest();
        let generator = Generator::new(&methods, 3);
        let mut flavors = std::collections::BTreeSet::new();
        for index in methods.len() as u64..methods.len() as u64 + 1_200 {
            let case = generator.case(index, &harvest);
            flavors.insert(case.flavor);
            let input = methods[case.method].input.clone();
            let decodes = DynamicMessage::decode(input, case.body.as_slice()).is_ok();
            if !matches!(
                case.flavor,
                Flavor::MalformedBytes | Flavor::IdempotencyReplay | Flavor::IdempotencyConflict
            ) {
                assert!(decodes, "request {index} ({:?}) does not decode", case.flavor);
            }
            if case.flavor == Flavor::Oversized {
                assert!(case.body.len() > 1 << 20);
            }
        }
        assert_eq!(flavors.len(), Flavor::WEIGHTED.len(), "{flavors:?}");
    }

    #[test]
    fn foreign_ids_come_from_another_scope() {
        let methods = methods();
        let harvest = harvest();
        let generator = Generator::new(&methods, 11);
        let mut foreign = 0;
        for index in methods.len() as u64..methods.len() as u64 + 1_200 {
            let case = generator.case(index, &harvest);
            let Caller::Key(scope) = case.caller else { continue };
            if case.flavor != Flavor::ForeignIds {
                continue;
            }
            let text = String::from_utf8_lossy(&case.body);
            for (id, owner) in &harvest.owner {
                if text.contains(id.as_str()) && *owner != scope {
                    foreign += 1;
                }
            }
        }
        assert!(foreign > 20, "{foreign}");
    }
}
