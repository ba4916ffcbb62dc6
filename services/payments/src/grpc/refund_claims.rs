//! `RefundClaimService`: the payments side of the credit-notes issue and void sagas. Only settle's
//! own services may call it (the server mounts it as internal).
//!
//! Every call is idempotent on `saga_id`, the key of the saga's `refund_claims` row. Each call
//! inserts that row first (`ON CONFLICT DO NOTHING`): whoever finds it there is a repeat, or lost a
//! race to a twin, and answers with the saga's claims as they are, changing nothing.
//!
//! Lock order: the refunded payments, then the refunds, each in id order. No other writer locks a
//! payment after one of its refunds (creating or reporting a refund locks only the payment; a
//! release and a metadata update lock only refunds), so concurrent claims, releases and refunds
//! queue instead of deadlocking.

pub mod params;

use std::collections::{BTreeMap, BTreeSet};

use settle_money::{Amount, Currency};
use settle_platform::context::RequestContext;
use settle_platform::db::Tx;
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::EventOrigin;
use settle_platform::time::now_unix;
use settle_platform::validate;
use settle_platform::{ApiError, Scope};
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::payments::v1 as pb;
use settle_proto::settle::payments::v1::refund_claim_service_server::RefundClaimService;
use tonic::{Code, Request, Response, Status};

use self::params::ClaimRequest;
use super::AppState;
use super::attachments::lock_payment;
use super::refunds::refund_in;
use crate::domain::attachment::{AttachmentStatus, PaymentKind};
use crate::domain::refund::RefundStatus;
use crate::domain::refund_claim::{ClaimScope, ClaimableRefund, ClaimsStatus};
use crate::store::attachments;
use crate::store::refund_claims::{self as store, AddClaimed, ClaimsRow, ItemRow, LockedRefund, RefundKey};

/// The handlers of `RefundClaimService`.
#[derive(Clone, Debug)]
pub struct RefundClaimsApi {
    state: AppState,
}

impl RefundClaimsApi {
    pub fn new(state: AppState) -> Self {
        RefundClaimsApi { state }
    }
}

fn refund_missing(key: &RefundKey) -> ApiError {
    match key {
        RefundKey::Refund(id) => ApiError::not_found(IdPrefix::Refund, id, "refund"),
        RefundKey::RecordRefund { payment_record, refund_group } => ApiError::new(
            Code::NotFound,
            ErrorReason::ResourceMissing,
            format!("No such payment record refund: {payment_record} has no refund with refund_reference {refund_group:?}."),
        )
        .with_violation("payment_record_refund", "No such payment record refund"),
    }
}

fn claims_missing(saga_id: &str) -> ApiError {
    ApiError::new(
        Code::NotFound,
        ErrorReason::ResourceMissing,
        format!("Saga {saga_id} has no refund claims."),
    )
    .with_violation("saga_id", "No refund claims")
}

/// Stored claims that cannot be read back (a bug or a damaged row).
#[derive(Debug, thiserror::Error)]
#[error("stored refund claim data is invalid: {0}")]
struct Corrupt(String);

fn corrupt(problem: String) -> ApiError {
    ApiError::internal("Stored refund claims could not be read", &Corrupt(problem))
}

/// A locked refund as the claim rules see it.
fn claimable(
    key: &RefundKey,
    locked: LockedRefund,
    attached_to: Option<String>,
) -> Result<ClaimableRefund, ApiError> {
    let currency = Currency::parse(&locked.currency)
        .map_err(|_| corrupt(format!("currency {:?} of {}", locked.currency, key.name())))?;
    let status = match &locked.status {
        // A reported refund was reported as refunded.
        None => RefundStatus::Succeeded,
        Some(name) => {
            RefundStatus::parse(name).ok_or_else(|| corrupt(format!("status {name:?} of {}", key.name())))?
        }
    };
    Ok(ClaimableRefund {
        name: key.name(),
        payment: locked.payment,
        attached_to,
        currency,
        status,
        amount: Amount::new(locked.amount),
        amount_claimed: Amount::new(locked.amount_claimed),
    })
}

