//! The MLLP frame reader: bytes in, whole messages out, whatever the read boundaries.
//!
//! Bytes outside a frame (a framing error) are skipped up to the next start byte and counted. A
//! message longer than the limit is not buffered whole: its first bytes are kept (for the
//! quarantine) and the rest is counted and skipped up to its end marker, so one huge message
//! cannot exhaust memory.

pub const START: u8 = 0x0B;
pub const END: u8 = 0x1C;
pub const CR: u8 = 0x0D;

/// How much of an oversized message is kept for review.
pub const KEPT_PREFIX: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message, without its framing bytes.
    Message(Vec<u8>),
    /// A message over the limit: its first bytes and its full size.
    TooLarge { prefix: Vec<u8>, size: usize },
}

#[derive(Debug)]
enum State {
    /// Outside a frame: waiting for a start byte.
    Idle,
    /// Inside a frame, buffering.
    InFrame,
    /// Inside an oversized frame: keeping nothing more, counting.
    Skipping { size: usize },
}

#[derive(Debug)]
pub struct FrameReader {
    max: usize,
    buf: Vec<u8>,
    state: State,
    /// Bytes seen outside any frame since the reader was made.
    pub stray_bytes: usize,
    /// The last byte seen was END inside a frame: the next decides if the frame ends.
    pending_end: bool,
}

impl FrameReader {
    pub fn new(max_message_bytes: usize) -> FrameReader {
        FrameReader {
            max: max_message_bytes,
            buf: Vec::new(),
            state: State::Idle,
            stray_bytes: 0,
            pending_end: false,
        }
    }

    /// True when a frame has started and not ended: a disconnect now loses a partial message.
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Feeds bytes; returns the frames they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.pending_end {
                self.pending_end = false;
                if b == CR {
                    self.finish(&mut out);
                    continue;
                }
                // An END not followed by CR is data.
                self.take(END);
            }
            match self.state {
                State::Idle => {
                    if b == START {
                        self.state = State::InFrame;
                        self.buf.clear();
                    } else if !b.is_ascii_whitespace() {
                        self.stray_bytes += 1;
                    }
                }
                State::InFrame | State::Skipping { .. } => {
                    if b == END {
                        self.pending_end = true;
                    } else if b == START {
                        // A new start inside a frame: the sender gave up on the old one.
                        self.stray_bytes += self.len();
                        self.buf.clear();
                        self.state = State::InFrame;
                    } else {
                        self.take(b);
                    }
                }
            }
        }
        out
    }

    fn len(&self) -> usize {
        match self.state {
            State::Skipping { size } => size,
            _ => self.buf.len(),
        }
    }

    fn take(&mut self, b: u8) {
        match &mut self.state {
            State::InFrame => {
                self.buf.push(b);
                if self.buf.len() > self.max {
                    let size = self.buf.len();
                    self.buf.truncate(KEPT_PREFIX.min(self.max));
                    self.state = State::Skipping { size };
                }
            }
            State::Skipping { size } => *size += 1,
            State::Idle => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<Frame>) {
        let frame = match self.state {
            State::Skipping { size } => Frame::TooLarge {
                prefix: std::mem::take(&mut self.buf),
                size,
            },
            _ => Frame::Message(std::mem::take(&mut self.buf)),
        };
        self.state = State::Idle;
        out.push(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(m: &str) -> Vec<u8> {
        crate::frame(m)
    }

    #[test]
    fn messages_are_found_whatever_the_read_boundaries() {
        let mut wire = framed("MSH|one");
        wire.extend(framed("MSH|two"));
        for split in 0..wire.len() {
            let mut r = FrameReader::new(1000);
            let mut got = r.push(&wire[..split]);
            got.extend(r.push(&wire[split..]));
            assert_eq!(
                got,
                vec![
                    Frame::Message(b"MSH|one".to_vec()),
                    Frame::Message(b"MSH|two".to_vec())
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn stray_bytes_are_skipped_and_counted() {
        let mut r = FrameReader::new(1000);
        let mut wire = b"garbage".to_vec();
        wire.extend(framed("MSH|ok"));
        assert_eq!(r.push(&wire), vec![Frame::Message(b"MSH|ok".to_vec())]);
        assert_eq!(r.stray_bytes, 7);
    }

    #[test]
    fn an_oversized_message_keeps_its_beginning_and_the_stream_goes_on() {
        let mut r = FrameReader::new(10);
        let mut wire = framed("MSH|0123456789abcdef");
        wire.extend(framed("MSH|ok"));
        let got = r.push(&wire);
        assert_eq!(
            got[0],
            Frame::TooLarge {
                prefix: b"MSH|012345".to_vec(),
                size: 20
            }
        );
        assert_eq!(got[1], Frame::Message(b"MSH|ok".to_vec()));
    }

    #[test]
    fn a_half_message_is_not_a_message() {
        let mut r = FrameReader::new(1000);
        assert!(r.push(&[START, b'M', b'S', b'H']).is_empty());
        assert!(r.in_frame());
    }
}
