//! Payment Records (Stripe's, 2025-10-29.clover): payments made outside settle, reported by the
//! merchant so they can pay invoices. Pure: no I/O, no protobuf; ids and clocks come in as
//! arguments.
//!
//! A record holds one or more attempts, oldest first; only the latest can change. Each attempt asks
//! for the record's amount and is pending until reported guaranteed, failed or canceled:
//!
//! ```text
//! report_payment ──▶ pending ──guaranteed──▶ guaranteed ──report_refund (≤ unrefunded)──▶ …
//!                            ──failed / canceled──▶ failed | canceled ──report_payment_attempt──▶ pending
//! ```
//!
//! Rules (settle's reading of Stripe's descriptions): a new attempt only when every earlier attempt
//! is canceled or failed; canceled / failed / guaranteed only for a pending latest attempt; refunds
//! only of a guaranteed latest attempt, never above what is still unrefunded, each with a refund
//! reference unique on the record (the database makes it unique across the account). A refused
//! action changes nothing.
//!
//! Amount buckets, as the proto defines them: `amount` = `amount_requested` = the record's amount;
//! `amount_guaranteed` = `amount_authorized` = the amount once the latest attempt is guaranteed, else
//! 0; `amount_failed` / `amount_canceled` = the sums over the failed / canceled attempts;
//! `amount_refunded` = the sum of the reported refunds.
//!
//! Events (settle extensions; Stripe has no `payment_record.*` events), each carrying the record as
//! it is after the change: `payment_record.created`, `payment_record.payment_attempt_guaranteed`,
//! `payment_record.payment_attempt_failed`, `payment_record.payment_attempt_canceled`,
//! `payment_record.refunded` and `payment_record.updated` (informational reports and new attempts).
//! The invoices service follows the attempt events of attached records; credit notes link a
//! record's refund by its reference (`refund_group`).

use settle_money::{Amount, AmountError, Currency};

pub use super::payment_intent::MAX_AMOUNT;

/// Where an attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Pending,
    Guaranteed,
    Failed,
    Canceled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Guaranteed => "guaranteed",
            Outcome::Failed => "failed",
            Outcome::Canceled => "canceled",
        }
    }

    /// Whether a record whose latest attempt is in this state could still pay an invoice.
    pub fn can_count(self) -> bool {
        matches!(self, Outcome::Pending | Outcome::Guaranteed)
    }
}

/// An attempt's state with the time its outcome was reported for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    Pending,
    Guaranteed { at: i64 },
    Failed { at: i64 },
    Canceled { at: i64 },
}

impl AttemptState {
    pub fn outcome(self) -> Outcome {
        match self {
            AttemptState::Pending => Outcome::Pending,
            AttemptState::Guaranteed { .. } => Outcome::Guaranteed,
            AttemptState::Failed { .. } => Outcome::Failed,
            AttemptState::Canceled { .. } => Outcome::Canceled,
        }
    }
}

/// An outcome reported together with a new attempt (`outcome` with `failed` or `guaranteed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedOutcome {
    Failed { at: i64 },
    Guaranteed { at: i64 },
}

impl ReportedOutcome {
    fn state(self) -> AttemptState {
        match self {
            ReportedOutcome::Failed { at } => AttemptState::Failed { at },
            ReportedOutcome::Guaranteed { at } => AttemptState::Guaranteed { at },
        }
    }
}

/// One payment attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: String,
    pub initiated_at: i64,
    pub state: AttemptState,
}

/// A refund reported with `report_refund`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedRefund {
    /// `processor_details.custom.refund_reference`: a credit note's `refund_group`.
    pub reference: String,
    pub amount: Amount,
    /// The attempt refunded (the latest, guaranteed one at the time).
    pub attempt: String,
    pub initiated_at: Option<i64>,
    pub refunded_at: Option<i64>,
    /// When settle recorded the report.
    pub created: i64,
}

/// The amount buckets of a record or of one attempt, all in the record's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    pub amount: Amount,
    pub amount_authorized: Amount,
    pub amount_canceled: Amount,
    pub amount_failed: Amount,
    pub amount_guaranteed: Amount,
    pub amount_refunded: Amount,
    pub amount_requested: Amount,
}

/// What happened, as settle's extension event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordEvent {
    Created,
    PaymentAttemptGuaranteed,
    PaymentAttemptFailed,
    PaymentAttemptCanceled,
    Refunded,
    Updated,
}

