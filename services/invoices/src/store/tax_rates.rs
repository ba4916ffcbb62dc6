//! The `inline_tax_rates` table: the `txr_…` id of each distinct inline tax rate of an account.

use settle_platform::Scope;
use settle_platform::db::Tx;
use settle_platform::ids::IdPrefix;

use super::StoreError;

/// The id of the account's inline tax rate with this `fingerprint`, recorded now if it is new.
/// Concurrent first uses agree on one id: the second insert does nothing and reads the first's.
pub async fn id_for(tx: &mut Tx, scope: &Scope, fingerprint: &str) -> Result<String, StoreError> {
    sqlx::query(
        "INSERT INTO inline_tax_rates (account_id, livemode, fingerprint, id) VALUES ($1, $4, $2, $3) \
         ON CONFLICT (account_id, livemode, fingerprint) DO NOTHING",
    )
    .bind(scope.account())
    .bind(fingerprint)
    .bind(IdPrefix::TaxRate.generate())
    .bind(scope.livemode())
    .execute(&mut **tx)
    .await?;
    Ok(sqlx::query_scalar(
        "SELECT id FROM inline_tax_rates WHERE account_id = $1 AND livemode = $3 AND fingerprint = $2",
    )
    .bind(scope.account())
    .bind(fingerprint)
    .bind(scope.livemode())
    .fetch_one(&mut **tx)
    .await?)
}
