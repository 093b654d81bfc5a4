//! `GET /api/v1/events`: a server-sent event per finalized block (header, receipts and ledger
//! events), in height order with no gaps. `?from=H` replays from height H first, so a client
//! that reconnects misses nothing.

use super::error::ApiResult;
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
    let next = q.from.unwrap_or(chain.snapshot().height + 1).max(1);
    let stream = futures::stream::unfold(Cursor { chain, live, next }, next_event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}
