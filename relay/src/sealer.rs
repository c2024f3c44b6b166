//! The audit sealer runs beside the relay: every few seconds it signs a checkpoint over
//! the event and audit-entry ranges that can no longer change (see
//! `medflow_infra::audit::checkpoint`). Several relays may run it; an advisory lock
//! lets one seal each range.

use deadpool_postgres::Pool;
use medflow_infra::audit::checkpoint::Sealer;
use medflow_infra::audit::signing::CheckpointSigner;
use medflow_infra::config::AuditSealSettings;
use tokio_util::sync::CancellationToken;

/// Seals until `shutdown` is cancelled. Without a signing key it logs a warning and
/// returns: the trail stays hash-chained but unsigned.
pub async fn run(settings: AuditSealSettings, pool: Pool, shutdown: CancellationToken) {
    let Some(key) = settings.signing_key else {
        tracing::warn!("MEDFLOW_AUDIT_SIGNING_KEY is not set; audit checkpoints are not sealed");
        return;
    };
    let signer = match CheckpointSigner::from_base64_seed(&key) {
        Ok(signer) => signer,
        Err(reason) => {
            tracing::error!(
                reason,
                "MEDFLOW_AUDIT_SIGNING_KEY is invalid; audit checkpoints are not sealed"
            );
            return;
        }
    };
    tracing::info!(key_id = signer.key_id(), "audit sealer started");
    let mut sealer = Sealer::new(signer);
    let mut ticks = tokio::time::interval(settings.seal_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let outcome = async {
            let mut client = pool.get().await?;
            sealer.tick(&mut client).await
        }
        .await;
        if let Err(error) = outcome {
            tracing::warn!(
                error = format!("{error:#}"),
                "sealing audit checkpoints failed; retrying"
            );
        }
    }
}
