//! Stripe-style object ids: a prefix naming the object type (`in_`, `pi_`, …) and 22 base62
//! characters. The characters encode a millisecond timestamp followed by random bits, so ids sort by
//! creation time (byte order, i.e. `COLLATE "C"` in PostgreSQL) and a newest-first list is an index
//! scan on the primary key. Within one process ids are strictly increasing.

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Every kind of object settle names, with its id prefix. The one place prefixes are declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdPrefix {
    Account,
    Attachment,
    BalanceTransaction,
    Charge,
    CreditNote,
    CreditNoteLine,
    Event,
    Invoice,
    InvoiceItem,
    InvoiceLine,
    InvoicePayment,
    PaymentAttemptRecord,
    PaymentIntent,
    PaymentRecord,
    /// An inline price (`price_data`) of an invoice item or line.
    Price,
    /// An inline product (`price_data.product_data`) of a line.
    Product,
    Refund,
    Request,
    Saga,
    /// An inline shipping rate (`shipping_cost.shipping_rate_data`) of an invoice.
    ShippingRate,
    /// An inline tax rate (`tax_amounts[].tax_rate_data`) of a line.
    TaxRate,
}

impl IdPrefix {
    /// The prefix including its trailing underscore.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdPrefix::Account => "acct_",
            IdPrefix::Attachment => "patt_",
            IdPrefix::BalanceTransaction => "cbtxn_",
            IdPrefix::Charge => "ch_",
            IdPrefix::CreditNote => "cn_",
            IdPrefix::CreditNoteLine => "cnli_",
            IdPrefix::Event => "evt_",
            IdPrefix::Invoice => "in_",
            IdPrefix::InvoiceItem => "ii_",
            IdPrefix::InvoiceLine => "il_",
            IdPrefix::InvoicePayment => "inpay_",
            IdPrefix::PaymentAttemptRecord => "par_",
            IdPrefix::PaymentIntent => "pi_",
            IdPrefix::PaymentRecord => "pr_",
            IdPrefix::Price => "price_",
            IdPrefix::Product => "prod_",
            IdPrefix::Refund => "re_",
            IdPrefix::Request => "req_",
            IdPrefix::Saga => "saga_",
            IdPrefix::ShippingRate => "shr_",
            IdPrefix::TaxRate => "txr_",
        }
    }

    /// The Stripe object name the prefix stands for, for error messages ("No such payment_intent").
    pub const fn object_name(self) -> &'static str {
        match self {
            IdPrefix::Account => "account",
            IdPrefix::Attachment => "payment_attachment",
            IdPrefix::BalanceTransaction => "customer_balance_transaction",
            IdPrefix::Charge => "charge",
            IdPrefix::CreditNote => "credit_note",
            IdPrefix::CreditNoteLine => "credit_note_line_item",
            IdPrefix::Event => "event",
            IdPrefix::Invoice => "invoice",
            IdPrefix::InvoiceItem => "invoiceitem",
            IdPrefix::InvoiceLine => "line_item",
            IdPrefix::InvoicePayment => "invoice_payment",
            IdPrefix::PaymentAttemptRecord => "payment_attempt_record",
            IdPrefix::PaymentIntent => "payment_intent",
            IdPrefix::PaymentRecord => "payment_record",
            IdPrefix::Price => "price",
            IdPrefix::Product => "product",
            IdPrefix::Refund => "refund",
            IdPrefix::Request => "request",
            IdPrefix::Saga => "saga",
            IdPrefix::ShippingRate => "shipping_rate",
            IdPrefix::TaxRate => "tax_rate",
        }
    }

    /// A new, unique id with this prefix.
    pub fn generate(self) -> String {
        let mut id = String::with_capacity(self.as_str().len() + BODY_LEN);
        id.push_str(self.as_str());
        encode_base62(next_value(), &mut id);
        id
    }

    /// A secret to hand to a client (`<id>_secret_<24 random characters>`), as Stripe's
    /// `client_secret`s look.
    pub fn client_secret(id: &str) -> String {
        let mut random = [0u8; 24];
        // As for ids: without an entropy source the secret is still unique, only guessable.
        let _ = getrandom::fill(&mut random);
        let body: String = random.iter().map(|b| char::from(ALPHABET[usize::from(*b) % 62])).collect();
        format!("{id}_secret_{body}")
    }

    /// Whether `id` is shaped like an id of this kind (prefix plus a non-empty base62 body).
    /// Callers treat a malformed id exactly like an unknown one: `resource_missing`.
    pub fn matches(self, id: &str) -> bool {
        id.strip_prefix(self.as_str()).is_some_and(|body| {
            !body.is_empty() && body.len() <= 64 && body.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const BODY_LEN: usize = 22;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Fixed-width base62 of a u128: 22 digits cover 2^128, and equal width keeps byte order equal to
/// numeric order because the alphabet is in ASCII order.
fn encode_base62(mut value: u128, out: &mut String) {
    let mut digits = [b'0'; BODY_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out.extend(digits.iter().map(|&b| char::from(b)));
}

/// 48 bits of milliseconds since the epoch, then 80 random bits. Monotonic within the process: when
/// the clock has not moved (or moved back) the previous value is incremented instead.
fn next_value() -> u128 {
    static LAST: Mutex<u128> = Mutex::new(0);
    let millis =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() & ((1 << 48) - 1)).unwrap_or(0);
    let mut random = [0u8; 10];
    // getrandom only fails on platforms without an entropy source; the timestamp and the
    // monotonic increment below still keep ids unique within the process.
    let _ = getrandom::fill(&mut random);
    let mut low: u128 = 0;
    for b in random {
        low = (low << 8) | u128::from(b);
    }
    let candidate = (millis << 80) | low;
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let value = if candidate > *last { candidate } else { *last + 1 };
    *last = value;
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_prefix_and_fixed_length() {
        let id = IdPrefix::Invoice.generate();
        assert!(id.starts_with("in_"));
        assert_eq!(id.len(), 3 + BODY_LEN);
        assert!(IdPrefix::Invoice.matches(&id));
        assert!(!IdPrefix::PaymentIntent.matches(&id));
    }

    #[test]
    fn ids_increase_in_byte_order_within_a_process() {
        let ids: Vec<String> = (0..10_000).map(|_| IdPrefix::Event.generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids must be strictly increasing");
    }

    #[test]
    fn malformed_ids_do_not_match() {
        for bad in ["pi_", "pi", "in_abc", "pi_abc-def", "pi_abc def", "PI_abc"] {
            assert!(!IdPrefix::PaymentIntent.matches(bad), "{bad}");
        }
        assert!(IdPrefix::PaymentIntent.matches("pi_3MtwBwLkdIwHu7ix28a3tqPa"));
    }

    #[test]
    fn base62_is_order_preserving() {
        let mut a = String::new();
        let mut b = String::new();
        encode_base62(61, &mut a);
        encode_base62(62, &mut b);
        assert!(a < b);
        let mut max = String::new();
        encode_base62(u128::MAX, &mut max);
        assert_eq!(max.len(), BODY_LEN);
    }
}
