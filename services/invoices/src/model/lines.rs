//! Invoice items and lines as documents. An item's charge ([`Charge`]) is written into the item; a
//! line is its item as the invoice shows it plus the line's own id and taxes (`tax_amounts` live only
//! on the line). The invoice keeps its lines' aggregate (`subtotal`, `total_taxes`) current, from
//! which [`super::recompute`] derives every other amount.

use std::collections::BTreeMap;

use settle_money::Amount;
use settle_proto::settle::invoices::v1 as pb;

use super::ModelError;
use crate::domain::amounts::InvoiceAmounts;
use crate::domain::charge::{Charge, Decimal, Pricing};

/// The most lines (invoice items) an invoice may have.
pub const MAX_LINES: usize = 250;
/// How many lines the invoice's embedded `lines` list shows.
pub const EMBEDDED_LINES: i64 = 10;

/// A stored item whose charge cannot be read back (a bug or a damaged row).
#[derive(Debug, thiserror::Error)]
#[error("stored invoice item {id} is invalid: {problem}")]
pub struct CorruptItem {
    pub id: String,
    pub problem: &'static str,
}

/// The charge an item document describes.
pub fn charge_of(item: &pb::InvoiceItem) -> Result<Charge, CorruptItem> {
    let corrupt = |problem| CorruptItem { id: item.id.clone(), problem };
    let quantity = Decimal::parse(&item.quantity_decimal).map_err(|_| corrupt("quantity_decimal"))?;
    let pricing = match item.pricing.as_ref().and_then(|p| p.unit_amount_decimal.as_deref()) {
        Some(unit) => Pricing::PerUnit(Decimal::parse(unit).map_err(|_| corrupt("unit_amount_decimal"))?),
        None => Pricing::Fixed(Amount::new(item.amount)),
    };
    Ok(Charge { pricing, quantity })
}

/// Writes `charge` into the item: amount, quantity and pricing (`price_details` names the inline price
/// the unit amount came from, if any).
pub fn write_charge(
    item: &mut pb::InvoiceItem,
    charge: &Charge,
    price_details: Option<pb::PricingPriceDetails>,
) -> Result<(), CorruptItem> {
    item.amount = charge.amount().map_err(|_| CorruptItem { id: item.id.clone(), problem: "amount" })?.get();
    item.quantity = charge.quantity.truncate();
    item.quantity_decimal = charge.quantity.to_string();
    item.pricing = charge.unit_amount().map(|unit| pb::Pricing {
        price_details,
        r#type: pb::PricingType::PriceDetails as i32,
        unit_amount_decimal: Some(unit.to_string()),
    });
    refresh_net_amount(item);
    Ok(())
}

/// Stripe's `net_amount` without discounts: the amount for non-discountable items, null for
/// discountable ones (documented on the field).
pub fn refresh_net_amount(item: &mut pb::InvoiceItem) {
    item.net_amount = (!item.discountable).then_some(item.amount);
}

/// The descriptive fields of a new item.
#[derive(Debug, Clone, Default)]
pub struct ItemFields {
    pub description: Option<String>,
    /// Stripe's default: false for a negative item, else true.
    pub discountable: Option<bool>,
    pub metadata: BTreeMap<String, String>,
    /// Defaults to the item's creation time for both ends.
    pub period: Option<pb::Period>,
}

/// Who and what a new item bills.
#[derive(Debug, Clone)]
pub struct ItemOwner<'a> {
    pub customer: &'a str,
    pub currency: &'a str,
    pub livemode: bool,
    /// The draft it is created on, or `None` for a pending item.
    pub invoice: Option<&'a str>,
}

/// A new invoice item document.
pub fn new_item(
    id: String,
    owner: &ItemOwner<'_>,
    now: i64,
    charge: &Charge,
    price_details: Option<pb::PricingPriceDetails>,
    fields: ItemFields,
) -> Result<pb::InvoiceItem, CorruptItem> {
    let mut item = pb::InvoiceItem {
        currency: owner.currency.to_owned(),
        customer: owner.customer.to_owned(),
        date: now,
        description: fields.description,
        id,
        invoice: owner.invoice.map(str::to_owned),
        livemode: owner.livemode,
        metadata: fields.metadata,
        object: "invoiceitem".to_owned(),
        period: Some(fields.period.unwrap_or(pb::Period { start: now, end: now })),
        ..Default::default()
    };
    write_charge(&mut item, charge, price_details)?;
    item.discountable = fields.discountable.unwrap_or(item.amount >= 0);
    refresh_net_amount(&mut item);
    Ok(item)
}

/// The line showing `item` on its invoice.
pub fn line_for(item: &pb::InvoiceItem, line_id: &str, taxes: Vec<pb::Tax>) -> pb::InvoiceLineItem {
    pb::InvoiceLineItem {
        amount: item.amount,
        currency: item.currency.clone(),
        description: item.description.clone(),
        discount_amounts: Vec::new(),
        discountable: item.discountable,
        discounts: Vec::new(),
        id: line_id.to_owned(),
        invoice: item.invoice.clone(),
        livemode: item.livemode,
        metadata: item.metadata.clone(),
        object: "line_item".to_owned(),
        parent: Some(pb::InvoiceLineItemParent {
            invoice_item_details: Some(pb::InvoiceLineItemInvoiceItemParent {
                invoice_item: item.id.clone(),
                proration: false,
                proration_details: None,
                subscription: None,
            }),
            subscription_item_details: None,
            r#type: pb::InvoiceLineItemParentType::InvoiceItemDetails as i32,
        }),
        period: item.period,
        pretax_credit_amounts: Vec::new(),
        pricing: item.pricing.clone(),
        quantity: Some(item.quantity),
        quantity_decimal: Some(item.quantity_decimal.clone()),
        subscription: None,
        subtotal: item.amount,
        taxes,
    }
}

