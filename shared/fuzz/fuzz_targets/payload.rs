#![no_main]
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::FillRequest;
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
});