/// What each refund's claimed amount changes by: the sum of the items that claim it.
fn totals(items: &[ItemRow]) -> Result<BTreeMap<RefundKey, Amount>, ApiError> {
    let mut totals = BTreeMap::<RefundKey, Amount>::new();
    for item in items {
        let key = item.key().ok_or_else(|| corrupt(format!("item {} names no refund", item.ordinal)))?;
        let total = totals.entry(key).or_insert(Amount::ZERO);
        *total = total
            .checked_add(Amount::new(item.amount))
            .map_err(|_| corrupt(format!("item {} overflows", item.ordinal)))?;
    }
    Ok(totals)
}

/// A refunded payment, read under its row lock.
struct LockedPayment {
    currency: Currency,
    /// The invoice it is attached (confirmed) to.
    attached_to: Option<String>,
}

/// Locks the payments the claim touches, then their refunds, each in id order (see the module
/// comment), and reads what the claim rules need.
async fn lock_all(
    tx: &mut Tx,
    state: &AppState,
    ctx: &RequestContext,
    request: &ClaimRequest,
) -> Result<(BTreeMap<String, LockedPayment>, BTreeMap<RefundKey, ClaimableRefund>), ApiError> {
    let scope = ctx.scope();
    // Payment → (kind, the parameter it came from, for errors).
    let mut wanted = BTreeMap::<String, (PaymentKind, String)>::new();
    for (i, claim) in request.claims.iter().enumerate() {
        let field = format!("claims[{i}]");
        let payment = store::payment_of(tx, scope, &claim.key)
            .await?
            .ok_or_else(|| refund_missing(&claim.key).nested_in(&field))?;
        let kind = match claim.key {
            RefundKey::Refund(_) => PaymentKind::PaymentIntent,
            RefundKey::RecordRefund { .. } => PaymentKind::PaymentRecord,
        };
        wanted.entry(payment).or_insert((kind, field));
    }
    if let Some(new) = &request.new_refund {
        wanted.entry(new.payment.clone()).or_insert((PaymentKind::PaymentIntent, "new_refund".to_owned()));
    }
    let mut payments = BTreeMap::new();
    for (payment, (kind, field)) in wanted {
        let snapshot = lock_payment(tx, state, ctx, &payment, kind).await.map_err(|e| e.nested_in(&field))?;
        let attached_to = attachments::find_active(&mut **tx, scope, &payment)
            .await?
            .filter(|a| a.status() == Some(AttachmentStatus::Confirmed))
            .map(|a| a.invoice);
        payments.insert(payment, LockedPayment { currency: snapshot.currency, attached_to });
    }
    let keys: BTreeSet<&RefundKey> = request.claims.iter().map(|c| &c.key).collect();
    let mut refunds = BTreeMap::new();
    for key in keys {
        let locked =
            store::lock(tx, state.db.backend(), scope, key).await?.ok_or_else(|| refund_missing(key))?;
        let attached_to = payments.get(&locked.payment).and_then(|p| p.attached_to.clone());
        refunds.insert(key.clone(), claimable(key, locked, attached_to)?);
    }
    Ok((payments, refunds))
}

fn render(row: &ClaimsRow, items: &[ItemRow]) -> pb::RefundClaims {
    let status = match row.status() {
        Some(ClaimsStatus::Claimed) => pb::RefundClaimsStatus::Claimed,
        Some(ClaimsStatus::Released) => pb::RefundClaimsStatus::Released,
        None => pb::RefundClaimsStatus::Unspecified,
    };
    pb::RefundClaims {
        saga_id: row.saga_id.clone(),
        credit_note: row.credit_note.clone(),
        claims: items.iter().map(render_item).collect(),
        status: status as i32,
    }
}

