//! The credit note a set of create parameters would issue. Create, Preview and PreviewLines all go
//! through here: [`gather`] reads the facts from invoices and payments (changing nothing anywhere),
//! and [`compute`] turns parameters, facts and what the invoice's other notes already take into
//! the note, or the precise reason it cannot be issued. Create then records it and runs the saga;
//! the previews return it.

use std::collections::{BTreeMap, BTreeSet};

use settle_money::Amount;
use settle_platform::ids::IdPrefix;
use settle_platform::{ApiError, Scope};
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::creditnotes::v1 as pb;
use settle_proto::settle::invoices::v1 as inv;
use settle_proto::settle::payments::v1 as pay;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::domain::error::CreditError;
use crate::domain::lines::{InvoiceLine, LineRequest, credit_lines};
use crate::domain::note;
use crate::domain::refunds::{RefundablePayment, choose_refund_payment, link_amount};
use crate::domain::totals::{self, Settlement};
use crate::grpc::params::{NoteParams, RefundRef};
use crate::model;
use crate::peers::{Peers, unavailable};
use crate::store::credit_notes::{Credited, refund_key};

/// Most open and paid invoice payments a note's refunds are checked against (and, for
/// `refund_amount`, chosen from); an invoice with more is refused, so one request reads them with
/// at most two list calls whatever a hostile invoice holds.
pub const MAX_INVOICE_PAYMENTS: usize = 100;
/// Most refunds a PaymentIntent may have to be chosen for `refund_amount`: one list page.
pub const MAX_REFUNDS_PER_PAYMENT: i32 = 100;
/// Pages of an invoice's lines read (an invoice has at most 250 lines).
const MAX_LINE_PAGES: usize = 3;

/// Everything a note is computed from that other services own.
#[derive(Debug, Clone)]
pub struct Facts {
    pub invoice: inv::Invoice,
    /// The invoice's lines that the parameters name, by id.
    pub lines: BTreeMap<String, InvoiceLine>,
    /// Per `refunds[]` entry: the entry as the note shows it (amount to fill in) and how much the
    /// refund refunded.
    pub linked: Vec<(pb::CreditNoteRefund, Amount)>,
    /// The invoice's PaymentIntents a new refund could be made on (only read for `refund_amount`).
    pub refundable: Vec<RefundablePayment>,
}

/// The new refund a note's `refund_amount` makes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewRefund {
    pub payment_intent: String,
    pub amount: i64,
}

/// The note the parameters would issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub document: pb::CreditNote,
    /// All its lines, in order (the document embeds the first page).
    pub lines: Vec<pb::CreditNoteLineItem>,
    pub settlement: Settlement,
    pub new_refund: Option<NewRefund>,
}

/// How a draft's ids are chosen.
#[derive(Debug, Clone)]
pub enum Ids {
    /// A note to record: fresh ids.
    Fresh,
    /// A preview: ids derived from the parameters, so the same preview gives the same line ids
    /// (usable as paging cursors) and changes nothing.
    Preview { seed: String },
}

impl Ids {
    /// Preview ids for the (normalized) request `request` made in `scope`.
    pub fn preview(scope: &Scope, request: &pb::CreateCreditNoteRequest) -> Ids {
        let digest = Sha256::new()
            .chain_update(scope.account())
            .chain_update([0u8, u8::from(scope.livemode())])
            .chain_update(prost::Message::encode_to_vec(request))
            .finalize();
        let seed: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ids::Preview { seed }
    }

    fn note(&self) -> String {
        match self {
            Ids::Fresh => IdPrefix::CreditNote.generate(),
            Ids::Preview { seed } => format!("{}preview{seed}", IdPrefix::CreditNote.as_str()),
        }
    }

    fn line(&self, position: usize) -> String {
        match self {
            Ids::Fresh => IdPrefix::CreditNoteLine.generate(),
            Ids::Preview { seed } => {
                format!("{}preview{seed}{position:04}", IdPrefix::CreditNoteLine.as_str())
            }
        }
    }
}

