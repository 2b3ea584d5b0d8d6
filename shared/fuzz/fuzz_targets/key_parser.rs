#![no_main]
use cachefill_core::keys::{self, KeyKind, KeyLayout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(dataset) = keys::parse_relative_path(text) {
        assert_eq!(
            keys::relative_path(&dataset),
            text,
            "a parsed key rebuilds itself"
        );
    }
    // Events and chains: a parsed path rebuilds itself.
    match cachefill_core::reference::Reference::of(text) {
        Some(cachefill_core::reference::Reference::Events { set, ranges }) => {
            let rebuilt = if ranges {
                set.ranges_path()
            } else {
                set.relative_path()
            };
            assert_eq!(rebuilt, text, "an events path rebuilds itself");
        }
        Some(cachefill_core::reference::Reference::Chain(set)) => {
            assert_eq!(set.relative_path(), text, "a chain path rebuilds itself");
        }
        None => {}
    }
    for layout in [KeyLayout::new("", "v1"), KeyLayout::new("cache", "v1")] {
        if let Ok(KeyKind::Data(dataset)) = layout.classify(text) {
            assert_eq!(
                layout.data_key(&dataset),
                text,
                "a data key rebuilds itself"
            );
        }
        if let Ok(KeyKind::Sidecar(dataset)) = layout.classify(text) {
            assert_eq!(
                layout.sidecar_key(&dataset),
                text,
                "a sidecar key rebuilds itself"
            );
        }
    }
});
