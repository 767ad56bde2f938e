//! The size limit on request messages, checked on the gRPC framing itself:
//! each message's 5-byte prefix declares its length, and a declared length
//! over the limit fails the request body with `RESOURCE_EXHAUSTED` before
//! any of the message is buffered.
//!
//! tonic's own limit (`max_decoding_message_size`, which the services set
//! to the same value) refuses the same messages, but as `OUT_OF_RANGE`,
//! which tells a client its argument was out of a valid range rather than
//! too large to accept. tonic decodes a body's error that is a `Status` as
//! that status, so the code chosen here is the one the client gets, for
//! unary calls and streams alike.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::{Status, body::Body};

/// A tower layer refusing request messages over `max` bytes.
#[derive(Clone, Copy, Debug)]
pub struct MessageSizeLayer {
    max: usize,
}

impl MessageSizeLayer {
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> tower::Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSize {
            inner,
            max: self.max,
        }
    }
}

/// The service [`MessageSizeLayer`] makes.
#[derive(Clone, Debug)]
pub struct MessageSize<S> {
    inner: S,
    max: usize,
}

impl<S> tower::Service<http::Request<Body>> for MessageSize<S>
where
    S: tower::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let max = self.max;
        self.inner.call(request.map(|body| {
            Body::new(Limited {
                inner: body,
                max,
                frames: Frames::default(),
                failed: false,
            })
        }))
    }
}

/// Where the body is in the gRPC framing: a message is a compression flag,
/// a big-endian `u32` length and that many bytes.
#[derive(Debug, Default)]
struct Frames {
    prefix: [u8; 5],
    /// Bytes of `prefix` read so far.
    have: usize,
    /// Bytes of the current message still to come.
    rest: usize,
}

impl Frames {
    /// Follows `chunk`; the length of the first message over `max`, if any.
    fn follow(&mut self, mut chunk: &[u8], max: usize) -> Result<(), usize> {
        while !chunk.is_empty() {
            if self.rest > 0 {
                let skipped = self.rest.min(chunk.len());
                self.rest -= skipped;
                chunk = &chunk[skipped..];
                continue;
            }
            let taken = (self.prefix.len() - self.have).min(chunk.len());
            self.prefix[self.have..self.have + taken].copy_from_slice(&chunk[..taken]);
            self.have += taken;
            chunk = &chunk[taken..];
            if self.have == self.prefix.len() {
                let [_, a, b, c, d] = self.prefix;
                let len = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
                if len > max {
                    return Err(len);
                }
                (self.have, self.rest) = (0, len);
            }
        }
        Ok(())
    }
}

/// A request body that fails at the first message over `max` bytes.
struct Limited {
    inner: Body,
    max: usize,
    frames: Frames,
    /// Set once the body has failed: it ends there.
    failed: bool,
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let max = self.max;
        if let Some(data) = frame.data_ref()
            && let Err(len) = self.frames.follow(data, max)
        {
            self.failed = true;
            metrics::counter!("oversize_messages_total").increment(1);
            return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                "a request message of {len} bytes is over this server's limit of {max} bytes"
            )))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;

    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&u32::try_from(len).expect("small").to_be_bytes());
        bytes.resize(5 + len, 7);
        bytes
    }

    #[test]
    fn messages_up_to_the_limit_pass_in_any_chunking() {
        let mut stream = message(10);
        stream.extend(message(0));
        stream.extend(message(3));
        for chunk in 1..=stream.len() {
            let mut frames = Frames::default();
            for piece in stream.chunks(chunk) {
                assert_eq!(frames.follow(piece, 10), Ok(()), "chunks of {chunk}");
            }
            assert_eq!((frames.have, frames.rest), (0, 0));
        }
    }

    #[test]
    fn the_first_message_over_the_limit_is_named_whatever_the_chunking() {
        let mut stream = message(4);
        stream.extend(message(11));
        for chunk in 1..=stream.len() {
            let mut frames = Frames::default();
            let failed = stream
                .chunks(chunk)
                .map(|piece| frames.follow(piece, 10))
                .find(Result::is_err);
            assert_eq!(failed, Some(Err(11)), "chunks of {chunk}");
        }
        // A length prefix of u32::MAX, as a hostile client sends it.
        let mut frames = Frames::default();
        assert_eq!(
            frames.follow(&[0, 255, 255, 255, 255], 4 << 20),
            Err(u32::MAX as usize)
        );
    }

    #[tokio::test]
    async fn the_body_fails_resource_exhausted_and_then_ends() {
        let mut stream = message(2);
        stream.extend(message(20));
        let mut body = Limited {
            inner: Body::new(once::Once(Some(Bytes::from(stream)))),
            max: 10,
            frames: Frames::default(),
            failed: false,
        };
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let code = first.and_then(Result::err).map(|status| status.code());
        assert_eq!(code, Some(tonic::Code::ResourceExhausted));
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(next.is_none());
        assert!(body.is_end_stream());
    }

    /// A body of one data frame, without another crate for it.
    mod once {
        use super::*;

        pub(super) struct Once(pub(super) Option<Bytes>);

        impl http_body::Body for Once {
            type Data = Bytes;
            type Error = Status;

            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
                Poll::Ready(self.0.take().map(|data| Ok(Frame::data(data))))
            }
        }
    }
}