fn not_finalized(invoice: &inv::Invoice) -> ApiError {
    let status = inv::InvoiceStatus::try_from(invoice.status.unwrap_or_default())
        .map(|s| s.as_str_name().trim_start_matches("INVOICE_STATUS_").to_ascii_lowercase())
        .unwrap_or_else(|_| "unknown".to_owned());
    ApiError::failed_precondition(
        ErrorReason::StateUnsupported,
        format!(
            "Invoice {} is {status}; credit notes can only be issued for finalized invoices (open, paid or uncollectible).",
            invoice.id
        ),
    )
    .with_violation("invoice", "The invoice is not finalized.")
}

/// Reads the invoice, the lines and refunds the parameters name, and (for `refund_amount`) what the
/// invoice's payments can still refund. Refuses what cannot be credited at all: an unknown invoice,
/// line, refund or record; a draft or void invoice; a refund of a payment the invoice does not
/// count.
pub async fn gather(peers: &Peers, scope: &Scope, params: &NoteParams) -> Result<Facts, ApiError> {
    let invoices = &peers.invoices;
    let request = inv::GetInvoiceRequest { id: params.invoice.clone(), expand: Vec::new() };
    let invoice = match invoices.invoices.clone().get_invoice(invoices.request(scope, request)).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::NotFound => {
            return Err(ApiError::not_found(IdPrefix::Invoice, &params.invoice, "invoice"));
        }
        Err(status) => return Err(unavailable("Reading the invoice", &status)),
    };
    use inv::InvoiceStatus as S;
    if ![S::Open, S::Paid, S::Uncollectible].iter().any(|s| Some(*s as i32) == invoice.status) {
        return Err(not_finalized(&invoice));
    }
    if let Some(rate) = &params.shipping_rate {
        let invoice_rate = invoice.shipping_cost.as_ref().and_then(|s| s.shipping_rate.as_deref());
        if invoice_rate != Some(rate.as_str()) {
            return Err(ApiError::invalid_param(
                "shipping_cost[shipping_rate]",
                ErrorReason::ParameterInvalid,
                match invoice_rate {
                    Some(own) => format!("Invoice {} was shipped at {own}, not {rate}.", invoice.id),
                    None => format!("Invoice {} has no shipping cost to credit.", invoice.id),
                },
            ));
        }
    }
    let wanted: BTreeSet<&str> = params
        .lines
        .iter()
        .filter_map(|l| match &l.request {
            LineRequest::InvoiceLine { line, .. } => Some(line.as_str()),
            LineRequest::Custom { .. } => None,
        })
        .collect();
    let lines =
        if wanted.is_empty() { BTreeMap::new() } else { invoice_lines(peers, scope, &invoice.id).await? };
    let mut facts = Facts { invoice, lines, linked: Vec::new(), refundable: Vec::new() };
    if params.refunds.is_empty() && !params.refund_amount.is_positive() {
        return Ok(facts);
    }
    let payments = invoice_payments(peers, scope, &facts.invoice.id).await?;
    for (i, entry) in params.refunds.iter().enumerate() {
        let linked = linked_refund(peers, scope, &facts.invoice, &payments, entry)
            .await
            .map_err(|e| e.nested_in(&format!("refunds[{i}]")))?;
        facts.linked.push(linked);
    }
    if params.refund_amount.is_positive() {
        facts.refundable = refundable_payments(peers, scope, &payments, params.refund_amount).await?;
    }
    Ok(facts)
}

