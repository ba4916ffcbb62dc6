//! Probes of what a request carries: NUL and non-UTF-8 text in every text field of a create,
//! 100 KiB ids and filters in every read (bounded error text), saga errors free of internals, the
//! largest payment the contracts allow (a huge event the consumer must get past) and messages
//! above the servers' size limits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};
use settle_platform::auth::DEV_API_KEY;
use settle_proto::common::v1::ListSagasRequest;
use settle_proto::common::v1::saga_service_client::SagaServiceClient;
use settle_proto::settle::creditnotes::v1 as cnpb;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::payments::v1 as ppb;
use settle_testkit::{LIVE_API_KEY, OTHER_API_KEY};
use tonic::Code;

use super::{Probe, ProbeEnv};
use crate::api::Api;
use crate::fuzz::schema::Method;
use crate::fuzz::wire::{self, Answer};
use crate::process::Service;

fn api(env: &ProbeEnv<'_>) -> Api {
    Api::new(env.channels.invoices.clone(), env.channels.payments.clone())
        .with_credit_notes(env.channels.credit_notes.clone())
}

fn method<'a>(env: &'a ProbeEnv<'_>, short: &str) -> Option<&'a Method> {
    env.methods.iter().find(|m| m.short() == short && !m.nodes.is_empty())
}

/// Metadata of a probe's raw call: the test key.
fn key_metadata(key: &str) -> tonic::metadata::MetadataMap {
    wire::metadata(&[("authorization".to_owned(), format!("Bearer {key}"))]).0
}

/// A raw call of `method` with `body`, judged like any probe call.
async fn raw(
    env: &ProbeEnv<'_>,
    p: &mut Probe,
    method: &Method,
    body: Vec<u8>,
) -> Option<Result<Vec<u8>, tonic::Status>> {
    p.requests += 1;
    let channel = env.channels.of(method.nodes[0]);
    match wire::unary(channel, &method.path, body, key_metadata(DEV_API_KEY), env.deadline).await {
        Answer::Hung => {
            p.fail("hang (no answer within the deadline)", &method.short(), "-", "");
            None
        }
        Answer::Ok(body) => {
            p.succeeded += 1;
            Some(Ok(body))
        }
        Answer::Err(status) => {
            p.judge_refusal(&method.short(), &status);
            Some(Err(status))
        }
    }
}

// === text fields ===

/// How a text value sits in a field.
#[derive(Clone, Copy)]
enum Leaf {
    Single,
    Repeated,
    MapValue,
}

/// Every text field of `descriptor` down to `depth` nested messages (the first entry of a repeated
/// message), as the path of fields leading to it.
fn text_fields(
    descriptor: &MessageDescriptor,
    depth: usize,
    prefix: &[FieldDescriptor],
    out: &mut Vec<(Vec<FieldDescriptor>, Leaf)>,
) {
    for field in descriptor.fields() {
        let mut path = prefix.to_vec();
        path.push(field.clone());
        match field.kind() {
            Kind::String if field.is_list() => out.push((path, Leaf::Repeated)),
            Kind::String => out.push((path, Leaf::Single)),
            Kind::Message(inner) if field.is_map() => {
                if matches!(inner.map_entry_value_field().kind(), Kind::String) {
                    out.push((path, Leaf::MapValue));
                }
            }
            Kind::Message(inner) if depth > 0 && !inner.full_name().starts_with("google.") => {
                text_fields(&inner, depth - 1, &path, out);
            }
            _ => {}
        }
    }
}

/// `message` with `text` in the field at `path`.
fn with_text(message: &mut DynamicMessage, path: &[FieldDescriptor], leaf: Leaf, text: &str) {
    let Some((field, rest)) = path.split_first() else { return };
    if rest.is_empty() {
        let value = match leaf {
            Leaf::Single => Value::String(text.to_owned()),
            Leaf::Repeated => Value::List(vec![Value::String(text.to_owned())]),
            Leaf::MapValue => {
                Value::Map(HashMap::from([(MapKey::String("probe".into()), Value::String(text.to_owned()))]))
            }
        };
        return message.set_field(field, value);
    }
    let Kind::Message(inner) = field.kind() else { return };
    let slot = message.get_field_mut(field);
    if let Value::List(items) = slot {
        if items.is_empty() {
            items.push(Value::Message(DynamicMessage::new(inner)));
        }
        if let Some(Value::Message(first)) = items.first_mut() {
            with_text(first, rest, leaf, text);
        }
    } else if let Some(nested) = slot.as_message_mut() {
        with_text(nested, rest, leaf, text);
    }
}

