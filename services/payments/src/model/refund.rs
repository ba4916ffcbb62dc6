//! A refund is stored as its Stripe-shaped document (`settle.payments.v1.Refund`) plus projected
//! columns. The domain decides the money; this module renders it, with what the refund copies from
//! the payment intent it refunds.

use std::collections::BTreeMap;

use settle_proto::settle::payments::v1 as pb;

use crate::domain::payment_method::{MethodType, TestPaymentMethod};
use crate::domain::refund::{Refund, RefundReason, RefundStatus};

pub fn reason_to_pb(reason: RefundReason) -> pb::RefundReason {
    match reason {
        RefundReason::Duplicate => pb::RefundReason::Duplicate,
        RefundReason::Fraudulent => pb::RefundReason::Fraudulent,
        RefundReason::RequestedByCustomer => pb::RefundReason::RequestedByCustomer,
        RefundReason::ExpiredUncapturedCharge => pb::RefundReason::ExpiredUncapturedCharge,
    }
}

pub fn reason_from_pb(value: i32) -> Option<RefundReason> {
    Some(match pb::RefundReason::try_from(value).ok()? {
        pb::RefundReason::Unspecified => return None,
        pb::RefundReason::Duplicate => RefundReason::Duplicate,
        pb::RefundReason::Fraudulent => RefundReason::Fraudulent,
        pb::RefundReason::RequestedByCustomer => RefundReason::RequestedByCustomer,
        pb::RefundReason::ExpiredUncapturedCharge => RefundReason::ExpiredUncapturedCharge,
    })
}

pub fn status_to_pb(status: RefundStatus) -> pb::RefundStatus {
    match status {
        RefundStatus::Pending => pb::RefundStatus::Pending,
        RefundStatus::RequiresAction => pb::RefundStatus::RequiresAction,
        RefundStatus::Succeeded => pb::RefundStatus::Succeeded,
        RefundStatus::Failed => pb::RefundStatus::Failed,
        RefundStatus::Canceled => pb::RefundStatus::Canceled,
    }
}

pub fn status_from_pb(value: i32) -> Option<RefundStatus> {
    Some(match pb::RefundStatus::try_from(value).ok()? {
        pb::RefundStatus::Unspecified => return None,
        pb::RefundStatus::Pending => RefundStatus::Pending,
        pb::RefundStatus::RequiresAction => RefundStatus::RequiresAction,
        pb::RefundStatus::Succeeded => RefundStatus::Succeeded,
        pb::RefundStatus::Failed => RefundStatus::Failed,
        pb::RefundStatus::Canceled => RefundStatus::Canceled,
    })
}

/// What a create request adds to the refund besides its money.
#[derive(Debug, Clone, Default)]
pub struct RefundExtras {
    pub created: i64,
    pub instructions_email: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// The document of a new refund of `intent`.
pub fn refund_document(refund: &Refund, intent: &pb::PaymentIntent, extras: RefundExtras) -> pb::Refund {
    let method_type =
        intent.payment_method.as_deref().and_then(TestPaymentMethod::find).map(|m| m.method_type);
    // Card refunds go back to the card; Stripe's destination details mirror no bank-debit variant.
    let destination_details = (method_type == Some(MethodType::Card)).then(|| pb::RefundDestinationDetails {
        card: Some(pb::RefundDestinationCard {
            r#type: pb::RefundDestinationCardType::Refund as i32,
            ..Default::default()
        }),
        r#type: "card".to_owned(),
        us_bank_transfer: None,
    });
    pb::Refund {
        amount: refund.amount.get(),
        charge: refund.charge.clone(),
        created: extras.created,
        currency: refund.currency.as_str().to_owned(),
        customer: intent.customer.clone(),
        customer_account: intent.customer_account.clone(),
        destination_details,
        id: refund.id.clone(),
        instructions_email: extras.instructions_email,
        metadata: extras.metadata,
        object: "refund".to_owned(),
        payment_intent: Some(refund.payment_intent.clone()),
        payment_method: intent.payment_method.clone(),
        reason: refund.reason.map(|r| reason_to_pb(r) as i32),
        status: Some(status_to_pb(refund.status) as i32),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_and_status_maps_both_ways() {
        for reason in [
            RefundReason::Duplicate,
            RefundReason::Fraudulent,
            RefundReason::RequestedByCustomer,
            RefundReason::ExpiredUncapturedCharge,
        ] {
            assert_eq!(reason_from_pb(reason_to_pb(reason) as i32), Some(reason));
            assert_eq!(
                reason_to_pb(reason).as_str_name().to_ascii_lowercase(),
                format!("refund_reason_{}", reason.as_str())
            );
        }
        for status in [
            RefundStatus::Pending,
            RefundStatus::RequiresAction,
            RefundStatus::Succeeded,
            RefundStatus::Failed,
            RefundStatus::Canceled,
        ] {
            assert_eq!(status_from_pb(status_to_pb(status) as i32), Some(status));
            assert_eq!(
                status_to_pb(status).as_str_name().to_ascii_lowercase(),
                format!("refund_status_{}", status.as_str())
            );
        }
        assert_eq!(reason_from_pb(0), None);
        assert_eq!(status_from_pb(99), None);
    }
}