impl RecordEvent {
    pub fn event_type(self) -> &'static str {
        match self {
            RecordEvent::Created => "payment_record.created",
            RecordEvent::PaymentAttemptGuaranteed => "payment_record.payment_attempt_guaranteed",
            RecordEvent::PaymentAttemptFailed => "payment_record.payment_attempt_failed",
            RecordEvent::PaymentAttemptCanceled => "payment_record.payment_attempt_canceled",
            RecordEvent::Refunded => "payment_record.refunded",
            RecordEvent::Updated => "payment_record.updated",
        }
    }

    fn for_outcome(state: AttemptState) -> Option<RecordEvent> {
        match state {
            AttemptState::Pending => None,
            AttemptState::Guaranteed { .. } => Some(RecordEvent::PaymentAttemptGuaranteed),
            AttemptState::Failed { .. } => Some(RecordEvent::PaymentAttemptFailed),
            AttemptState::Canceled { .. } => Some(RecordEvent::PaymentAttemptCanceled),
        }
    }
}

/// Why an action was refused. Nothing changed when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("The requested amount must be greater than or equal to 1.")]
    AmountNotPositive,
    #[error("The requested amount must be no more than {MAX_AMOUNT} minor units.")]
    AmountTooLarge,
    #[error(
        "You cannot {action} this PaymentRecord because its latest payment attempt is {}.",
        .outcome.as_str()
    )]
    UnexpectedState { action: &'static str, outcome: Outcome },
    #[error("The refund amount must be greater than or equal to 1.")]
    RefundNotPositive,
    #[error("The refund currency ({given}) must be the PaymentRecord's currency ({expected}).")]
    RefundCurrencyMismatch { given: Currency, expected: Currency },
    #[error("The refund amount ({requested}) exceeds the unrefunded amount ({refundable}).")]
    RefundTooLarge { requested: i64, refundable: i64 },
    #[error("This PaymentRecord has already been fully refunded.")]
    AlreadyRefunded,
    #[error("The refund reference '{0}' is already in use.")]
    RefundReferenceInUse(String),
    #[error("The amounts of this PaymentRecord would overflow.")]
    Overflow,
}

impl From<AmountError> for RecordError {
    fn from(_: AmountError) -> Self {
        RecordError::Overflow
    }
}

/// A new record's parameters, already parsed.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub currency: Currency,
    pub amount: i64,
    pub customer: Option<String>,
    pub initiated_at: i64,
    pub outcome: Option<ReportedOutcome>,
}

/// A refund's parameters, already parsed. `amount` absent refunds all that is unrefunded.
#[derive(Debug, Clone)]
pub struct NewRefund {
    pub reference: String,
    pub amount: Option<(Currency, i64)>,
    pub initiated_at: Option<i64>,
    pub refunded_at: Option<i64>,
}

/// What the invoices side needs to know of a record to apply it to an invoice, readable from the
/// stored record alone (see `model::payment_record::summary_from_document`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub id: String,
    /// `customer_details.customer`: the record pays only this customer's invoices.
    pub customer: Option<String>,
    pub currency: Currency,
    /// What the payment is for (`amount`, equal to `amount_requested`).
    pub amount: Amount,
    pub latest_outcome: Outcome,
    pub amount_guaranteed: Amount,
    pub amount_refunded: Amount,
}

impl RecordSummary {
    /// Whether the record could still pay an invoice: its latest attempt is pending or guaranteed.
    pub fn can_count(&self) -> bool {
        self.latest_outcome.can_count()
    }

    /// The record's state as an invoice sees it.
    pub fn outcome(&self) -> crate::domain::attachment::PaymentOutcome {
        use crate::domain::attachment::PaymentOutcome;
        match self.latest_outcome {
            Outcome::Pending => PaymentOutcome::Pending,
            Outcome::Guaranteed => PaymentOutcome::Succeeded,
            Outcome::Failed => PaymentOutcome::Failed,
            Outcome::Canceled => PaymentOutcome::Canceled,
        }
    }

    /// What the record can contribute to an invoice: the guaranteed amount once guaranteed, else
    /// the amount requested.
    pub fn contribution(&self) -> Amount {
        if self.latest_outcome == Outcome::Guaranteed { self.amount_guaranteed } else { self.amount }
    }
}

/// A Payment Record's money and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub id: String,
    pub currency: Currency,
    /// What every attempt asks for.
    pub amount_requested: Amount,
    /// `customer_details.customer`.
    pub customer: Option<String>,
    /// The attempts before the latest, oldest first (each failed or canceled).
    pub earlier_attempts: Vec<Attempt>,
    /// The latest attempt: the only one that can still change.
    pub latest_attempt: Attempt,
    /// Oldest first.
    pub refunds: Vec<ReportedRefund>,
}

