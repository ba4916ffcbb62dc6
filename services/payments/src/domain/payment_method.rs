//! The payment methods settle can charge: Stripe's test payment methods, each with a fixed outcome.

/// What a payment attempt with a method does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The payment goes through at once (cards).
    Succeeds,
    /// The bank debit is submitted and stays `processing` until settled.
    Pending,
    /// The issuer declines: Stripe's `card_declined` with this `decline_code`.
    Declined { decline_code: &'static str, message: &'static str },
}

/// Stripe's payment-method type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodType {
    Card,
    UsBankAccount,
}

impl MethodType {
    pub fn as_str(self) -> &'static str {
        match self {
            MethodType::Card => "card",
            MethodType::UsBankAccount => "us_bank_account",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "card" => Some(MethodType::Card),
            "us_bank_account" => Some(MethodType::UsBankAccount),
            _ => None,
        }
    }
}

/// A known test payment method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestPaymentMethod {
    pub id: &'static str,
    pub method_type: MethodType,
    pub outcome: AttemptOutcome,
}

const DECLINED: AttemptOutcome =
    AttemptOutcome::Declined { decline_code: "generic_decline", message: "Your card was declined." };
const INSUFFICIENT: AttemptOutcome = AttemptOutcome::Declined {
    decline_code: "insufficient_funds",
    message: "Your card has insufficient funds.",
};

/// Every payment method id settle accepts.
pub const TEST_PAYMENT_METHODS: &[TestPaymentMethod] = &[
    TestPaymentMethod {
        id: "pm_card_visa",
        method_type: MethodType::Card,
        outcome: AttemptOutcome::Succeeds,
    },
    TestPaymentMethod {
        id: "pm_card_visa_debit",
        method_type: MethodType::Card,
        outcome: AttemptOutcome::Succeeds,
    },
    TestPaymentMethod {
        id: "pm_card_mastercard",
        method_type: MethodType::Card,
        outcome: AttemptOutcome::Succeeds,
    },
    TestPaymentMethod {
        id: "pm_card_amex",
        method_type: MethodType::Card,
        outcome: AttemptOutcome::Succeeds,
    },
    TestPaymentMethod { id: "pm_card_chargeDeclined", method_type: MethodType::Card, outcome: DECLINED },
    TestPaymentMethod {
        id: "pm_card_chargeDeclinedInsufficientFunds",
        method_type: MethodType::Card,
        outcome: INSUFFICIENT,
    },
    TestPaymentMethod {
        id: "pm_us_bank_account",
        method_type: MethodType::UsBankAccount,
        outcome: AttemptOutcome::Pending,
    },
];

impl TestPaymentMethod {
    /// Looks up a payment method by id.
    pub fn find(id: &str) -> Option<&'static TestPaymentMethod> {
        TEST_PAYMENT_METHODS.iter().find(|m| m.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_have_fixed_outcomes() {
        assert_eq!(TestPaymentMethod::find("pm_card_visa").unwrap().outcome, AttemptOutcome::Succeeds);
        assert_eq!(TestPaymentMethod::find("pm_us_bank_account").unwrap().outcome, AttemptOutcome::Pending);
        assert!(matches!(
            TestPaymentMethod::find("pm_card_chargeDeclinedInsufficientFunds").unwrap().outcome,
            AttemptOutcome::Declined { decline_code: "insufficient_funds", .. }
        ));
        assert!(TestPaymentMethod::find("pm_unknown").is_none());
    }
}