/// Every line of the invoice, by id.
async fn invoice_lines(
    peers: &Peers,
    scope: &Scope,
    invoice: &str,
) -> Result<BTreeMap<String, InvoiceLine>, ApiError> {
    let invoices = &peers.invoices;
    let mut lines = BTreeMap::new();
    let mut after = None;
    for _ in 0..MAX_LINE_PAGES {
        let request = inv::ListInvoiceLinesRequest {
            id: invoice.to_owned(),
            limit: Some(100),
            starting_after: after,
            ending_before: None,
        };
        let page = invoices
            .invoices
            .clone()
            .list_invoice_lines(invoices.request(scope, request))
            .await
            .map_err(|s| unavailable("Reading the invoice's lines", &s))?
            .into_inner();
        for line in &page.data {
            let read = model::invoice_line(line)
                .map_err(|e| ApiError::internal("An invoice line could not be read", &e))?;
            lines.insert(line.id.clone(), read);
        }
        after = page.data.last().map(|l| l.id.clone());
        if !page.has_more || after.is_none() {
            return Ok(lines);
        }
    }
    Err(ApiError::failed_precondition(
        ErrorReason::StateUnsupported,
        format!("Invoice {invoice} has more lines than an invoice can hold; it cannot be credited by line."),
    ))
}

/// The invoice's invoice payments that count or may count (paid and open), at most
/// [`MAX_INVOICE_PAYMENTS`] of them: one list call per status, refused beyond the cap.
async fn invoice_payments(
    peers: &Peers,
    scope: &Scope,
    invoice: &str,
) -> Result<Vec<inv::InvoicePayment>, ApiError> {
    let invoices = &peers.invoices;
    let mut out = Vec::new();
    for status in [inv::InvoicePaymentStatus::Paid, inv::InvoicePaymentStatus::Open] {
        // One more than what is left under the cap tells whether the invoice is over it.
        let left = MAX_INVOICE_PAYMENTS.saturating_sub(out.len());
        let request = inv::ListInvoicePaymentsRequest {
            invoice: Some(invoice.to_owned()),
            status: Some(status as i32),
            limit: Some(i32::try_from(left.clamp(1, MAX_INVOICE_PAYMENTS)).unwrap_or(1)),
            ..Default::default()
        };
        let page = invoices
            .invoice_payments
            .clone()
            .list_invoice_payments(invoices.request(scope, request))
            .await
            .map_err(|s| unavailable("Reading the invoice's payments", &s))?
            .into_inner();
        if page.has_more || out.len() + page.data.len() > MAX_INVOICE_PAYMENTS {
            return Err(too_many_payments(invoice));
        }
        out.extend(page.data);
    }
    Ok(out)
}

fn too_many_payments(invoice: &str) -> ApiError {
    ApiError::failed_precondition(
        ErrorReason::StateUnsupported,
        format!(
            "Invoice {invoice} has more than {MAX_INVOICE_PAYMENTS} open or paid payments; a credit note with refunds considers at most {MAX_INVOICE_PAYMENTS}."
        ),
    )
}

fn not_attached(payment: &str, invoice: &str, field: &str) -> ApiError {
    ApiError::failed_precondition(
        ErrorReason::PaymentNotAttached,
        format!("{payment} is not a payment of invoice {invoice}; only refunds of the invoice's payments can be linked."),
    )
    .with_violation(field, "The refunded payment is not attached to the invoice.")
}

