//! The snapshot actor: takes snapshots on a timer and on the operator's
//! button, through the same path.
//!
//! A snapshot asks the router for a cut (the image of every command applied
//! so far, with its log position), then encodes and writes it on a blocking
//! thread — never on an actor thread — and finally prunes old snapshots and
//! the log segments no snapshot needs (the log is kept back to the
//! second-newest snapshot, so a corrupt newest one is recoverable). One
//! snapshot runs at a time: the actor waits for each before taking the next
//! message.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, ResponseActFuture,
    WrapFuture,
};
use tokio::sync::oneshot;

use super::router::{Checkpoint, Router};
use crate::error::{Error, Result};
use crate::persist::snapshot::{self, SnapshotInfo};
use crate::persist::{schema, wal::Wal};

pub struct Snapshotter {
    router: Addr<Router>,
    wal: Arc<Wal>,
    dir: PathBuf,
    retain: usize,
    interval: Option<Duration>,
    /// The last snapshot this process wrote: a request for a cut at the
    /// same log position (nothing written since, e.g. the timer or the
    /// shutdown right after an operator's snapshot) reuses it.
    last: Option<SnapshotInfo>,
}

impl Snapshotter {
    pub fn new(
        router: Addr<Router>,
        wal: Arc<Wal>,
        dir: PathBuf,
        retain: usize,
        interval_secs: u64,
    ) -> Self {
        Snapshotter {
            router,
            wal,
            dir,
            retain: retain.max(1),
            interval: (interval_secs > 0).then(|| Duration::from_secs(interval_secs)),
            last: None,
        }
    }
}

impl Actor for Snapshotter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(every) = self.interval {
            ctx.run_interval(every, |_, ctx| {
                // The timer presses the same button as the operator.
                ctx.address().do_send(TakeSnapshot { reply: None });
            });
        }
    }
}

/// Take a snapshot now; the reply comes once the file is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeSnapshot {
    pub reply: Option<oneshot::Sender<Result<SnapshotInfo>>>,
}

impl Handler<TakeSnapshot> for Snapshotter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: TakeSnapshot, _: &mut Context<Self>) -> Self::Result {
        let router = self.router.clone();
        let (wal, dir, retain) = (self.wal.clone(), self.dir.clone(), self.retain);
        let last = self.last.clone();
        let work = async move {
            let (tx, rx) = oneshot::channel();
            router.do_send(Checkpoint { reply: tx });
            let cut = rx
                .await
                .map_err(|_| Error::Internal("router stopped".into()))?;
            let (position, image) = cut.await?;
            if let Some(last) = last.filter(|l| l.log_position == position && l.path.exists()) {
                return Ok(last);
            }
            tokio::task::spawn_blocking(move || write(&dir, &wal, retain, position, &image))
                .await
                .map_err(|e| Error::Internal(format!("snapshot task: {e}")))?
        };
        Box::pin(work.into_actor(self).map(move |result: Result<SnapshotInfo>, act, _| {
            match &result {
                Ok(info) => {
                    tracing::info!(id = %info.id, bytes = info.bytes, log_position = info.log_position, "snapshot durable");
                    act.last = Some(info.clone());
                }
                Err(e) => tracing::error!(error = ?e, "snapshot failed"),
            }
            if let Some(reply) = msg.reply {
                let _ = reply.send(result);
            }
        }))
    }
}

/// Encodes, writes and publishes a snapshot, then prunes.
fn write(
    dir: &std::path::Path,
    wal: &Wal,
    retain: usize,
    position: u64,
    image: &super::state::Image,
) -> Result<SnapshotInfo> {
    let unavailable = |e: crate::persist::Error| Error::Unavailable(format!("snapshot: {e}"));
    let payload = schema::encode_image(image).map_err(unavailable)?;
    let info = snapshot::write(
        dir,
        position,
        crate::time::now_millis(),
        schema::SNAPSHOT_VERSION,
        &payload,
    )
    .map_err(unavailable)?;
    // Pruning is housekeeping: a failure leaves extra files, never less data.
    match snapshot::prune(dir, retain) {
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning old snapshots failed"),
    }
    match snapshot::list(dir) {
        Ok(kept) => {
            if let Err(e) = wal.truncate_before(snapshot::wal_keep_from(&kept)) {
                tracing::warn!(error = %e, "dropping old log segments failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing snapshots failed"),
    }
    Ok(info)
}
