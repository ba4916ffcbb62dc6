//! What each line of a credit note credits.
//!
//! - `invoice_line_item`: a part of one line of the invoice, given as an `amount` or a `quantity`
//!   (× the line's unit amount, rounded like an invoice line). Over all the invoice's non-void
//!   credit notes a line is never credited for more than its amount, and one note never credits
//!   more units than the line has. The line's taxes are credited in proportion: the share of a tax
//!   `T` on a line of amount `L` already credited for `c` is `round(T·(c+a)/L) − round(T·c/L)`, so
//!   notes that together credit the whole line credit exactly its tax.
//! - `custom_line_item`: `quantity × unit_amount(_decimal)`, untaxed (settle has no tax rates to
//!   apply).

use std::collections::BTreeMap;

use settle_invoices::domain::charge::{Charge, Decimal};
use settle_money::Amount;

use super::error::CreditError;

/// Whether a tax is added on top of the amount or included in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaxBehavior {
    Exclusive,
    Inclusive,
}

/// One tax of a line (of the invoice, or credited by the note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTax {
    pub amount: Amount,
    pub behavior: TaxBehavior,
    /// The tax rate's id (`txr_…`).
    pub rate: String,
    /// Stripe's `taxability_reason`, carried through as its wire value.
    pub taxability_reason: i32,
    pub taxable_amount: Option<Amount>,
}

/// A line of the invoice, as crediting needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    pub id: String,
    pub amount: Amount,
    pub quantity: Decimal,
    /// The unit amount of a per-unit line; `None` for a fixed amount.
    pub unit_amount: Option<Decimal>,
    pub description: Option<String>,
    pub taxes: Vec<LineTax>,
}

/// How much of an invoice line a note credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinePart {
    Amount(Amount),
    Quantity(i64),
}

/// One requested line of a credit note (parameters already checked for shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineRequest {
    InvoiceLine { line: String, part: LinePart },
    Custom { quantity: i64, unit_amount: Decimal, description: Option<String> },
}

/// A line as the note credits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditedLine {
    /// The invoice line it credits; `None` for a custom line.
    pub invoice_line_item: Option<String>,
    pub amount: Amount,
    pub quantity: i64,
    pub unit_amount: Option<Amount>,
    pub unit_amount_decimal: Decimal,
    pub description: Option<String>,
    pub taxes: Vec<LineTax>,
}

impl CreditedLine {
    /// Tax added on top of the line.
    pub fn exclusive_tax(&self) -> Result<Amount, CreditError> {
        tax_of(&self.taxes, TaxBehavior::Exclusive)
    }

    /// Tax included in the line's amount.
    pub fn inclusive_tax(&self) -> Result<Amount, CreditError> {
        tax_of(&self.taxes, TaxBehavior::Inclusive)
    }
}

fn tax_of(taxes: &[LineTax], behavior: TaxBehavior) -> Result<Amount, CreditError> {
    Amount::checked_sum(taxes.iter().filter(|t| t.behavior == behavior).map(|t| t.amount))
        .map_err(|_| CreditError::Overflow)
}

/// `round(value · numerator / denominator)`, half away from zero; `denominator > 0`.
fn share(value: i64, numerator: i64, denominator: i64) -> Result<i64, CreditError> {
    let product = i128::from(value) * i128::from(numerator);
    let denominator = i128::from(denominator);
    let (quotient, remainder) = (product / denominator, product % denominator);
    let rounded = if 2 * remainder.abs() >= denominator { quotient + product.signum() } else { quotient };
    i64::try_from(rounded).map_err(|_| CreditError::Overflow)
}

/// The part of each of `taxes` (of a line of amount `line_amount`, already credited for
/// `credited`) that crediting `amount` more credits. Zero shares are left out.
pub fn tax_shares(
    taxes: &[LineTax],
    line_amount: Amount,
    credited: Amount,
    amount: Amount,
) -> Result<Vec<LineTax>, CreditError> {
    if !line_amount.is_positive() {
        return Ok(Vec::new());
    }
    let after = credited.checked_add(amount).map_err(|_| CreditError::Overflow)?;
    let part = |value: i64| -> Result<i64, CreditError> {
        Ok(share(value, after.get(), line_amount.get())? - share(value, credited.get(), line_amount.get())?)
    };
    let mut shares = Vec::new();
    for tax in taxes {
        let amount = part(tax.amount.get())?;
        let taxable = tax.taxable_amount.map(|t| part(t.get())).transpose()?;
        if amount == 0 && taxable.is_none_or(|t| t == 0) {
            continue;
        }
        shares.push(LineTax {
            amount: Amount::new(amount),
            behavior: tax.behavior,
            rate: tax.rate.clone(),
            taxability_reason: tax.taxability_reason,
            taxable_amount: taxable.map(Amount::new),
        });
    }
    Ok(shares)
}