/// One `refunds[]` entry, read from payments and checked against the invoice. Fields are named
/// relative to the entry.
async fn linked_refund(
    peers: &Peers,
    scope: &Scope,
    invoice: &inv::Invoice,
    payments: &[inv::InvoicePayment],
    entry: &crate::grpc::params::RefundParams,
) -> Result<(pb::CreditNoteRefund, Amount), ApiError> {
    let payments_api = &peers.payments;
    match &entry.refund {
        RefundRef::Refund(id) => {
            let request = pay::GetRefundRequest { id: id.clone() };
            let refund =
                match payments_api.refunds.clone().get_refund(payments_api.request(scope, request)).await {
                    Ok(response) => response.into_inner(),
                    Err(status) if status.code() == Code::NotFound => {
                        return Err(ApiError::not_found(IdPrefix::Refund, id, "refund"));
                    }
                    Err(status) => return Err(unavailable("Reading a refund", &status)),
                };
            let intent = refund.payment_intent.clone().unwrap_or_default();
            let attached = payments.iter().any(|p| {
                p.payment.as_ref().and_then(|p| p.payment_intent.as_deref()) == Some(intent.as_str())
            });
            if !attached {
                return Err(not_attached(&intent, &invoice.id, "refund"));
            }
            if refund.currency != invoice.currency {
                return Err(ApiError::failed_precondition(
                    ErrorReason::CurrencyMismatch,
                    format!("Refund {id} is in {}, the invoice in {}.", refund.currency, invoice.currency),
                )
                .with_violation("refund", "The refund's currency is not the invoice's."));
            }
            if refund.status != Some(pay::RefundStatus::Succeeded as i32) {
                return Err(ApiError::invalid_param(
                    "refund",
                    ErrorReason::RefundExceedsRefundable,
                    format!("Refund {id} has not succeeded: it refunded nothing that could be linked."),
                ));
            }
            let shown = pb::CreditNoteRefund {
                amount_refunded: 0,
                payment_record_refund: None,
                refund: id.clone(),
                r#type: Some(pb::CreditNoteRefundType::Refund as i32),
            };
            Ok((shown, Amount::new(refund.amount)))
        }
        RefundRef::PaymentRecordRefund { payment_record, refund_group } => {
            let record_field = "payment_record_refund[payment_record]";
            let request = pay::GetPaymentRecordRequest { id: payment_record.clone() };
            let record = match payments_api
                .records
                .clone()
                .get_payment_record(payments_api.request(scope, request))
                .await
            {
                Ok(response) => response.into_inner(),
                Err(status) if status.code() == Code::NotFound => {
                    return Err(ApiError::not_found(IdPrefix::PaymentRecord, payment_record, record_field));
                }
                Err(status) => return Err(unavailable("Reading a payment record", &status)),
            };
            let attached = payments.iter().any(|p| {
                p.payment.as_ref().and_then(|p| p.payment_record.as_deref()) == Some(payment_record.as_str())
            });
            if !attached {
                return Err(not_attached(payment_record, &invoice.id, record_field));
            }
            let reported = record
                .reported_refunds
                .iter()
                .find(|r| &r.refund_reference == refund_group)
                .ok_or_else(|| {
                    ApiError::new(
                        Code::NotFound,
                        ErrorReason::ResourceMissing,
                        format!("No such payment record refund: {payment_record} has no refund reported with refund_reference {refund_group:?}."),
                    )
                    .with_violation("payment_record_refund[refund_group]", "No such payment record refund")
                })?;
            let amount = reported.amount.as_ref().map_or(0, |a| a.value);
            let shown = pb::CreditNoteRefund {
                amount_refunded: 0,
                payment_record_refund: Some(pb::CreditNotePaymentRecordRefund {
                    payment_record: payment_record.clone(),
                    refund_group: refund_group.clone(),
                }),
                // A record's refund is not a Refund object (see the proto).
                refund: String::new(),
                r#type: Some(pb::CreditNoteRefundType::PaymentRecordRefund as i32),
            };
            Ok((shown, Amount::new(amount)))
        }
    }
}