fn dotted(path: &[FieldDescriptor]) -> String {
    path.iter().map(|f| f.name()).collect::<Vec<_>>().join(".")
}

/// Where invalid UTF-8 goes: text of this length is replaced byte for byte after encoding.
const MARKER: &str = "PROBE_NOT_UTF8_XY";
const NOT_UTF8: &[u8; 17] = b"\xc3\x28\xff\xfe\xc0\x80\xed\xa0\x80\xf8\x88\x80\x80\x80ab\xe2";

fn replace_marker(mut body: Vec<u8>) -> Vec<u8> {
    let marker = MARKER.as_bytes();
    let mut at = 0;
    while let Some(found) = body[at..].windows(marker.len()).position(|w| w == marker) {
        body[at + found..at + found + marker.len()].copy_from_slice(NOT_UTF8);
        at += found + marker.len();
    }
    body
}

/// NUL characters (and bytes that are no UTF-8) in any text field of a create are refused
/// INVALID_ARGUMENT, never INTERNAL (PostgreSQL cannot store NUL); odd but valid text is served or
/// refused cleanly.
pub async fn nul_text(env: &ProbeEnv<'_>, p: &mut Probe) {
    let test = api(env);
    let customer = format!("cus_probe_nul_{}", env.seed);
    let open = match test.draft(&customer, 5_000, false).await {
        Ok(draft) => test.finalize(&draft.id, None).await.map(|i| i.id).unwrap_or(draft.id),
        Err(_) => String::new(),
    };
    let draft = test.draft(&customer, 1_000, false).await.map(|d| d.id).unwrap_or_default();
    let bases: Vec<(&str, Vec<u8>)> = vec![
        (
            "InvoiceService/CreateInvoice",
            pb::CreateInvoiceRequest {
                customer: Some(customer.clone()),
                currency: Some("usd".into()),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "InvoiceService/AddLines",
            pb::AddLinesRequest {
                id: draft,
                lines: vec![pb::InvoiceLineParams { amount: Some(100), ..Default::default() }],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "PaymentIntentService/CreatePaymentIntent",
            ppb::CreatePaymentIntentRequest {
                amount: 1_000,
                currency: "usd".into(),
                customer: Some(customer.clone()),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "CreditNoteService/CreateCreditNote",
            cnpb::CreateCreditNoteRequest { invoice: open, amount: Some(100), ..Default::default() }
                .encode_to_vec(),
        ),
        (
            "PaymentRecordService/ReportPayment",
            ppb::ReportPaymentRequest {
                initiated_at: settle_platform::time::now_unix() - 60,
                amount_requested: Some(ppb::PaymentRecordAmount { currency: "usd".into(), value: 1_000 }),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ];
    let depth = if env.ci { 2 } else { 3 };
    for (short, base) in bases {
        let Some(method) = method(env, short) else {
            p.fail("the method is not served", short, "-", "");
            continue;
        };
        let Ok(base) = DynamicMessage::decode(method.input.clone(), base.as_slice()) else { continue };
        let mut fields = Vec::new();
        text_fields(&method.input, depth, &[], &mut fields);
        for (path, leaf) in &fields {
            let field = dotted(path);
            let cases: Vec<(&str, String, bool)> = {
                let mut cases =
                    vec![("NUL", format!("probe\0{field}"), true), ("not UTF-8", MARKER.to_owned(), true)];
                if path.len() == 1 {
                    for odd in
                        ["\u{FFFD}\u{FEFF}probe", "\\u0000\\xC0\\x80 %00", "\u{202E}probe\u{10FFFF}\u{0301}"]
                    {
                        cases.push(("odd text", odd.to_owned(), false));
                    }
                }
                cases
            };
            for (kind, text, must_refuse) in cases {
                let mut message = base.clone();
                with_text(&mut message, path, *leaf, &text);
                let body = replace_marker(message.encode_to_vec());
                let answer = raw(env, p, method, body).await;
                if must_refuse {
                    let what = format!("{kind} in {field}");
                    p.expect_refused(short, &answer, &[Code::InvalidArgument], &what);
                }
            }
        }
    }
}

// === error text ===

/// Words that show a database, SQL, an address or a host in text a client reads.
fn internals(text: &str, host: &str) -> Option<&'static str> {
    let checks: [(&'static str, bool); 10] = [
        ("database:", text.to_lowercase().contains("database:")),
        ("SELECT", text.contains("SELECT ")),
        ("INSERT", text.contains("INSERT INTO")),
        ("UPDATE", text.contains("UPDATE ") && text.contains(" SET ")),
        ("WHERE", text.contains(" WHERE ")),
        ("SQLSTATE", text.contains("SQLSTATE") || text.contains("sqlx")),
        ("relation/constraint", text.contains("relation \"") || text.contains("constraint \"")),
        ("127.0.0.1", text.contains("127.0.0.1") || text.contains("localhost")),
        ("http://", text.contains("http://") || text.contains("https://")),
        ("host name", !host.is_empty() && text.contains(host)),
    ];
    checks.into_iter().find(|(_, hit)| *hit).map(|(word, _)| word)
}

/// Ids, currencies and filters of 100 KiB in every read answer with a bounded message (≤ 500
/// characters), never INTERNAL; sagas' `last_error` and `lease_holder` show no internals.
pub async fn error_text(env: &ProbeEnv<'_>, p: &mut Probe) {
    let huge = |prefix: &str| format!("{prefix}{}", "z".repeat(100 * 1024));
    let reads: Vec<&Method> = env
        .methods
        .iter()
        .filter(|m| !m.nodes.is_empty() && !m.server_streaming && !m.mutating && !m.internal)
        .collect();
    for method in reads {
        let mut fields = Vec::new();
        text_fields(&method.input, 1, &[], &mut fields);
        for (path, leaf) in &fields {
            let name = dotted(path);
            let prefix = match name.as_str() {
                "id" | "invoice" => "in_",
                n if n.contains("payment_intent") => "pi_",
                n if n.contains("currency") => "us",
                n if n.contains("customer") => "cus_",
                _ => "",
            };
            let mut message = DynamicMessage::new(method.input.clone());
            with_text(&mut message, path, *leaf, &huge(prefix));
            if let Some(Err(status)) = raw(env, p, method, message.encode_to_vec()).await
                && status.message().chars().count() > 500
            {
                let what = format!(
                    "error text of {} characters for a 100 KiB {name}",
                    status.message().chars().count()
                );
                p.fail(what, &method.short(), &super::code(&status), status.message());
            }
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
    let mut checked = 0;
    for (service, channel) in
        [(Service::Invoices, &env.channels.invoices), (Service::CreditNotes, &env.channels.credit_notes)]
    {
        for key in [DEV_API_KEY, LIVE_API_KEY, OTHER_API_KEY] {
            let request = p.request(ListSagasRequest { limit: Some(100), ..Default::default() }, key);
            let answer = p
                .call("SagaService/ListSagas", SagaServiceClient::new(channel.clone()).list_sagas(request))
                .await;
            let Some(Ok(sagas)) = answer else { continue };
            for saga in sagas.data {
                checked += 1;
                for (field, text) in [("last_error", &saga.last_error), ("lease_holder", &saga.lease_holder)]
                {
                    if let Some(text) = text
                        && let Some(word) = internals(text, &host)
                    {
                        p.fail(
                            format!("a saga's {field} shows internals ({word})"),
                            "SagaService/ListSagas",
                            "OK",
                            &format!("{service:?} {}: {text}", saga.id),
                        );
                    }
                }
            }
        }
    }
    p.notes.push(format!("{checked} sagas' last_error and lease_holder checked"));
}

// === a huge event, and messages over the limit ===

fn item(n: usize) -> ppb::PaymentIntentAmountDetailsLineItemParams {
    ppb::PaymentIntentAmountDetailsLineItemParams {
        product_name: format!("{n:04}{}", "p".repeat(1020)),
        product_code: Some("c".repeat(12)),
        unit_of_measure: Some("u".repeat(12)),
        quantity: 1,
        unit_cost: 1,
        ..Default::default()
    }
}

fn huge_intent(customer: &str, items: usize, amount: i64) -> ppb::CreatePaymentIntentRequest {
    ppb::CreatePaymentIntentRequest {
        amount,
        currency: "usd".into(),
        customer: Some(customer.to_owned()),
        description: Some("d".repeat(1000)),
        metadata: (0..50).map(|k| (format!("{k:02}{}", "k".repeat(38)), "v".repeat(500))).collect(),
        payment_method: Some("pm_us_bank_account".into()),
        confirm: Some(true),
        amount_details: Some(ppb::PaymentIntentAmountDetailsParams {
            line_items: (0..items).map(item).collect(),
            enforce_arithmetic_validation: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Waits (at most `limit`) until `invoice` is paid.
async fn paid_within(api: &Api, invoice: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(now) = api.invoice(invoice).await
            && now.status == Some(pb::InvoiceStatus::Paid as i32)
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// The largest payment the contracts allow makes the largest events; one over the limits is
/// refused. Afterwards the invoices consumer still marks an invoice paid by a settled payment.
pub async fn poison_event(env: &ProbeEnv<'_>, p: &mut Probe) {
    let test = api(env);
    let customer = format!("cus_probe_poison_{}", env.seed);
    let rpc = "PaymentIntentService/CreatePaymentIntent";
    for (items, what) in [(201, "201 line items")] {
        let request = p.request(huge_intent(&customer, items, 5_000), DEV_API_KEY);
        let answer = p.call(rpc, test.intents.clone().create_payment_intent(request)).await;
        p.expect_refused(rpc, &answer, &[Code::InvalidArgument], &format!("a payment with {what}"));
    }
    let mut over = huge_intent(&customer, 200, 5_000);
    if let Some(details) = over.amount_details.as_mut() {
        details.line_items[199].product_name.push('x');
    }
    let answer = p.call(rpc, test.intents.clone().create_payment_intent(p.request(over, DEV_API_KEY))).await;
    p.expect_refused(rpc, &answer, &[Code::InvalidArgument], "a line item's product_name of 1025 characters");

    // Two of the largest: one settled alone, one attached to an invoice and settled.
    let huge_invoice = open_invoice(&test, p, &customer, 5_000).await;
    for attach in [false, true] {
        let request = p.request(huge_intent(&customer, 200, 5_000), DEV_API_KEY);
        let answer = p.call(rpc, test.intents.clone().create_payment_intent(request)).await;
        let Some(intent) = p.expect_ok(rpc, answer, "the largest payment the contracts allow") else {
            continue;
        };
        if attach && let Some(invoice) = &huge_invoice {
            let done = p
                .call("InvoiceService/AttachPayment", async {
                    test.attach(invoice, &intent.id, None).await.map(tonic::Response::new)
                })
                .await;
            p.expect_ok("InvoiceService/AttachPayment", done, "attaching the largest payment");
        }
        let settled = p
            .call("TestHelperService/SettlePaymentIntent", async {
                test.settle(&intent.id, true).await.map(tonic::Response::new)
            })
            .await;
        p.expect_ok("TestHelperService/SettlePaymentIntent", settled, "settling the largest payment");
    }

    // The consumer is not stalled: a plain processing payment, attached and settled, pays its invoice.
    let Some(invoice) = open_invoice(&test, p, &customer, 2_000).await else { return };
    let intent = p
        .call(rpc, async {
            test.intent(&customer, 2_000, Some("pm_us_bank_account")).await.map(tonic::Response::new)
        })
        .await;
    let Some(intent) = p.expect_ok(rpc, intent, "a bank debit") else { return };
    let done = p
        .call("InvoiceService/AttachPayment", async {
            test.attach(&invoice, &intent.id, None).await.map(tonic::Response::new)
        })
        .await;
    p.expect_ok("InvoiceService/AttachPayment", done, "attaching a bank debit");
    let settled = p
        .call("TestHelperService/SettlePaymentIntent", async {
            test.settle(&intent.id, true).await.map(tonic::Response::new)
        })
        .await;
    p.expect_ok("TestHelperService/SettlePaymentIntent", settled, "settling the bank debit");
    let limit = Duration::from_secs(20);
    if paid_within(&test, &invoice, limit).await.is_none() {
        p.fail(
            "the event consumer stalled: a settled payment did not pay its invoice within 20 s",
            "InvoiceService/GetInvoice",
            "-",
            &invoice,
        );
    }
    if let Some(invoice) = huge_invoice
        && paid_within(&test, &invoice, Duration::from_secs(2)).await.is_none()
    {
        p.fail(
            "the invoice of the largest payment was not marked paid",
            "InvoiceService/GetInvoice",
            "-",
            &invoice,
        );
    }
}

async fn open_invoice(test: &Api, p: &mut Probe, customer: &str, total: i64) -> Option<String> {
    let draft = p
        .call("InvoiceService/CreateInvoice", async {
            test.draft(customer, total, false).await.map(tonic::Response::new)
        })
        .await;
    let draft = p.expect_ok("InvoiceService/CreateInvoice", draft, "a draft")?;
    let open = p
        .call("InvoiceService/FinalizeInvoice", async {
            test.finalize(&draft.id, None).await.map(tonic::Response::new)
        })
        .await;
    p.expect_ok("InvoiceService/FinalizeInvoice", open, "finalizing").map(|i| i.id)
}

/// `body` with an unknown length-delimited field of `size` bytes appended (prost skips it, so only
/// a message-size limit refuses it).
fn with_unknown_field(mut body: Vec<u8>, size: usize) -> Vec<u8> {
    prost::encoding::encode_key(999, prost::encoding::WireType::LengthDelimited, &mut body);
    prost::encoding::encode_varint(size as u64, &mut body);
    body.resize(body.len() + size, b'u');
    body
}

/// Messages above 1 MiB and around 4 MiB are refused with a clean status on every service.
pub async fn oversized(env: &ProbeEnv<'_>, p: &mut Probe) {
    let mib = 1024 * 1024;
    let creates = [
        "InvoiceService/CreateInvoice",
        "PaymentIntentService/CreatePaymentIntent",
        "CreditNoteService/CreateCreditNote",
    ];
    let refusals = [Code::ResourceExhausted, Code::OutOfRange, Code::InvalidArgument];
    for short in creates {
        let Some(method) = method(env, short) else { continue };
        let Some(description) =
            method.input.get_field_by_name("description").or_else(|| method.input.get_field_by_name("memo"))
        else {
            continue;
        };
        for (size, what) in [
            (mib + mib / 2, "1.5 MiB text"),
            (4 * mib - 1024, "a text just under 4 MiB"),
            (4 * mib + 64 * 1024, "an unknown field of 4 MiB"),
        ] {
            let mut message = DynamicMessage::new(method.input.clone());
            let body = if what.starts_with("an unknown") {
                with_unknown_field(message.encode_to_vec(), size)
            } else {
                message.set_field(&description, Value::String("x".repeat(size)));
                message.encode_to_vec()
            };
            let answer = raw(env, p, method, body).await;
            p.expect_refused(short, &answer, &refusals, &format!("a message with {what}"));
        }
    }
    // Still answering ordinary calls.
    let test = api(env);
    let listed = p
        .call(
            "InvoiceService/ListInvoices",
            test.invoices.clone().list_invoices(
                p.request(pb::ListInvoicesRequest { limit: Some(1), ..Default::default() }, DEV_API_KEY),
            ),
        )
        .await;
    p.expect_ok("InvoiceService/ListInvoices", listed, "a plain list after oversized messages");
}