/// Credits `requests` against the invoice's `lines`, given what the invoice's other non-void notes
/// already credit per line (`credited`). Lines of one note that name the same invoice line add up.
pub fn credit_lines(
    requests: &[LineRequest],
    lines: &BTreeMap<String, InvoiceLine>,
    credited: &BTreeMap<String, Amount>,
) -> Result<Vec<CreditedLine>, CreditError> {
    let mut running: BTreeMap<&str, Amount> = BTreeMap::new();
    let mut out = Vec::with_capacity(requests.len());
    for (index, request) in requests.iter().enumerate() {
        let line = match request {
            LineRequest::InvoiceLine { line: id, part } => {
                let line =
                    lines.get(id).ok_or_else(|| CreditError::LineNotOnInvoice { index, line: id.clone() })?;
                let before = match running.get(id.as_str()) {
                    Some(amount) => *amount,
                    None => credited.get(id).copied().unwrap_or(Amount::ZERO),
                };
                let credited_line = credit_invoice_line(index, line, *part, before)?;
                let after = before.checked_add(credited_line.amount).map_err(|_| CreditError::Overflow)?;
                running.insert(id.as_str(), after);
                credited_line
            }
            LineRequest::Custom { quantity, unit_amount, description } => {
                credit_custom_line(index, *quantity, *unit_amount, description.clone())?
            }
        };
        out.push(line);
    }
    Ok(out)
}

fn credit_invoice_line(
    index: usize,
    line: &InvoiceLine,
    part: LinePart,
    credited: Amount,
) -> Result<CreditedLine, CreditError> {
    if !line.amount.is_positive() {
        return Err(CreditError::LineNotCreditable { index, line: line.id.clone() });
    }
    let remaining = line.amount.checked_sub(credited).map_err(|_| CreditError::Overflow)?;
    let (amount, quantity, unit_amount, unit_amount_decimal) = match part {
        LinePart::Amount(amount) => {
            // Stripe shows an amount credit as one unit of that amount.
            (amount, 1, Some(amount), Decimal::from_int(amount.get()).map_err(|_| CreditError::Overflow)?)
        }
        LinePart::Quantity(quantity) => {
            let units = Decimal::from_int(quantity).map_err(|_| CreditError::Overflow)?;
            if units > line.quantity {
                return Err(CreditError::QuantityExceedsLine {
                    index,
                    line: line.id.clone(),
                    requested: quantity,
                    available: line.quantity.to_string(),
                });
            }
            match line.unit_amount {
                Some(unit) => {
                    let amount = Charge::per_unit(unit, Some(units))
                        .and_then(|c| c.amount())
                        .map_err(|_| CreditError::Overflow)?;
                    let whole = unit.is_whole().then(|| Amount::new(unit.truncate()));
                    (amount, quantity, whole, unit)
                }
                // A fixed amount is one unit: only the whole of it can be credited by quantity.
                None if units == line.quantity => (
                    line.amount,
                    quantity,
                    Some(line.amount),
                    Decimal::from_int(line.amount.get()).map_err(|_| CreditError::Overflow)?,
                ),
                None => {
                    return Err(CreditError::QuantityOfFixedLine { index, line: line.id.clone() });
                }
            }
        }
    };
    if !amount.is_positive() {
        return Err(CreditError::LineAmountNotPositive { index });
    }
    if amount > remaining {
        return Err(CreditError::LineOverCredited {
            index,
            line: line.id.clone(),
            by_quantity: matches!(part, LinePart::Quantity(_)),
            requested: amount,
            remaining: remaining.clamp_non_negative(),
        });
    }
    Ok(CreditedLine {
        invoice_line_item: Some(line.id.clone()),
        amount,
        quantity,
        unit_amount,
        unit_amount_decimal,
        description: line.description.clone(),
        taxes: tax_shares(&line.taxes, line.amount, credited, amount)?,
    })
}