/// Checks a requested amount against Stripe's limits (no per-currency minimum: the payment was
/// taken elsewhere).
pub fn check_amount(amount: i64) -> Result<Amount, RecordError> {
    if amount < 1 {
        return Err(RecordError::AmountNotPositive);
    }
    if amount > MAX_AMOUNT {
        return Err(RecordError::AmountTooLarge);
    }
    Ok(Amount::new(amount))
}

impl PaymentRecord {
    /// A new record with its first attempt, pending or already terminal.
    pub fn report(
        id: String,
        attempt_id: String,
        new: NewPayment,
    ) -> Result<(PaymentRecord, Vec<RecordEvent>), RecordError> {
        let state = new.outcome.map_or(AttemptState::Pending, ReportedOutcome::state);
        let record = PaymentRecord {
            id,
            currency: new.currency,
            amount_requested: check_amount(new.amount)?,
            customer: new.customer,
            earlier_attempts: Vec::new(),
            latest_attempt: Attempt { id: attempt_id, initiated_at: new.initiated_at, state },
            refunds: Vec::new(),
        };
        record.amounts()?;
        let mut events = vec![RecordEvent::Created];
        events.extend(RecordEvent::for_outcome(state));
        Ok((record, events))
    }

    /// The latest attempt.
    pub fn latest(&self) -> &Attempt {
        &self.latest_attempt
    }

    /// Every attempt, oldest first.
    pub fn attempts(&self) -> impl Iterator<Item = &Attempt> {
        self.earlier_attempts.iter().chain(std::iter::once(&self.latest_attempt))
    }

    /// Whether the record could still pay an invoice: its latest attempt is pending or guaranteed.
    pub fn can_count(&self) -> bool {
        self.latest().state.outcome().can_count()
    }

    pub fn customer(&self) -> Option<&str> {
        self.customer.as_deref()
    }

    /// What the invoices side reads of the record.
    pub fn summary(&self) -> Result<RecordSummary, RecordError> {
        let amounts = self.amounts()?;
        Ok(RecordSummary {
            id: self.id.clone(),
            customer: self.customer.clone(),
            currency: self.currency,
            amount: amounts.amount,
            latest_outcome: self.latest().state.outcome(),
            amount_guaranteed: amounts.amount_guaranteed,
            amount_refunded: amounts.amount_refunded,
        })
    }

    /// Applies `change` to a copy and keeps it only if it succeeds and its amounts add up, so a
    /// refused action changes nothing.
    fn apply(
        &mut self,
        change: impl FnOnce(&mut PaymentRecord) -> Result<Vec<RecordEvent>, RecordError>,
    ) -> Result<Vec<RecordEvent>, RecordError> {
        let mut next = self.clone();
        let events = change(&mut next)?;
        next.amounts()?;
        *self = next;
        Ok(events)
    }

    fn refuse(&self, action: &'static str) -> RecordError {
        RecordError::UnexpectedState { action, outcome: self.latest().state.outcome() }
    }

    /// Starts a new attempt (pending, or already terminal), allowed only when every earlier
    /// attempt is canceled or failed.
    pub fn report_attempt(
        &mut self,
        attempt_id: String,
        initiated_at: i64,
        outcome: Option<ReportedOutcome>,
    ) -> Result<Vec<RecordEvent>, RecordError> {
        let all_ended = self
            .attempts()
            .all(|a| matches!(a.state, AttemptState::Failed { .. } | AttemptState::Canceled { .. }));
        if !all_ended {
            return Err(self.refuse("report a new payment attempt on"));
        }
        self.apply(|record| {
            let state = outcome.map_or(AttemptState::Pending, ReportedOutcome::state);
            let previous = std::mem::replace(
                &mut record.latest_attempt,
                Attempt { id: attempt_id, initiated_at, state },
            );
            record.earlier_attempts.push(previous);
            let mut events = vec![RecordEvent::Updated];
            events.extend(RecordEvent::for_outcome(state));
            Ok(events)
        })
    }

    /// Ends the pending latest attempt with `state`.
    fn end_latest(
        &mut self,
        action: &'static str,
        state: AttemptState,
    ) -> Result<Vec<RecordEvent>, RecordError> {
        if self.latest().state != AttemptState::Pending {
            return Err(self.refuse(action));
        }
        self.apply(|record| {
            record.latest_attempt.state = state;
            Ok(RecordEvent::for_outcome(state).into_iter().collect())
        })
    }

    /// The latest attempt was guaranteed (succeeded) at `at`.
    pub fn report_guaranteed(&mut self, at: i64) -> Result<Vec<RecordEvent>, RecordError> {
        self.end_latest(
            "report the guarantee of the latest payment attempt of",
            AttemptState::Guaranteed { at },
        )
    }

