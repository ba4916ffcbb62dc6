//! `CustomerBalanceService`: Stripe's `/v1/customers/{customer}/balance_transactions` and a read of
//! the balance itself. Adjustments go through [`balance::post`], like every other balance change.

use settle_platform::ApiError;
use settle_platform::context::RequestContext;
use settle_platform::idempotency::{self, Claim};
use settle_platform::ids::IdPrefix;
use settle_platform::outbox::{self, EventOrigin};
use settle_platform::pagination::PageRequest;
use settle_platform::validate;
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::customer_balance_service_server::CustomerBalanceService;
use tonic::{Request, Response, Status};

use super::AppState;
use super::invoices::params::{currency, customer, merge_metadata, new_metadata, non_empty};
use crate::domain::balance::TransactionType;
use crate::domain::charge::MAX_AMOUNT;
use crate::store::balance::{self, ListFilter, Posting};

const CREATE: &str = "/settle.invoices.v1.CustomerBalanceService/CreateBalanceTransaction";
const UPDATE: &str = "/settle.invoices.v1.CustomerBalanceService/UpdateBalanceTransaction";

/// Stripe's limit on a balance transaction's description.
const MAX_DESCRIPTION: usize = 350;

/// The handlers of `CustomerBalanceService`.
#[derive(Clone, Debug)]
pub struct CustomerBalanceApi {
    state: AppState,
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(IdPrefix::BalanceTransaction, id, "id")
}

impl CustomerBalanceApi {
    pub fn new(state: AppState) -> Self {
        CustomerBalanceApi { state }
    }

