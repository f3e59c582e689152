#![no_main]
//! MRZ parsing: any text is a parsed MRZ or a typed error; a parsed one regenerates and checks.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(mrz) = marty_icao::mrz::parse(&text) {
        let _ = mrz.check_digits();
        let _ = mrz.validate();
        let _ = mrz.to_lines();
    }
});