fn render_item(item: &ItemRow) -> pb::RefundClaim {
    let (claim_type, refund, payment_record_refund) = match item.key() {
        Some(RefundKey::Refund(id)) => (pb::RefundClaimType::Refund, id, None),
        // Stripe's `credit_note_refund.refund` needs an id: a record refund is named by its record.
        Some(RefundKey::RecordRefund { payment_record, refund_group }) => (
            pb::RefundClaimType::PaymentRecordRefund,
            payment_record.clone(),
            Some(pb::PaymentRecordRefundReference { payment_record, refund_group }),
        ),
        None => (pb::RefundClaimType::Unspecified, String::new(), None),
    };
    pb::RefundClaim {
        r#type: claim_type as i32,
        refund,
        payment_record_refund,
        amount_refunded: item.amount,
        currency: item.currency.clone(),
        payment: item.payment.clone(),
        created_by_claim: item.created_by_claim,
    }
}

/// The saga's claims as stored now.
async fn load(tx: &mut Tx, scope: &Scope, saga_id: &str) -> Result<pb::RefundClaims, ApiError> {
    let row = store::find(&mut **tx, scope, saga_id).await?.ok_or_else(|| claims_missing(saga_id))?;
    let items = store::items(&mut **tx, scope, saga_id).await?;
    Ok(render(&row, &items))
}

impl RefundClaimsApi {
    async fn claim(
        &self,
        ctx: &RequestContext,
        req: pb::ClaimRefundsRequest,
    ) -> Result<pb::RefundClaims, ApiError> {
        let request = ClaimRequest::parse(&req)?;
        let state = &self.state;
        let scope = ctx.scope();
        let saga_id = request.saga_id.as_str();
        let mut tx = state.db.begin().await?;
        let now = now_unix();
        let row = ClaimsRow {
            saga_id: saga_id.to_owned(),
            credit_note: request.credit_note.clone(),
            invoice: request.invoice.clone(),
            status: ClaimsStatus::Claimed.as_str().to_owned(),
            created: now,
            updated: now,
        };
        if !store::insert_if_absent(&mut tx, scope, &row).await? {
            // A repeated step (or a release that came first): the saga's claims as they are now.
            let claims = load(&mut tx, scope, saga_id).await?;
            tx.commit().await?;
            return Ok(claims);
        }

        let claim_scope = ClaimScope { invoice: &request.invoice, currency: request.currency };
        let (payments, mut refunds) = lock_all(&mut tx, state, ctx, &request).await?;
        let mut items = Vec::with_capacity(request.claims.len() + 1);
        for (i, claim) in request.claims.iter().enumerate() {
            let refund = refunds.get_mut(&claim.key).ok_or_else(|| refund_missing(&claim.key))?;
            let amount = refund
                .claim(&claim_scope, claim.requested)
                .map_err(|e| ApiError::from(e).nested_in(&format!("claims[{i}]")))?;
            items.push(ItemRow::new(i, &claim.key, &refund.payment, amount.get(), refund.currency.as_str()));
        }
        let mut created = false;
        if let Some(new) = request.new_refund {
            let payment = payments.get(&new.payment).ok_or_else(|| {
                ApiError::not_found(IdPrefix::PaymentIntent, &new.payment, "payment").nested_in("new_refund")
            })?;
            claim_scope
                .check_new_refund(&new.payment, payment.attached_to.as_deref(), payment.currency)
                .map_err(|e| ApiError::from(e).nested_in("new_refund[payment]"))?;
            // It checks what is left to refund, adds to the intent's refunded total and writes
            // `refund.created`, all in this transaction.
            let doc = refund_in(&mut tx, state.db.backend(), &EventOrigin::from(ctx), new.refund)
                .await
                .map_err(|e| e.nested_in("new_refund"))?;
            let mut item = ItemRow::new(
                items.len(),
                &RefundKey::Refund(doc.id),
                &new.payment,
                doc.amount,
                &doc.currency,
            );
            item.created_by_claim = true;
            items.push(item);
            created = true;
        }
        for (key, total) in totals(&items)? {
            match store::add_claimed(&mut tx, scope, &key, total.get()).await? {
                AddClaimed::Added => {}
                // Only reachable if the row lock failed us: the CHECK constraint caught it.
                AddClaimed::OutOfRange => {
                    return Err(ApiError::failed_precondition(
                        ErrorReason::RefundExceedsRefundable,
                        format!("Refund {} cannot be linked for more than it refunded.", key.name()),
                    ));
                }
                AddClaimed::NoSuchRefund => return Err(refund_missing(&key)),
            }
        }
        for item in &items {
            store::insert_item(&mut tx, scope, saga_id, item).await?;
        }
        settle_platform::faults::hit("payments.claim_refunds.before_commit").await;
        tx.commit().await?;
        settle_platform::faults::hit("payments.claim_refunds.after_commit").await;
        if created {
            state.hub.committed();
        }
        tracing::debug!(saga_id, credit_note = %row.credit_note, claims = items.len(), "refunds claimed");
        Ok(render(&row, &items))
    }

