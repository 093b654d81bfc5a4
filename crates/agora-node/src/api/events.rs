//! `GET /api/v1/events`: a server-sent event per finalized block (header, receipts and ledger
//! events), in height order with no gaps. `?from=H` replays from height H first, so a client
//! that reconnects misses nothing.

use super::error::ApiResult;
use super::{ApiState, chain_of};
use agora_chain::ChainHandle;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Query of the event stream.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// First height to send (default: the next block).
    pub from: Option<u64>,
}

struct Cursor {
    chain: ChainHandle,
    live: tokio::sync::broadcast::Receiver<Arc<agora_chain::BlockRecord>>,
    next: u64,
}

async fn next_event(mut c: Cursor) -> Option<(Result<Event, Infallible>, Cursor)> {
    loop {
        // Serve from the index while behind the finalized tip.
        if c.next <= c.chain.snapshot().height {
            let record = c.chain.block(c.next).await.ok()??;
            c.next += 1;
            let event = Event::default().event("block").id(record.block.header.height.to_string());
            let event = event.json_data(&record).ok()?;
            return Some((Ok(event), c));
        }
        match c.live.recv().await {
            // Live records catch the cursor up through the index path above, in order.
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
    let next = q.from.unwrap_or(chain.snapshot().height + 1).max(1);
    let stream = futures::stream::unfold(Cursor { chain, live, next }, next_event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}