fn credit_custom_line(
    index: usize,
    quantity: i64,
    unit: Decimal,
    description: Option<String>,
) -> Result<CreditedLine, CreditError> {
    let units = Decimal::from_int(quantity).map_err(|_| CreditError::Overflow)?;
    let amount = Charge::per_unit(unit, Some(units))
        .and_then(|c| c.amount())
        .map_err(|_| CreditError::LineAmountTooLarge { index })?;
    if !amount.is_positive() {
        return Err(CreditError::LineAmountNotPositive { index });
    }
    Ok(CreditedLine {
        invoice_line_item: None,
        amount,
        quantity,
        unit_amount: unit.is_whole().then(|| Amount::new(unit.truncate())),
        unit_amount_decimal: unit,
        description,
        taxes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    fn tax(amount: i64, behavior: TaxBehavior) -> LineTax {
        LineTax {
            amount: Amount::new(amount),
            behavior,
            rate: "txr_1".into(),
            taxability_reason: 0,
            taxable_amount: None,
        }
    }

    fn line(id: &str, unit: &str, quantity: &str, taxes: Vec<LineTax>) -> InvoiceLine {
        let unit = d(unit);
        let quantity = d(quantity);
        InvoiceLine {
            id: id.into(),
            amount: Charge::per_unit(unit, Some(quantity)).unwrap().amount().unwrap(),
            quantity,
            unit_amount: Some(unit),
            description: Some("Widget".into()),
            taxes,
        }
    }

    fn lines(list: Vec<InvoiceLine>) -> BTreeMap<String, InvoiceLine> {
        list.into_iter().map(|l| (l.id.clone(), l)).collect()
    }

    #[test]
    fn a_quantity_credits_units_at_the_lines_unit_amount() {
        let invoice = lines(vec![line("il_1", "250", "4", vec![tax(100, TaxBehavior::Exclusive)])]);
        let request = [LineRequest::InvoiceLine { line: "il_1".into(), part: LinePart::Quantity(2) }];
        let credited = credit_lines(&request, &invoice, &BTreeMap::new()).unwrap();
        assert_eq!(credited[0].amount, Amount::new(500));
        assert_eq!(credited[0].unit_amount, Some(Amount::new(250)));
        assert_eq!(credited[0].taxes[0].amount, Amount::new(50));
        assert_eq!(credited[0].description.as_deref(), Some("Widget"));
    }

    #[test]
    fn an_amount_credits_one_unit_of_that_amount() {
        let invoice = lines(vec![line("il_1", "1000", "1", vec![])]);
        let request =
            [LineRequest::InvoiceLine { line: "il_1".into(), part: LinePart::Amount(Amount::new(300)) }];
        let credited = credit_lines(&request, &invoice, &BTreeMap::new()).unwrap();
        assert_eq!((credited[0].amount, credited[0].quantity), (Amount::new(300), 1));
        assert_eq!(credited[0].unit_amount_decimal.to_string(), "300");
    }

    #[test]
    fn lines_are_never_credited_beyond_their_amount() {
        let invoice = lines(vec![line("il_1", "100", "3", vec![])]);
        let already: BTreeMap<_, _> = [("il_1".to_owned(), Amount::new(250))].into();
        let too_much =
            [LineRequest::InvoiceLine { line: "il_1".into(), part: LinePart::Amount(Amount::new(51)) }];
        assert!(matches!(
            credit_lines(&too_much, &invoice, &already),
            Err(CreditError::LineOverCredited { remaining, .. }) if remaining == Amount::new(50)
        ));
        // Two lines of the same note add up.
        let twice = [
            LineRequest::InvoiceLine { line: "il_1".into(), part: LinePart::Quantity(2) },
            LineRequest::InvoiceLine { line: "il_1".into(), part: LinePart::Quantity(2) },
        ];
        assert!(matches!(
            credit_lines(&twice, &invoice, &BTreeMap::new()),
            Err(CreditError::LineOverCredited { index: 1, .. })
        ));
        let more_units = [LineRequest::InvoiceLine { line: "il_1".into(), part: LinePart::Quantity(4) }];
        assert!(matches!(
            credit_lines(&more_units, &invoice, &BTreeMap::new()),
            Err(CreditError::QuantityExceedsLine { .. })
        ));
    }

    #[test]
    fn unknown_and_negative_lines_are_refused() {
        let mut negative = line("il_2", "100", "1", vec![]);
        negative.amount = Amount::new(-100);
        let invoice = lines(vec![negative]);
        let unknown = [LineRequest::InvoiceLine { line: "il_9".into(), part: LinePart::Quantity(1) }];
        assert!(matches!(
            credit_lines(&unknown, &invoice, &BTreeMap::new()),
            Err(CreditError::LineNotOnInvoice { .. })
        ));
        let refused = [LineRequest::InvoiceLine { line: "il_2".into(), part: LinePart::Quantity(1) }];
        assert!(matches!(
            credit_lines(&refused, &invoice, &BTreeMap::new()),
            Err(CreditError::LineNotCreditable { .. })
        ));
    }

    #[test]
    fn fixed_lines_credit_by_quantity_only_whole() {
        let fixed = InvoiceLine {
            id: "il_f".into(),
            amount: Amount::new(700),
            quantity: Decimal::ONE,
            unit_amount: None,
            description: None,
            taxes: vec![],
        };
        let invoice = lines(vec![fixed]);
        let whole = [LineRequest::InvoiceLine { line: "il_f".into(), part: LinePart::Quantity(1) }];
        assert_eq!(credit_lines(&whole, &invoice, &BTreeMap::new()).unwrap()[0].amount, Amount::new(700));
    }

    #[test]
    fn custom_lines_multiply_decimal_unit_amounts() {
        let request =
            [LineRequest::Custom { quantity: 3, unit_amount: d("33.333333333333"), description: None }];
        let credited = credit_lines(&request, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert_eq!(credited[0].amount, Amount::new(100));
        assert_eq!(credited[0].unit_amount, None);
        let zero = [LineRequest::Custom { quantity: 1, unit_amount: d("0.2"), description: None }];
        assert!(matches!(
            credit_lines(&zero, &BTreeMap::new(), &BTreeMap::new()),
            Err(CreditError::LineAmountNotPositive { index: 0 })
        ));
    }

    proptest! {
        /// However a line is split over notes, the notes credit exactly its taxes.
        #[test]
        fn tax_shares_add_up_to_the_whole_tax(
            line_amount in 1i64..1_000_000,
            tax_amount in 0i64..200_000,
            cuts in proptest::collection::vec(1i64..1_000_000, 0..6),
        ) {
            let taxes = vec![LineTax { taxable_amount: Some(Amount::new(line_amount)), ..tax(tax_amount, TaxBehavior::Exclusive) }];
            let mut points: Vec<i64> = cuts.into_iter().map(|c| c % line_amount).collect();
            points.push(0);
            points.push(line_amount);
            points.sort_unstable();
            points.dedup();
            let mut total = 0;
            let mut taxable = 0;
            for pair in points.windows(2) {
                let shares = tax_shares(&taxes, Amount::new(line_amount), Amount::new(pair[0]), Amount::new(pair[1] - pair[0])).unwrap();
                for share in shares {
                    prop_assert!(share.amount.get() >= 0);
                    total += share.amount.get();
                    taxable += share.taxable_amount.map_or(0, Amount::get);
                }
            }
            prop_assert_eq!(total, tax_amount);
            prop_assert_eq!(taxable, line_amount);
        }

        /// Whatever is requested, what is credited per line never exceeds the line.
        #[test]
        fn credits_stay_within_each_line(
            unit in 1i64..10_000,
            quantity in 1i64..20,
            already in 0i64..200_000,
            parts in proptest::collection::vec((any::<bool>(), 1i64..100_000), 1..6),
        ) {
            let invoice = lines(vec![line("il_1", &unit.to_string(), &quantity.to_string(), vec![])]);
            let line_amount = unit * quantity;
            let already = already % (line_amount + 1);
            let credited: BTreeMap<_, _> = [("il_1".to_owned(), Amount::new(already))].into();
            let requests: Vec<_> = parts
                .into_iter()
                .map(|(by_quantity, n)| LineRequest::InvoiceLine {
                    line: "il_1".into(),
                    part: if by_quantity { LinePart::Quantity(n % 25 + 1) } else { LinePart::Amount(Amount::new(n)) },
                })
                .collect();
            if let Ok(credits) = credit_lines(&requests, &invoice, &credited) {
                let sum: i64 = credits.iter().map(|c| c.amount.get()).sum();
                prop_assert!(already + sum <= line_amount);
                prop_assert!(credits.iter().all(|c| c.amount.is_positive()));
            }
        }
    }
}
