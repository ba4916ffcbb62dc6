//! Balance transaction types between the domain and the document.

use settle_proto::settle::invoices::v1 as pb;

use crate::domain::balance::TransactionType;

pub fn type_to_pb(kind: TransactionType) -> pb::CustomerBalanceTransactionType {
    use pb::CustomerBalanceTransactionType as T;
    match kind {
        TransactionType::Adjustment => T::Adjustment,
        TransactionType::AppliedToInvoice => T::AppliedToInvoice,
        TransactionType::CheckoutSessionSubscriptionPayment => T::CheckoutSessionSubscriptionPayment,
        TransactionType::CheckoutSessionSubscriptionPaymentCanceled => {
            T::CheckoutSessionSubscriptionPaymentCanceled
        }
        TransactionType::CreditNote => T::CreditNote,
        TransactionType::Initial => T::Initial,
        TransactionType::InvoiceOverpaid => T::InvoiceOverpaid,
        TransactionType::InvoiceTooLarge => T::InvoiceTooLarge,
        TransactionType::InvoiceTooSmall => T::InvoiceTooSmall,
        TransactionType::Migration => T::Migration,
        TransactionType::UnappliedFromInvoice => T::UnappliedFromInvoice,
        TransactionType::UnspentReceiverCredit => T::UnspentReceiverCredit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_maps_to_the_enum_value_of_its_name() {
        for kind in TransactionType::ALL {
            let name =
                type_to_pb(kind).as_str_name().trim_start_matches("CUSTOMER_BALANCE_TRANSACTION_TYPE_");
            assert_eq!(name.to_ascii_lowercase(), kind.as_str());
        }
    }
}
