//! A credit note is stored as its Stripe-shaped document (`settle.creditnotes.v1.CreditNote`, with
//! the first page of its lines embedded) and each line as a `CreditNoteLineItem`. This module turns
//! the domain's results into those documents and reads the invoice documents the domain needs.

use std::collections::BTreeMap;

use settle_invoices::domain::charge::Decimal;
use settle_money::Amount;
use settle_proto::settle::creditnotes::v1 as pb;
use settle_proto::settle::invoices::v1 as inv;

use crate::domain::lines::{CreditedLine, InvoiceLine, LineTax, TaxBehavior};
use crate::domain::totals::{NoteType, ShippingCredit, Split, Totals};

/// How many lines a note's document embeds (the rest are paged with `ListCreditNoteLines`).
pub const EMBEDDED_LINES: usize = 10;

/// An invoice line that cannot be read (a bug or a damaged document on the invoices side).
#[derive(Debug, thiserror::Error)]
#[error("invoice line {id} is invalid: {problem}")]
pub struct UnreadableLine {
    pub id: String,
    pub problem: &'static str,
}

// === enums ===

pub fn note_type_to_pb(note_type: NoteType) -> pb::CreditNoteType {
    match note_type {
        NoteType::PrePayment => pb::CreditNoteType::PrePayment,
        NoteType::PostPayment => pb::CreditNoteType::PostPayment,
        NoteType::Mixed => pb::CreditNoteType::Mixed,
    }
}

pub fn note_type_from_pb(value: i32) -> Option<NoteType> {
    match pb::CreditNoteType::try_from(value).ok()? {
        pb::CreditNoteType::Unspecified => None,
        pb::CreditNoteType::PrePayment => Some(NoteType::PrePayment),
        pb::CreditNoteType::PostPayment => Some(NoteType::PostPayment),
        pb::CreditNoteType::Mixed => Some(NoteType::Mixed),
    }
}

fn behavior_from_inv(value: i32) -> TaxBehavior {
    if value == inv::TaxBehavior::Inclusive as i32 { TaxBehavior::Inclusive } else { TaxBehavior::Exclusive }
}

fn behavior_to_pb(behavior: TaxBehavior) -> pb::TaxBehavior {
    match behavior {
        TaxBehavior::Exclusive => pb::TaxBehavior::Exclusive,
        TaxBehavior::Inclusive => pb::TaxBehavior::Inclusive,
    }
}

// === invoice documents → domain ===

/// An invoice line as crediting needs it.
pub fn invoice_line(line: &inv::InvoiceLineItem) -> Result<InvoiceLine, UnreadableLine> {
    let unreadable = |problem| UnreadableLine { id: line.id.clone(), problem };
    let quantity = match line.quantity_decimal.as_deref().filter(|q| !q.is_empty()) {
        Some(text) => Decimal::parse(text).map_err(|_| unreadable("quantity_decimal"))?,
        None => Decimal::from_int(line.quantity.unwrap_or(1)).map_err(|_| unreadable("quantity"))?,
    };
    let unit_amount = line
        .pricing
        .as_ref()
        .and_then(|p| p.unit_amount_decimal.as_deref())
        .map(|unit| Decimal::parse(unit).map_err(|_| unreadable("pricing.unit_amount_decimal")))
        .transpose()?;
    Ok(InvoiceLine {
        id: line.id.clone(),
        amount: Amount::new(line.amount),
        quantity,
        unit_amount,
        description: line.description.clone(),
        taxes: line
            .taxes
            .iter()
            .map(|t| LineTax {
                amount: Amount::new(t.amount),
                behavior: behavior_from_inv(t.tax_behavior),
                rate: t.tax_rate_details.as_ref().map(|d| d.tax_rate.clone()).unwrap_or_default(),
                taxability_reason: t.taxability_reason,
                taxable_amount: t.taxable_amount.map(Amount::new),
            })
            .collect(),
    })
}

