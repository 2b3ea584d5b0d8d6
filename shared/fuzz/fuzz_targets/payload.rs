#![no_main]
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{FillRequest, MissRequest};
use cachefill_core::keys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(dataset) = Dataset::from_json(text) {
        let again = Dataset::from_json(&dataset.to_json()).expect("its own payload parses");
        assert_eq!(again, dataset, "payload round-trip");
        let path = keys::relative_path(&dataset);
        let from_key = keys::parse_relative_path(&path).expect("its own key parses");
        assert_eq!(from_key, dataset, "key round-trip");
    }
    if let Ok(request) = FillRequest::from_json(text) {
        let again = FillRequest::from_json(&request.to_json()).expect("its own request parses");
        assert_eq!(again.to_json(), request.to_json(), "request round-trip");
    }
    // Events and chain requests too: their own JSON parses back, their path names them.
    if let Ok(request) = MissRequest::from_json(text) {
        let again = MissRequest::from_json(&request.to_json()).expect("its own request parses");
        assert_eq!(again, request, "miss request round-trip");
        let path = request.relative_path();
        if !matches!(request, MissRequest::Bars(_)) {
            assert!(
                cachefill_core::reference::Reference::of(&path).is_some(),
                "its own path is a reference object: {path}"
            );
        }
    }
});
