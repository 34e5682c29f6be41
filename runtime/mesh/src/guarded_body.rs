//! A response body that holds the request's resources until it is complete, and fails when
//! the route deadline passes mid-body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::transport::{BoxError, MeshBody};

/// Why a body stopped early.
#[derive(Debug, thiserror::Error)]
#[error(
    "upstream request timeout: the route deadline passed while the response body was streaming"
)]
pub struct BodyDeadlineExceeded;

pub struct GuardedBody {
    inner: MeshBody,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Circuit-breaker permits and active-request counts, released when the body ends.
    guards: Vec<Box<dyn Send>>,
}

impl GuardedBody {
    pub fn new(inner: MeshBody, deadline: Option<Instant>, guards: Vec<Box<dyn Send>>) -> Self {
        Self {
            inner,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            guards,
        }
    }

    fn release(&mut self) {
        self.guards.clear();
        self.deadline = None;
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(context);
        match polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                this.release();
                polled
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(context).is_ready()
                {
                    this.release();
                    return Poll::Ready(Some(Err(Box::new(BodyDeadlineExceeded))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
