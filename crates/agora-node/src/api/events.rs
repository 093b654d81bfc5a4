//! `GET /api/v1/events`: a server-sent event per finalized block (header, receipts and ledger
//! events), in height order with no gaps. `?from=H` replays from height H first, so a client
//! that reconnects misses nothing. Replays read from the block index (never the executor), and
//! at most `[api.limits] max_replays` run at once.

use super::error::{ApiError, ApiResult};
use super::{ApiState, chain_of};
use agora_chain::{ChainHandle, Published};
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Longest a replaying stream holds one of the node's replay slots.
const REPLAY_SLOT: Duration = Duration::from_secs(60);

/// Query of the event stream.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// First height to send (default: the next block).
    pub from: Option<u64>,
}

struct Cursor {
    chain: ChainHandle,
    live: tokio::sync::broadcast::Receiver<Arc<Published>>,
    next: u64,
    /// Holds the replay slot until dropped (once the stream is live, or with the stream).
    replay: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Cursor {
    /// The SSE event of the block at `self.next`, which has the given JSON; advances.
    fn emit(mut self, json: &str) -> Option<(Result<Event, Infallible>, Cursor)> {
        let event = Event::default().event("block").id(self.next.to_string()).data(json);
        self.next += 1;
        Some((Ok(event), self))
    }
}

async fn next_event(mut c: Cursor) -> Option<(Result<Event, Infallible>, Cursor)> {
    loop {
        if c.next <= c.chain.snapshot().height {
            // Records already broadcast carry their JSON; use one if it is the next block.
            while let Ok(p) = c.live.try_recv() {
                if p.record.block.header.height == c.next {
                    return c.emit(&p.json);
                }
            }
            // Otherwise (catching up, or lagged) read it from the index.
            let json = c.chain.block_json(c.next).await.ok()??;
            return c.emit(&json);
        }
        c.replay = None;
        match c.live.recv().await {
            Ok(p) if p.record.block.header.height == c.next => return c.emit(&p.json),
            // Older records were sent already; newer ones are read from the index, in order.
            Ok(_) | Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    }
}

/// `GET /api/v1/events`
pub async fn events(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let chain = chain_of(&s)?.clone();
    let live = chain.subscribe();
    let tip = chain.snapshot().height;
    let next = q.from.unwrap_or(tip + 1).max(1);
    // A replay reads history from the index; only so many run at once. The slot is held until
    // the stream has caught up or is dropped, and for at most REPLAY_SLOT, so clients that stop
    // reading cannot keep every slot.
    let replay = if next <= tip {
        let permit = s.limiter.replays.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable(
                "too many event streams are replaying history on this node; retry shortly, or follow from a recent height",
            )
        })?;
        let (done, ended) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REPLAY_SLOT, ended).await;
            drop(permit);
        });
        Some(done)
    } else {
        None
    };
    let stream = futures::stream::unfold(Cursor { chain, live, next, replay }, next_event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}