/// What the invoice's paid PaymentIntents can still refund, read newest paid first and only until
/// one can refund `amount`: that one is what [`choose_refund_payment`] picks (the newest that
/// fits), so the older ones need no reads. Two calls per payment read (the intent and one page of
/// its refunds), for at most [`MAX_INVOICE_PAYMENTS`] payments.
async fn refundable_payments(
    peers: &Peers,
    scope: &Scope,
    payments: &[inv::InvoicePayment],
    amount: Amount,
) -> Result<Vec<RefundablePayment>, ApiError> {
    let api = &peers.payments;
    let mut candidates: Vec<(i64, String)> = payments
        .iter()
        .filter(|p| p.status == inv::InvoicePaymentStatus::Paid as i32)
        .filter_map(|p| {
            let intent = p.payment.as_ref().and_then(|p| p.payment_intent.clone())?;
            Some((p.status_transitions.as_ref().and_then(|t| t.paid_at).unwrap_or(p.created), intent))
        })
        .collect();
    candidates.sort_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    for (paid_at, intent_id) in candidates {
        let request = pay::GetPaymentIntentRequest { id: intent_id.clone(), client_secret: None };
        let intent = api
            .intents
            .clone()
            .get_payment_intent(api.request(scope, request))
            .await
            .map_err(|s| unavailable("Reading a payment intent", &s))?
            .into_inner();
        let request = pay::ListRefundsRequest {
            payment_intent: Some(intent_id.clone()),
            limit: Some(MAX_REFUNDS_PER_PAYMENT),
            ..Default::default()
        };
        let page = api
            .refunds
            .clone()
            .list_refunds(api.request(scope, request))
            .await
            .map_err(|s| unavailable("Reading a payment's refunds", &s))?
            .into_inner();
        if page.has_more {
            return Err(ApiError::failed_precondition(
                ErrorReason::StateUnsupported,
                format!(
                    "{intent_id} has more than {MAX_REFUNDS_PER_PAYMENT} refunds; link them with refunds[] instead of refund_amount."
                ),
            ));
        }
        let mut refunded = Amount::ZERO;
        for refund in &page.data {
            let gone = [pay::RefundStatus::Failed as i32, pay::RefundStatus::Canceled as i32];
            if !refund.status.is_some_and(|s| gone.contains(&s)) {
                refunded = refunded.checked_add(Amount::new(refund.amount)).unwrap_or(refunded);
            }
        }
        let refundable = Amount::new(intent.amount_received).checked_sub(refunded).unwrap_or(Amount::ZERO);
        out.push(RefundablePayment { payment_intent: intent_id, paid_at, refundable });
        if refundable >= amount {
            break;
        }
    }
    Ok(out)
}

