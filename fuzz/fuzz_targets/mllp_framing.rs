//! MLLP bytes in arbitrary read chunks: the frame reader must not panic, and must give the same
//! frames whatever the chunk boundaries, none longer than its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scr_mllp::{Frame, FrameReader};

fuzz_target!(|input: (u16, Vec<u16>, Vec<u8>)| {
    let (max, cuts, bytes) = input;
    let max = usize::from(max);

    let mut whole = FrameReader::new(max);
    let expected = whole.push(&bytes);

    let mut chunked = FrameReader::new(max);
    let mut got = Vec::new();
    let mut rest: &[u8] = &bytes;
    for cut in cuts {
        let at = usize::from(cut).min(rest.len());
        let (chunk, tail) = rest.split_at(at);
        got.extend(chunked.push(chunk));
        rest = tail;
    }
    got.extend(chunked.push(rest));

    assert_eq!(expected, got, "frames depend on read boundaries");
    assert_eq!(whole.stray_bytes, chunked.stray_bytes);
    assert_eq!(whole.in_frame(), chunked.in_frame());
    for frame in &expected {
        match frame {
            Frame::Message(m) => assert!(m.len() <= max, "a message over the limit"),
            Frame::TooLarge { size, .. } => assert!(*size > max, "a small message refused"),
        }
    }
});