/// The invoice's shipping cost, credited whole.
pub fn shipping_credit(shipping: &inv::InvoiceShippingCost) -> ShippingCredit {
    ShippingCredit {
        amount_subtotal: Amount::new(shipping.amount_subtotal),
        amount_tax: Amount::new(shipping.amount_tax),
        amount_total: Amount::new(shipping.amount_total),
    }
}

// === domain → documents ===

fn tax_to_pb(tax: &LineTax) -> pb::Tax {
    pb::Tax {
        amount: tax.amount.get(),
        tax_behavior: behavior_to_pb(tax.behavior) as i32,
        tax_rate_details: Some(pb::TaxRateDetails { tax_rate: tax.rate.clone() }),
        // The invoices and credit-notes enums list the same values with the same numbers.
        taxability_reason: tax.taxability_reason,
        taxable_amount: tax.taxable_amount.map(Amount::get),
        r#type: pb::TaxType::TaxRateDetails as i32,
    }
}

/// A credited line as the note shows it.
pub fn line_document(
    id: String,
    livemode: bool,
    line: &CreditedLine,
    metadata: BTreeMap<String, String>,
) -> pb::CreditNoteLineItem {
    let line_type = if line.invoice_line_item.is_some() {
        pb::CreditNoteLineItemType::InvoiceLineItem
    } else {
        pb::CreditNoteLineItemType::CustomLineItem
    };
    pb::CreditNoteLineItem {
        amount: line.amount.get(),
        description: line.description.clone(),
        discount_amount: 0,
        discount_amounts: Vec::new(),
        id,
        invoice_line_item: line.invoice_line_item.clone(),
        livemode,
        metadata,
        object: "credit_note_line_item".to_owned(),
        pretax_credit_amounts: Vec::new(),
        quantity: Some(line.quantity),
        tax_rates: Vec::new(),
        taxes: line.taxes.iter().map(tax_to_pb).collect(),
        r#type: line_type as i32,
        unit_amount: line.unit_amount.map(Amount::get),
        unit_amount_decimal: Some(line.unit_amount_decimal.to_string()),
    }
}

/// `total_taxes`: the lines' taxes summed per tax rate, behaviour and taxability reason (as the
/// invoice's `total_taxes` are).
pub fn aggregate_taxes(lines: &[pb::CreditNoteLineItem]) -> Vec<pb::Tax> {
    let mut totals: BTreeMap<(String, i32, i32), (i64, Option<i64>)> = BTreeMap::new();
    for tax in lines.iter().flat_map(|l| &l.taxes) {
        let rate = tax.tax_rate_details.as_ref().map(|d| d.tax_rate.clone()).unwrap_or_default();
        let entry = totals.entry((rate, tax.tax_behavior, tax.taxability_reason)).or_insert((0, Some(0)));
        entry.0 = entry.0.saturating_add(tax.amount);
        entry.1 = match (entry.1, tax.taxable_amount) {
            (Some(sum), Some(taxable)) => Some(sum.saturating_add(taxable)),
            _ => None,
        };
    }
    totals
        .into_iter()
        .map(|((rate, behavior, reason), (amount, taxable))| pb::Tax {
            amount,
            tax_behavior: behavior,
            tax_rate_details: Some(pb::TaxRateDetails { tax_rate: rate }),
            taxability_reason: reason,
            taxable_amount: taxable,
            r#type: pb::TaxType::TaxRateDetails as i32,
        })
        .collect()
}

/// The `lines` list object a note embeds: its first page.
pub fn embedded_lines(lines: &[pb::CreditNoteLineItem], url: String) -> pb::CreditNoteLineItemList {
    pb::CreditNoteLineItemList {
        data: lines.iter().take(EMBEDDED_LINES).cloned().collect(),
        has_more: lines.len() > EMBEDDED_LINES,
        object: "list".to_owned(),
        url,
    }
}