/// The item a line shows (from the line's `parent`).
pub fn item_of(line: &pb::InvoiceLineItem) -> Option<&str> {
    line.parent.as_ref()?.invoice_item_details.as_ref().map(|d| d.invoice_item.as_str())
}

/// `invoice.total_taxes`: the lines' taxes summed per tax rate, behaviour and taxability reason.
pub fn aggregate_taxes(lines: &[pb::InvoiceLineItem]) -> Result<Vec<pb::Tax>, settle_money::AmountError> {
    let mut totals: BTreeMap<(String, i32, i32), (Amount, Option<Amount>)> = BTreeMap::new();
    for tax in lines.iter().flat_map(|l| &l.taxes) {
        let rate = tax.tax_rate_details.as_ref().map(|d| d.tax_rate.clone()).unwrap_or_default();
        let entry = totals
            .entry((rate, tax.tax_behavior, tax.taxability_reason))
            .or_insert((Amount::ZERO, Some(Amount::ZERO)));
        entry.0 = entry.0.checked_add(Amount::new(tax.amount))?;
        entry.1 = match (entry.1, tax.taxable_amount) {
            (Some(sum), Some(taxable)) => Some(sum.checked_add(Amount::new(taxable))?),
            _ => None,
        };
    }
    Ok(totals
        .into_iter()
        .map(|((rate, behavior, reason), (amount, taxable))| pb::Tax {
            amount: amount.get(),
            tax_behavior: behavior,
            tax_rate_details: Some(pb::TaxRateDetails { tax_rate: rate }),
            taxability_reason: reason,
            taxable_amount: taxable.map(Amount::get),
            r#type: pb::TaxType::TaxRateDetails as i32,
        })
        .collect())
}

/// Makes the invoice's `subtotal` and `total_taxes` those of `lines` (all of its lines) and recomputes
/// every amount.
pub fn apply_lines(
    doc: &mut pb::Invoice,
    lines: &[pb::InvoiceLineItem],
) -> Result<InvoiceAmounts, ModelError> {
    let overflow = |source| ModelError::Overflow { id: doc.id.clone(), source };
    doc.subtotal = Amount::checked_sum(lines.iter().map(|l| Amount::new(l.amount))).map_err(overflow)?.get();
    doc.total_taxes = aggregate_taxes(lines).map_err(overflow)?;
    super::recompute(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tax(rate: &str, amount: i64, behavior: pb::TaxBehavior) -> pb::Tax {
        pb::Tax {
            amount,
            tax_behavior: behavior as i32,
            tax_rate_details: Some(pb::TaxRateDetails { tax_rate: rate.into() }),
            taxable_amount: Some(amount * 10),
            r#type: pb::TaxType::TaxRateDetails as i32,
            ..Default::default()
        }
    }

    fn line(amount: i64, taxes: Vec<pb::Tax>) -> pb::InvoiceLineItem {
        pb::InvoiceLineItem { amount, taxes, ..Default::default() }
    }

    #[test]
    fn taxes_are_summed_per_rate_and_behaviour() {
        let lines = vec![
            line(1_000, vec![tax("txr_a", 100, pb::TaxBehavior::Exclusive)]),
            line(
                2_000,
                vec![
                    tax("txr_a", 200, pb::TaxBehavior::Exclusive),
                    tax("txr_b", 50, pb::TaxBehavior::Inclusive),
                ],
            ),
        ];
        let total = aggregate_taxes(&lines).unwrap();
        assert_eq!(total.len(), 2);
        assert_eq!((total[0].amount, total[0].taxable_amount), (300, Some(3_000)));
        assert_eq!(total[1].tax_behavior, pb::TaxBehavior::Inclusive as i32);
    }

    #[test]
    fn the_invoice_follows_its_lines() {
        let mut doc = pb::Invoice { id: "in_1".into(), ..Default::default() };
        crate::model::set_status(&mut doc, crate::domain::invoice::InvoiceStatus::Draft);
        let lines = vec![
            line(1_000, vec![tax("txr_a", 100, pb::TaxBehavior::Exclusive)]),
            line(-300, vec![tax("txr_b", 30, pb::TaxBehavior::Inclusive)]),
        ];
        apply_lines(&mut doc, &lines).unwrap();
        assert_eq!(
            (doc.subtotal, doc.total, doc.subtotal_excluding_tax, doc.amount_due),
            (700, 800, Some(670), 800)
        );
        apply_lines(&mut doc, &[]).unwrap();
        assert_eq!((doc.subtotal, doc.total, doc.total_taxes.len()), (0, 0, 0));
    }

    #[test]
    fn an_items_charge_round_trips_through_its_document() {
        let mut item = pb::InvoiceItem { id: "ii_1".into(), ..Default::default() };
        let charge =
            Charge::per_unit(Decimal::parse("12.5").unwrap(), Some(Decimal::parse("3").unwrap())).unwrap();
        write_charge(&mut item, &charge, None).unwrap();
        assert_eq!((item.amount, item.quantity, item.quantity_decimal.as_str()), (38, 3, "3"));
        assert_eq!(charge_of(&item).unwrap(), charge);
        let fixed = Charge::fixed(Amount::new(-500), None).unwrap();
        write_charge(&mut item, &fixed, None).unwrap();
        assert_eq!((item.amount, item.pricing.is_none(), item.net_amount), (-500, true, Some(-500)));
        assert_eq!(charge_of(&item).unwrap(), fixed);
        let shown = line_for(&item, "il_1", Vec::new());
        assert_eq!((shown.amount, shown.subtotal, item_of(&shown)), (-500, -500, Some("ii_1")));
    }
}
