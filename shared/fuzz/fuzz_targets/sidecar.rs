#![no_main]
// `codec::Sidecar::parse` on arbitrary bytes; a sidecar that parses writes JSON that parses
// back to the same sidecar and is written again byte for byte. Then the validator's
// judgement of the bytes as a sidecar (`rules::check_sidecar`, `rules::sidecar_standing`).
use cachefill_core::codec::{BatchFacts, Sidecar};
use cachefill_core::rules::{self, SidecarStanding};
use libfuzzer_sys::fuzz_target;

const SHA: &str = "d076f15b3151f5b0a8bfaa72bd318ce034453c4e161d5b493755539d6013e5fd";

fuzz_target!(|data: &[u8]| {
    let facts = BatchFacts {
        rows: 3,
        real_rows: 3,
        placeholders: 0,
        min: Some(1_731_681_000_000_000_000),
        max: Some(1_731_681_120_000_000_000),
    };
    let _ = rules::check_sidecar(data, &facts, SHA);
    let _ = rules::check_sidecar(data, &BatchFacts::default(), "");
    let _ = rules::sidecar_standing(data, Some((SHA, &facts)), &[SHA]);
    let _ = rules::sidecar_standing(data, None, &[]);
    let Ok(sidecar) = Sidecar::parse(data) else {
        assert!(matches!(
            rules::sidecar_standing(data, None, &[SHA]),
            SidecarStanding::Bad(_)
        ));
        return;
    };
    let json = sidecar.to_json();
    let again = Sidecar::parse(json.as_bytes()).expect("its own JSON parses");
    assert_eq!(again, sidecar, "sidecar round-trip: {json}");
    assert_eq!(again.to_json(), json, "written again byte for byte");
    assert!(sidecar.disagreements(&sidecar).is_empty());
    // A sidecar naming a validated version, with no parquet at the key, is an earlier one.
    if let Some(checksum) = sidecar.checksum.as_deref().filter(|c| !c.is_empty()) {
        assert_eq!(
            rules::sidecar_standing(data, None, &[checksum]),
            SidecarStanding::Earlier
        );
    }
});
