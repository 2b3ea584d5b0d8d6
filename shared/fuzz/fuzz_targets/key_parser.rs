#![no_main]
use cachefill_core::keys::{self, KeyKind, KeyLayout};
use cachefill_core::others::OtherKind;
use cachefill_core::reference::ChainSet;
use cachefill_core::reference::events::EventSet;
use cachefill_core::trades::TradeDay;
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
        Some(cachefill_core::reference::Reference::TradeDay(day)) => {
            assert_eq!(
                day.relative_path(),
                text,
                "a trade-day path rebuilds itself"
            );
            assert_eq!(OtherKind::of(text), Some(OtherKind::AggTrades));
        }
        None => {}
    }
    // Binance trade days on their own, and every other object lumibot keeps.
    if let Some(day) = TradeDay::parse_relative(text) {
        assert_eq!(day.relative_path(), text, "a trade day rebuilds itself");
    }
    if let Some((set, ranges)) = EventSet::parse_relative(text) {
        let rebuilt = if ranges {
            set.ranges_path()
        } else {
            set.relative_path()
        };
        assert_eq!(rebuilt, text, "an event set rebuilds itself");
    }
    if let Some(set) = ChainSet::parse_relative(text) {
        assert_eq!(set.relative_path(), text, "a chain set rebuilds itself");
    }
    let _ = OtherKind::of(text);
    for layout in [KeyLayout::new("", "v1"), KeyLayout::new("cache", "v1")] {
        // Under a layout, an object lumibot keeps is classified as the relative path says.
        if let Ok(KeyKind::Other(kind)) = layout.classify(text) {
            let relative = layout
                .relative_of(text)
                .expect("an Other key is under the layout");
            assert_eq!(OtherKind::of(relative), Some(kind), "{text}");
        }
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