/// The shipping cost a note credits, as it shows it.
pub fn shipping_document(shipping: &inv::InvoiceShippingCost) -> pb::ShippingCost {
    pb::ShippingCost {
        amount_subtotal: shipping.amount_subtotal,
        amount_tax: shipping.amount_tax,
        amount_total: shipping.amount_total,
        shipping_rate: shipping.shipping_rate.clone(),
        taxes: shipping
            .taxes
            .iter()
            .map(|t| pb::ShippingCostTax {
                amount: t.amount,
                rate: t.rate.clone(),
                taxability_reason: t.taxability_reason,
                taxable_amount: t.taxable_amount,
            })
            .collect(),
    }
}

/// Writes the note's amounts and split into its document.
pub fn write_amounts(doc: &mut pb::CreditNote, totals: &Totals, split: &Split) {
    doc.amount = totals.total.get();
    doc.total = totals.total.get();
    doc.subtotal = totals.subtotal.get();
    doc.subtotal_excluding_tax = Some(totals.subtotal_excluding_tax.get());
    doc.total_excluding_tax = Some(totals.total_excluding_tax.get());
    doc.amount_shipping = totals.amount_shipping.get();
    write_split(doc, split);
}

/// Writes a split (as the invoices ledger decided it) into the document.
pub fn write_split(doc: &mut pb::CreditNote, split: &Split) {
    doc.pre_payment_amount = split.pre_payment.get();
    doc.post_payment_amount = split.post_payment.get();
    doc.r#type = note_type_to_pb(split.note_type) as i32;
}

/// The URL of a note's lines.
pub fn lines_url(id: &str) -> String {
    format!("/v1/credit_notes/{id}/lines")
}

/// The URL of a preview's lines.
pub const PREVIEW_LINES_URL: &str = "/v1/credit_notes/preview/lines";

#[cfg(test)]
mod tests {
    use super::*;

    fn line_with_taxes(taxes: Vec<pb::Tax>) -> pb::CreditNoteLineItem {
        pb::CreditNoteLineItem { taxes, ..Default::default() }
    }

    fn tax(rate: &str, amount: i64, taxable: Option<i64>) -> pb::Tax {
        pb::Tax {
            amount,
            tax_behavior: pb::TaxBehavior::Exclusive as i32,
            tax_rate_details: Some(pb::TaxRateDetails { tax_rate: rate.into() }),
            taxability_reason: 0,
            taxable_amount: taxable,
            r#type: pb::TaxType::TaxRateDetails as i32,
        }
    }

    #[test]
    fn taxes_sum_per_rate() {
        let lines = [
            line_with_taxes(vec![tax("txr_a", 10, Some(100)), tax("txr_b", 5, None)]),
            line_with_taxes(vec![tax("txr_a", 20, Some(200))]),
        ];
        let total = aggregate_taxes(&lines);
        assert_eq!(total.len(), 2);
        assert_eq!((total[0].amount, total[0].taxable_amount), (30, Some(300)));
        assert_eq!((total[1].amount, total[1].taxable_amount), (5, None));
    }

    #[test]
    fn invoice_lines_read_quantity_and_unit() {
        let line = inv::InvoiceLineItem {
            id: "il_1".into(),
            amount: 750,
            quantity: Some(3),
            quantity_decimal: Some("3".into()),
            pricing: Some(inv::Pricing { unit_amount_decimal: Some("250".into()), ..Default::default() }),
            taxes: vec![inv::Tax {
                amount: 75,
                tax_behavior: inv::TaxBehavior::Inclusive as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let read = invoice_line(&line).unwrap();
        assert_eq!(
            (read.amount.get(), read.quantity.to_string(), read.unit_amount.map(|u| u.to_string())),
            (750, "3".into(), Some("250".into()))
        );
        assert_eq!(read.taxes[0].behavior, TaxBehavior::Inclusive);
    }

    #[test]
    fn only_ten_lines_are_embedded() {
        let lines: Vec<_> = (0..11).map(|_| pb::CreditNoteLineItem::default()).collect();
        let list = embedded_lines(&lines, lines_url("cn_1"));
        assert_eq!(
            (list.data.len(), list.has_more, list.url.as_str()),
            (10, true, "/v1/credit_notes/cn_1/lines")
        );
    }
}