    async fn create(
        &self,
        ctx: &RequestContext,
        req: pb::CreateBalanceTransactionRequest,
    ) -> Result<pb::CustomerBalanceTransaction, ApiError> {
        let customer = customer("customer", Some(&req.customer))?;
        if req.amount == 0 {
            return Err(ApiError::invalid_param(
                "amount",
                ErrorReason::ParameterInvalidInteger,
                "amount must be a non-zero integer: negative credits the customer, positive debits them.",
            ));
        }
        if req.amount.unsigned_abs() > MAX_AMOUNT.unsigned_abs() {
            return Err(ApiError::invalid_param(
                "amount",
                ErrorReason::AmountTooLarge,
                format!("amount must be between -{MAX_AMOUNT} and {MAX_AMOUNT}."),
            ));
        }
        let currency = currency("currency", Some(&req.currency))?;
        validate::max_len("description", req.description.as_deref(), MAX_DESCRIPTION)?;
        let metadata = new_metadata("metadata", &req.metadata)?;
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, CREATE, &req).await? {
            Claim::Replay(stored) => return Ok(stored),
            Claim::Fresh(pending) => pending,
        };
        let posting = Posting {
            scope: ctx.scope(),
            customer: &customer,
            currency: currency.as_str(),
            amount: req.amount,
            kind: TransactionType::Adjustment,
            invoice: None,
            credit_note: None,
            description: req.description.as_deref().filter(|d| !d.is_empty()),
            metadata,
        };
        let transaction = balance::post(&mut tx, state.db.backend(), &posting).await?;
        outbox::append(
            &mut tx,
            state.db.backend(),
            &EventOrigin::from(ctx),
            "customer_balance_transaction.created",
            &transaction.id,
            &transaction,
            None,
        )
        .await?;
        pending.record(&mut tx, &transaction).await?;
        tx.commit().await?;
        state.hub.committed();
        Ok(transaction)
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        req: pb::GetBalanceTransactionRequest,
    ) -> Result<pb::CustomerBalanceTransaction, ApiError> {
        let customer = customer("customer", Some(&req.customer))?;
        if !IdPrefix::BalanceTransaction.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        balance::find(self.state.db.pool(), ctx.scope(), &customer, &req.id)
            .await?
            .ok_or_else(|| not_found(&req.id))
    }

    async fn update(
        &self,
        ctx: &RequestContext,
        req: pb::UpdateBalanceTransactionRequest,
    ) -> Result<pb::CustomerBalanceTransaction, ApiError> {
        let customer = customer("customer", Some(&req.customer))?;
        if !IdPrefix::BalanceTransaction.matches(&req.id) {
            return Err(not_found(&req.id));
        }
        validate::max_len("description", req.description.as_deref(), MAX_DESCRIPTION)?;
        validate::metadata("metadata", &req.metadata)?;
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let pending = match idempotency::claim(&mut tx, state.db.backend(), ctx, UPDATE, &req).await? {
            Claim::Replay(stored) => return Ok(stored),
            Claim::Fresh(pending) => pending,
        };
        let mut doc = balance::find_for_update(&mut tx, state.db.backend(), ctx.scope(), &customer, &req.id)
            .await?
            .ok_or_else(|| not_found(&req.id))?;
        let before = doc.clone();
        if let Some(description) = &req.description {
            doc.description = non_empty(description);
        }
        merge_metadata("metadata", &mut doc.metadata, &req.metadata)?;
        if doc != before {
            balance::update_document(&mut tx, ctx.scope(), &doc).await?;
        }
        pending.record(&mut tx, &doc).await?;
        tx.commit().await?;
        Ok(doc)
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: pb::ListBalanceTransactionsRequest,
    ) -> Result<pb::ListBalanceTransactionsResponse, ApiError> {
        let customer = customer("customer", Some(&req.customer))?;
        let invoice = match req.invoice.as_deref() {
            None | Some("") => None,
            Some(i) if IdPrefix::Invoice.matches(i) => Some(i.to_owned()),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "invoice",
                    ErrorReason::ParameterInvalid,
                    "Invalid invoice: expected in_…",
                ));
            }
        };
        let page = PageRequest::parse(
            req.limit,
            req.starting_after.as_deref(),
            req.ending_before.as_deref(),
            IdPrefix::BalanceTransaction,
        )?;
        let filter = ListFilter { invoice, created: req.created };
        let page = balance::list(&self.state.db, ctx.scope(), &customer, &filter, &page).await?;
        Ok(pb::ListBalanceTransactionsResponse { data: page.data, has_more: page.has_more })
    }

    async fn get_balance(
        &self,
        ctx: &RequestContext,
        req: pb::GetCustomerBalanceRequest,
    ) -> Result<pb::CustomerBalance, ApiError> {
        let customer = customer("customer", Some(&req.customer))?;
        let requested = match req.currency.as_deref() {
            None | Some("") => None,
            Some(c) => Some(currency("currency", Some(c))?.as_str().to_owned()),
        };
        let ledgers = balance::ledgers(&self.state.db, ctx.scope(), &customer).await?;
        let (currency, balance) = match requested {
            Some(currency) => {
                let balance = ledgers.iter().find(|(c, _)| *c == currency).map_or(0, |(_, b)| *b);
                (Some(currency), balance)
            }
            None => match ledgers.as_slice() {
                [(currency, balance)] => (Some(currency.clone()), *balance),
                _ => (None, 0),
            },
        };
        Ok(pb::CustomerBalance {
            object: "customer_balance".to_owned(),
            customer,
            currency,
            balance,
            // Stripe's `invoice_credit_balance` has the opposite sign: positive is credit.
            invoice_credit_balance: ledgers.into_iter().map(|(c, b)| (c, -b)).collect(),
        })
    }
}

#[tonic::async_trait]
impl CustomerBalanceService for CustomerBalanceApi {
    async fn create_balance_transaction(
        &self,
        request: Request<pb::CreateBalanceTransactionRequest>,
    ) -> Result<Response<pb::CustomerBalanceTransaction>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.create(&ctx, request.into_inner()).await?))
    }

    async fn get_balance_transaction(
        &self,
        request: Request<pb::GetBalanceTransactionRequest>,
    ) -> Result<Response<pb::CustomerBalanceTransaction>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get(&ctx, request.into_inner()).await?))
    }

    async fn update_balance_transaction(
        &self,
        request: Request<pb::UpdateBalanceTransactionRequest>,
    ) -> Result<Response<pb::CustomerBalanceTransaction>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.update(&ctx, request.into_inner()).await?))
    }

    async fn list_balance_transactions(
        &self,
        request: Request<pb::ListBalanceTransactionsRequest>,
    ) -> Result<Response<pb::ListBalanceTransactionsResponse>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.list(&ctx, request.into_inner()).await?))
    }

    async fn get_customer_balance(
        &self,
        request: Request<pb::GetCustomerBalanceRequest>,
    ) -> Result<Response<pb::CustomerBalance>, Status> {
        let ctx = RequestContext::of(&request)?;
        Ok(Response::new(self.get_balance(&ctx, request.into_inner()).await?))
    }
}