/// Turns parameters and facts into the note, given what the invoice's counted notes already take.
pub fn compute(
    params: &NoteParams,
    facts: &Facts,
    credited: &Credited,
    ids: &Ids,
    scope: &Scope,
    now: i64,
) -> Result<Draft, CreditError> {
    let invoice = &facts.invoice;
    let requests = params.line_requests();
    let line_requests: Vec<LineRequest> = requests.iter().map(|l| l.request.clone()).collect();
    let credited_lines = credit_lines(&line_requests, &facts.lines, &credited.lines)?;
    let shipping = match (&params.shipping_rate, &invoice.shipping_cost) {
        (Some(_), _) if credited.shipping => return Err(CreditError::ShippingAlreadyCredited),
        (Some(_), Some(shipping)) => Some(shipping),
        _ => None,
    };
    let totals = totals::totals(&credited_lines, shipping.map(model::shipping_credit))?;
    totals::check_amount(params.amount, totals.total)?;
    totals::check_within_invoice(Amount::new(invoice.total), credited.total, totals.total)?;

    // Links add up within the note too (the same refund named twice).
    let mut linked_so_far: BTreeMap<String, Amount> = credited.refunds.clone();
    let mut refunds = Vec::with_capacity(facts.linked.len());
    let mut linked_total = Amount::ZERO;
    for (i, ((shown, refunded), entry)) in facts.linked.iter().zip(&params.refunds).enumerate() {
        let key = refund_key(shown);
        let already = linked_so_far.get(&key).copied().unwrap_or(Amount::ZERO);
        let amount = link_amount(i, *refunded, already, entry.amount_refunded)?;
        linked_so_far.insert(key, already.checked_add(amount).map_err(|_| CreditError::Overflow)?);
        linked_total = linked_total.checked_add(amount).map_err(|_| CreditError::Overflow)?;
        refunds.push(pb::CreditNoteRefund { amount_refunded: amount.get(), ..shown.clone() });
    }
    let new_refund = if params.refund_amount.is_positive() {
        let payment = choose_refund_payment(&facts.refundable, params.refund_amount)?;
        Some(NewRefund { payment_intent: payment.to_owned(), amount: params.refund_amount.get() })
    } else {
        None
    };
    let settlement = Settlement {
        new_refund: params.refund_amount,
        linked_refunds: linked_total,
        credit: params.credit_amount,
        out_of_band: params.out_of_band_amount.unwrap_or(Amount::ZERO),
    };
    let split = totals::split(totals.total, Amount::new(invoice.amount_remaining), &settlement)?;

    let id = ids.note();
    let lines: Vec<pb::CreditNoteLineItem> = credited_lines
        .iter()
        .zip(requests)
        .enumerate()
        .map(|(i, (line, request))| {
            model::line_document(ids.line(i), scope.livemode(), line, request.metadata)
        })
        .collect();
    let url = match ids {
        Ids::Fresh => model::lines_url(&id),
        Ids::Preview { .. } => model::PREVIEW_LINES_URL.to_owned(),
    };
    let mut document = pb::CreditNote {
        created: now,
        currency: invoice.currency.clone(),
        customer: invoice.customer.clone(),
        customer_account: invoice.customer_account.clone(),
        customer_balance_transaction: None,
        discount_amount: 0,
        discount_amounts: Vec::new(),
        effective_at: Some(params.effective_at.unwrap_or(now)),
        invoice: invoice.id.clone(),
        lines: Some(model::embedded_lines(&lines, url)),
        livemode: scope.livemode(),
        memo: params.memo.clone(),
        metadata: params.metadata.clone(),
        number: match ids {
            // A recorded note is numbered when it is issued (from the ledger's count).
            Ids::Fresh => String::new(),
            Ids::Preview { .. } => note::number(invoice.number.as_deref(), &invoice.id, credited.notes + 1),
        },
        object: "credit_note".to_owned(),
        out_of_band_amount: params.out_of_band_amount.map(Amount::get),
        pdf: String::new(),
        pretax_credit_amounts: Vec::new(),
        reason: params.reason.map(|r| r as i32),
        refunds,
        shipping_cost: shipping.map(model::shipping_document),
        status: pb::CreditNoteStatus::Issued as i32,
        total_taxes: model::aggregate_taxes(&lines),
        voided_at: None,
        id,
        ..Default::default()
    };
    model::write_amounts(&mut document, &totals, &split);
    Ok(Draft { document, lines, settlement, new_refund })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lines::LinePart;
    use crate::grpc::params::{LineParams, RefundParams};
    use settle_money::charge::Decimal;

    fn scope() -> Scope {
        Scope::test("acct_1")
    }

    fn invoice(total: i64, remaining: i64) -> inv::Invoice {
        inv::Invoice {
            id: "in_1".into(),
            number: Some("ABCD-0001".into()),
            customer: "cus_1".into(),
            currency: "usd".into(),
            total,
            amount_remaining: remaining,
            status: Some(inv::InvoiceStatus::Open as i32),
            ..Default::default()
        }
    }

    fn params(lines: Vec<LineParams>) -> NoteParams {
        NoteParams {
            invoice: "in_1".into(),
            amount: None,
            credit_amount: Amount::ZERO,
            refund_amount: Amount::ZERO,
            out_of_band_amount: None,
            effective_at: None,
            memo: None,
            metadata: BTreeMap::new(),
            reason: None,
            lines,
            refunds: Vec::new(),
            shipping_rate: None,
        }
    }

    fn facts(total: i64, remaining: i64) -> Facts {
        let line = InvoiceLine {
            id: "il_1".into(),
            amount: Amount::new(total),
            quantity: Decimal::from_int(4).unwrap(),
            unit_amount: Some(Decimal::from_int(total / 4).unwrap()),
            description: Some("Seat".into()),
            taxes: Vec::new(),
        };
        Facts {
            invoice: invoice(total, remaining),
            lines: [("il_1".to_owned(), line)].into(),
            linked: Vec::new(),
            refundable: Vec::new(),
        }
    }

    fn by_quantity(quantity: i64) -> LineParams {
        LineParams {
            request: LineRequest::InvoiceLine { line: "il_1".into(), part: LinePart::Quantity(quantity) },
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn a_preview_is_numbered_and_its_ids_are_stable() {
        let request = pb::CreateCreditNoteRequest { invoice: "in_1".into(), ..Default::default() };
        let ids = Ids::preview(&scope(), &request);
        let credited = Credited { notes: 2, ..Default::default() };
        let draft =
            compute(&params(vec![by_quantity(1)]), &facts(4_000, 4_000), &credited, &ids, &scope(), 7)
                .unwrap();
        let again =
            compute(&params(vec![by_quantity(1)]), &facts(4_000, 4_000), &credited, &ids, &scope(), 7)
                .unwrap();
        assert_eq!(draft, again);
        assert_eq!(draft.document.number, "ABCD-0001-CN-03");
        assert!(IdPrefix::CreditNoteLine.matches(&draft.lines[0].id));
        assert!(IdPrefix::CreditNote.matches(&draft.document.id));
        assert_eq!(draft.document.r#type, pb::CreditNoteType::PrePayment as i32);
        assert_eq!((draft.document.total, draft.document.pre_payment_amount), (1_000, 1_000));
    }

    #[test]
    fn a_paid_invoice_needs_the_post_payment_part_settled() {
        let mut p = params(vec![by_quantity(2)]);
        let error =
            compute(&p, &facts(4_000, 0), &Credited::default(), &Ids::Fresh, &scope(), 7).unwrap_err();
        assert!(matches!(error, CreditError::PostPaymentMismatch { .. }));
        p.credit_amount = Amount::new(2_000);
        let draft = compute(&p, &facts(4_000, 0), &Credited::default(), &Ids::Fresh, &scope(), 7).unwrap();
        assert_eq!(draft.document.r#type, pb::CreditNoteType::PostPayment as i32);
        assert_eq!(draft.settlement.credit, Amount::new(2_000));
    }

    #[test]
    fn linked_refunds_count_what_other_notes_link() {
        let mut p = params(vec![by_quantity(2)]);
        p.refunds = vec![RefundParams { refund: RefundRef::Refund("re_1".into()), amount_refunded: None }];
        let mut f = facts(4_000, 0);
        let shown = pb::CreditNoteRefund { refund: "re_1".into(), ..Default::default() };
        f.linked = vec![(shown, Amount::new(3_000))];
        let credited =
            Credited { refunds: [("re_1".to_owned(), Amount::new(1_000))].into(), ..Default::default() };
        let draft = compute(&p, &f, &credited, &Ids::Fresh, &scope(), 7).unwrap();
        assert_eq!(draft.document.refunds[0].amount_refunded, 2_000);
        let all_linked =
            Credited { refunds: [("re_1".to_owned(), Amount::new(3_000))].into(), ..Default::default() };
        assert!(matches!(
            compute(&p, &f, &all_linked, &Ids::Fresh, &scope(), 7),
            Err(CreditError::RefundFullyLinked { index: 0 })
        ));
    }

    #[test]
    fn the_invoice_limit_counts_other_notes() {
        let credited = Credited { total: Amount::new(3_500), ..Default::default() };
        assert!(matches!(
            compute(&params(vec![by_quantity(1)]), &facts(4_000, 4_000), &credited, &Ids::Fresh, &scope(), 7),
            Err(CreditError::ExceedsInvoice { .. })
        ));
    }
}
