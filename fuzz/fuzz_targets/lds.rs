#![no_main]
//! LDS files: identification, EF.COM, DG1 and DG2 (ISO/IEC 19794-5 and 39794-5).
use libfuzzer_sys::fuzz_target;
use marty_icao::lds;

fuzz_target!(|data: &[u8]| {
    let _ = lds::identify(data);
    let _ = lds::EfCom::parse(data);
    let _ = lds::parse_dg1(data);
    let _ = lds::parse_dg2(data);
    let _ = lds::parse_iso19794_5(data);
});