    async fn release(
        &self,
        ctx: &RequestContext,
        req: pb::ReleaseRefundClaimsRequest,
    ) -> Result<pb::RefundClaims, ApiError> {
        validate::id("saga_id", &req.saga_id, IdPrefix::Saga)?;
        let state = &self.state;
        let scope = ctx.scope();
        let saga_id = req.saga_id.as_str();
        let mut tx = state.db.begin().await?;
        let now = now_unix();
        let placeholder = ClaimsRow {
            saga_id: saga_id.to_owned(),
            credit_note: String::new(),
            invoice: String::new(),
            status: ClaimsStatus::Released.as_str().to_owned(),
            created: now,
            updated: now,
        };
        if store::insert_if_absent(&mut tx, scope, &placeholder).await? {
            // The saga's claim has not run (or failed): the released placeholder makes a late
            // ClaimRefunds of this saga find it and claim nothing.
            tx.commit().await?;
            settle_platform::faults::hit("payments.release_refund_claims.after_commit").await;
            return Ok(render(&placeholder, &[]));
        }
        let mut row = store::find_for_update(&mut tx, state.db.backend(), scope, saga_id)
            .await?
            .ok_or_else(|| claims_missing(saga_id))?;
        let items = store::items(&mut *tx, scope, saga_id).await?;
        if row.status() != Some(ClaimsStatus::Released) {
            // The refunds in id order, as a claim locks them. The refund a claim created stays.
            for (key, total) in totals(&items)? {
                let locked = store::lock(&mut tx, state.db.backend(), scope, &key)
                    .await?
                    .ok_or_else(|| refund_missing(&key))?;
                claimable(&key, locked, None)?.release(total)?;
                if store::add_claimed(&mut tx, scope, &key, -total.get()).await? != AddClaimed::Added {
                    return Err(corrupt(format!(
                        "the claimed amount of {} could not be given back",
                        key.name()
                    )));
                }
            }
            store::set_status(&mut tx, scope, saga_id, ClaimsStatus::Released, now).await?;
            row.status = ClaimsStatus::Released.as_str().to_owned();
            row.updated = now;
        }
        tx.commit().await?;
        settle_platform::faults::hit("payments.release_refund_claims.after_commit").await;
        tracing::debug!(saga_id, "refund claims released");
        Ok(render(&row, &items))
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        req: pb::GetRefundClaimsRequest,
    ) -> Result<pb::RefundClaims, ApiError> {
        validate::id("saga_id", &req.saga_id, IdPrefix::Saga)?;
        let pool = self.state.db.pool();
        let row = store::find(pool, ctx.scope(), &req.saga_id)
            .await?
            .ok_or_else(|| claims_missing(&req.saga_id))?;
        // Items never change once written with the row, so a second read cannot disagree with it.
        let items = store::items(pool, ctx.scope(), &req.saga_id).await?;
        Ok(render(&row, &items))
    }
}

#[tonic::async_trait]
impl RefundClaimService for RefundClaimsApi {
    async fn claim_refunds(
        &self,
        request: Request<pb::ClaimRefundsRequest>,
    ) -> Result<Response<pb::RefundClaims>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.claim(&ctx, request.into_inner()).await?))
    }

    async fn release_refund_claims(
        &self,
        request: Request<pb::ReleaseRefundClaimsRequest>,
    ) -> Result<Response<pb::RefundClaims>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.release(&ctx, request.into_inner()).await?))
    }

    async fn get_refund_claims(
        &self,
        request: Request<pb::GetRefundClaimsRequest>,
    ) -> Result<Response<pb::RefundClaims>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }
}
