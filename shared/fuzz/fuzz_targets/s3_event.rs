#![no_main]
// The object-validator's `records_of` lives in the Lambda crate (AWS SDK), not in core;
// this target covers core's event-key decoding and sequencer ordering.
use std::cmp::Ordering;

use cachefill_core::validate::event::{compare_sequencers, decode_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = decode_key(text);
    let (a, b) = text.split_at(
        text.char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i),
    );
    let ab = compare_sequencers(a, b);
    let ba = compare_sequencers(b, a);
    assert_eq!(ab, ba.reverse(), "sequencer order is antisymmetric");
    assert_eq!(compare_sequencers(a, a), Ordering::Equal);
});
