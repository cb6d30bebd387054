//! What the browser sends on one stream (request body or WebSocket fragments), handed from the
//! bridge task to the stream's exchange task. Its size is bounded by credit: the bridge pushes
//! only what `flow::Streams` admitted, and credit goes back only for what the exchange took
//! (`take_consumed`). Adjacent body bytes are merged, so tiny frames cost no extra memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, mpsc};

use super::frame::{MAX_DATA, StreamId, WsClose, WsMessage};

#[derive(Debug)]
pub enum Item {
    Data(Bytes),
    Ws(WsMessage),
    /// The browser's `End` (HTTP) or `WsClose` (WebSocket): nothing follows.
    End(Option<WsClose>),
}

enum Queued {
    Data(BytesMut),
    Ws(WsMessage),
    End(Option<WsClose>),
}

#[derive(Default)]
struct State {
    items: VecDeque<Queued>,
    /// The exchange no longer reads: pushes are refused (the bridge discards and credits).
    gone: bool,
    /// Flow cost taken by the exchange and not yet returned as credit.
    consumed: u32,
}

pub struct Inbox {
    stream: StreamId,
    state: Mutex<State>,
    notify: Notify,
    /// Tells the bridge that `consumed` went from 0 to more: at most one pending per stream.
    credit: mpsc::UnboundedSender<StreamId>,
}

impl Inbox {
    pub fn new(stream: StreamId, credit: mpsc::UnboundedSender<StreamId>) -> Arc<Self> {
        Arc::new(Self {
            stream,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            credit,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an item for the exchange; false if it is gone (the caller discards the item and
    /// counts it consumed).
    pub fn push(&self, item: Item) -> bool {
        let mut state = self.lock();
        if state.gone {
            return false;
        }
        match (item, state.items.back_mut()) {
            (Item::Data(b), Some(Queued::Data(last))) if last.len() + b.len() <= MAX_DATA * 4 => {
                last.extend_from_slice(&b)
            }
            (Item::Data(b), _) => state.items.push_back(Queued::Data(BytesMut::from(&b[..]))),
            (Item::Ws(m), _) => state.items.push_back(Queued::Ws(m)),
            (Item::End(c), _) => state.items.push_back(Queued::End(c)),
        }
        drop(state);
        self.notify.notify_one();
        true
    }

    /// The next item; counts its cost consumed (the caller hands it on at once).
    pub async fn next(&self) -> Item {
        loop {
            {
                let mut state = self.lock();
                if let Some(q) = state.items.pop_front() {
                    let (item, cost) = match q {
                        Queued::Data(b) => {
                            let n = b.len();
                            (Item::Data(b.freeze()), n)
                        }
                        Queued::Ws(m) => {
                            let n = 1 + m.payload().len();
                            (Item::Ws(m), n)
                        }
                        Queued::End(c) => (Item::End(c), 0),
                    };
                    self.add_consumed(&mut state, cost);
                    return item;
                }
            }
            self.notify.notified().await;
        }
    }

    fn add_consumed(&self, state: &mut State, cost: usize) {
        if cost == 0 {
            return;
        }
        let before = state.consumed;
        state.consumed += u32::try_from(cost).expect("bounded by the window");
        if before == 0 {
            let _ = self.credit.send(self.stream);
        }
    }

    /// Credit owed to the browser for what the exchange took.
    pub fn take_consumed(&self) -> u32 {
        std::mem::take(&mut self.lock().consumed)
    }

    /// The exchange stops reading: what is queued counts as consumed (the browser may still
    /// be sending within its credit, and must get credit back to reach its `End`).
    pub fn close(&self) {
        let mut state = self.lock();
        state.gone = true;
        let cost: usize = state
            .items
            .drain(..)
            .map(|q| match q {
                Queued::Data(b) => b.len(),
                Queued::Ws(m) => 1 + m.payload().len(),
                Queued::End(_) => 0,
            })
            .sum();
        self.add_consumed(&mut state, cost);
    }
}

/// Closes the inbox when the exchange's reader is dropped, however it ends.
pub struct Reader(pub Arc<Inbox>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::frame::WsKind;

    fn sid(n: u32) -> StreamId {
        StreamId::new(n).unwrap()
    }

    #[tokio::test]
    async fn small_pieces_merge_and_credit_is_owed_for_what_was_taken() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let inbox = Inbox::new(sid(3), tx);
        for _ in 0..1000 {
            assert!(inbox.push(Item::Data(Bytes::from_static(b"x"))));
        }
        inbox.push(Item::End(None));
        assert!(rx.try_recv().is_err(), "nothing taken, nothing owed");
        let Item::Data(first) = inbox.next().await else {
            panic!("data first")
        };
        assert_eq!(first.len(), 1000, "1000 one-byte frames are one piece");
        assert_eq!(rx.try_recv().unwrap(), sid(3), "one wake-up");
        assert!(matches!(inbox.next().await, Item::End(None)));
        assert_eq!(inbox.take_consumed(), 1000);
        assert_eq!(inbox.take_consumed(), 0);
    }

    #[tokio::test]
    async fn a_closed_inbox_refuses_pushes_and_returns_what_it_held() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let inbox = Inbox::new(sid(1), tx);
        let m = WsMessage::new(WsKind::Text, false, b"abc".to_vec()).unwrap();
        inbox.push(Item::Ws(m));
        inbox.push(Item::Data(Bytes::from_static(b"12345")));
        drop(Reader(inbox.clone()));
        assert_eq!(rx.try_recv().unwrap(), sid(1));
        assert_eq!(inbox.take_consumed(), 4 + 5, "kind byte counts");
        assert!(!inbox.push(Item::Data(Bytes::from_static(b"late"))));
    }

    #[tokio::test]
    async fn next_waits_for_a_push() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let inbox = Inbox::new(sid(2), tx);
        let reader = inbox.clone();
        let waiting = tokio::spawn(async move { reader.next().await });
        tokio::task::yield_now().await;
        inbox.push(Item::Data(Bytes::from_static(b"hi")));
        let Item::Data(b) = waiting.await.unwrap() else {
            panic!("data")
        };
        assert_eq!(&b[..], b"hi");
    }
}
