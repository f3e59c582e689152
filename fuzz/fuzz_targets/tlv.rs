#![no_main]
//! The BER/DER reader: walk every element of arbitrary bytes.
use libfuzzer_sys::fuzz_target;
use marty_icao::der;

fn walk(t: &der::Tlv<'_>, depth: usize) {
    let _ = t.octets();
    let _ = t.oid();
    let _ = t.time();
    let _ = t.text();
    let _ = t.integer_i64();
    if t.tag.constructed && depth < 100 {
        let mut r = t.children();
        while let Ok(Some(c)) = r.next() {
            walk(&c, depth + 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = der::parse_prefix(data) {
        walk(&t, 0);
    }
    let _ = marty_icao::lds::describe(data);
});