    /// The latest attempt failed at `at`.
    pub fn report_failed(&mut self, at: i64) -> Result<Vec<RecordEvent>, RecordError> {
        self.end_latest("report the failure of the latest payment attempt of", AttemptState::Failed { at })
    }

    /// The latest attempt was canceled at `at`.
    pub fn report_canceled(&mut self, at: i64) -> Result<Vec<RecordEvent>, RecordError> {
        self.end_latest(
            "report the cancellation of the latest payment attempt of",
            AttemptState::Canceled { at },
        )
    }

    /// What is still refundable: the guaranteed amount less what was refunded.
    pub fn refundable(&self) -> Result<Amount, RecordError> {
        let amounts = self.amounts()?;
        Ok(amounts.amount_guaranteed.checked_sub(amounts.amount_refunded)?)
    }

    /// Reports a refund of the guaranteed latest attempt, at `now`.
    pub fn report_refund(&mut self, refund: NewRefund, now: i64) -> Result<Vec<RecordEvent>, RecordError> {
        if !matches!(self.latest().state, AttemptState::Guaranteed { .. }) {
            return Err(self.refuse("report a refund of"));
        }
        if self.refunds.iter().any(|r| r.reference == refund.reference) {
            return Err(RecordError::RefundReferenceInUse(refund.reference));
        }
        let refundable = self.refundable()?;
        let amount = match refund.amount {
            None if refundable.is_positive() => refundable,
            None => return Err(RecordError::AlreadyRefunded),
            Some((currency, _)) if currency != self.currency => {
                return Err(RecordError::RefundCurrencyMismatch { given: currency, expected: self.currency });
            }
            Some((_, value)) if value < 1 => return Err(RecordError::RefundNotPositive),
            Some((_, value)) if value > refundable.get() => {
                return Err(RecordError::RefundTooLarge { requested: value, refundable: refundable.get() });
            }
            Some((_, value)) => Amount::new(value),
        };
        let attempt = self.latest().id.clone();
        self.apply(|record| {
            record.refunds.push(ReportedRefund {
                reference: refund.reference,
                amount,
                attempt,
                initiated_at: refund.initiated_at,
                refunded_at: refund.refunded_at,
                created: now,
            });
            Ok(vec![RecordEvent::Refunded])
        })
    }

    /// An informational report: `customer`, when given, replaces (or, with `None`, removes) the
    /// customer. Allowed in every state.
    pub fn report_informational(&mut self, customer: Option<Option<String>>) -> Vec<RecordEvent> {
        if let Some(customer) = customer {
            self.customer = customer;
        }
        vec![RecordEvent::Updated]
    }

    /// The amount buckets of the record.
    pub fn amounts(&self) -> Result<Amounts, RecordError> {
        let requested = self.amount_requested;
        let count = |outcome: Outcome| self.attempts().filter(|a| a.state.outcome() == outcome).count();
        let times = |n: usize| -> Result<Amount, RecordError> {
            let n = i64::try_from(n).map_err(|_| RecordError::Overflow)?;
            Ok(requested.checked_mul(n)?)
        };
        let guaranteed =
            if self.latest().state.outcome() == Outcome::Guaranteed { requested } else { Amount::ZERO };
        Ok(Amounts {
            amount: requested,
            amount_authorized: guaranteed,
            amount_canceled: times(count(Outcome::Canceled))?,
            amount_failed: times(count(Outcome::Failed))?,
            amount_guaranteed: guaranteed,
            amount_refunded: Amount::checked_sum(self.refunds.iter().map(|r| r.amount))?,
            amount_requested: requested,
        })
    }

    /// The amount buckets of one attempt (the record's rules for that attempt only).
    pub fn attempt_amounts(&self, attempt: &Attempt) -> Result<Amounts, RecordError> {
        let requested = self.amount_requested;
        let when = |outcome: Outcome| {
            if attempt.state.outcome() == outcome { requested } else { Amount::ZERO }
        };
        let refunded =
            Amount::checked_sum(self.refunds.iter().filter(|r| r.attempt == attempt.id).map(|r| r.amount))?;
        Ok(Amounts {
            amount: requested,
            amount_authorized: when(Outcome::Guaranteed),
            amount_canceled: when(Outcome::Canceled),
            amount_failed: when(Outcome::Failed),
            amount_guaranteed: when(Outcome::Guaranteed),
            amount_refunded: refunded,
            amount_requested: requested,
        })
    }
}

#[cfg(test)]
mod tests;
