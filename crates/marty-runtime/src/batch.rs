//! A queue that workers drain in batches, so that concurrent callers share one transaction
//! and one commit: a caller pushes a job with a reply channel and waits; a worker takes
//! whatever is queued (up to a limit), does the database work of all of it at once, and
//! answers each. Alone, a job is a batch of one and waits for nobody.

use tokio::sync::{Mutex, mpsc};

use crate::Shutdown;

#[derive(Debug)]
pub struct BatchQueue<J> {
    sender: mpsc::Sender<J>,
    receiver: Mutex<mpsc::Receiver<J>>,
}

impl<J> BatchQueue<J> {
    /// A queue holding at most `capacity` jobs; callers beyond it wait (back-pressure).
    pub fn new(capacity: usize) -> Self {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        Self {
            sender,
            receiver: Mutex::new(receiver),
        }
    }

    /// Queues `job`; gives it back when the queue is closed.
    pub async fn push(&self, job: J) -> Result<(), J> {
        self.sender.send(job).await.map_err(|e| e.0)
    }

    /// The next batch: waits for a first job, then takes what else is queued, up to `max`.
    /// `None` once `stop` is triggered (jobs still queued are dropped, so their callers learn
    /// it from their closed reply channels).
    pub async fn next_batch(&self, stop: &Shutdown, max: usize) -> Option<Vec<J>> {
        let mut receiver = self.receiver.lock().await;
        let first = tokio::select! {
            _ = stop.wait() => return None,
            job = receiver.recv() => job?,
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_what_is_queued_up_to_the_limit_then_stops() {
        let q = BatchQueue::new(16);
        for i in 0..5 {
            q.push(i).await.unwrap();
        }
        let stop = Shutdown::new();
        assert_eq!(q.next_batch(&stop, 3).await, Some(vec![0, 1, 2]));
        assert_eq!(q.next_batch(&stop, 3).await, Some(vec![3, 4]));
        stop.trigger();
        assert_eq!(q.next_batch(&stop, 3).await, None);
    }
}
