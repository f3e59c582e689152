#![no_main]
//! Master list parsing over arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ml) = marty_icao::masterlist::MasterList::parse(data) {
        let _ = ml.distinct_keys();
        let _ = ml.countries();
    }
});
