//! Country codes: the issuing State as written in the MRZ (Doc 9303 Part 3 §5, ISO 3166-1
//! alpha-3 plus ICAO's own codes) and the alpha-2 `countryName` of the CSCA that vouches for
//! it (Part 12 §7.1.1.1.1).
//!
//! Passive Authentication checks that the two correspond (Part 11 §5.1.1): otherwise any CSCA
//! a verifier trusts — every one of a master list — could vouch for another State's passports.

/// ISO 3166-1: alpha-3 → alpha-2, for every officially assigned code (from the iso-codes
/// data set).
const ISO_3166: &[(&str, &str)] = &[
    ("ABW", "AW"),
    ("AFG", "AF"),
    ("AGO", "AO"),
    ("AIA", "AI"),
    ("ALA", "AX"),
    ("ALB", "AL"),
    ("AND", "AD"),
    ("ARE", "AE"),
    ("ARG", "AR"),
    ("ARM", "AM"),
    ("ASM", "AS"),
    ("ATA", "AQ"),
    ("ATF", "TF"),
    ("ATG", "AG"),
    ("AUS", "AU"),
    ("AUT", "AT"),
    ("AZE", "AZ"),
    ("BDI", "BI"),
    ("BEL", "BE"),
    ("BEN", "BJ"),
    ("BES", "BQ"),
    ("BFA", "BF"),
    ("BGD", "BD"),
    ("BGR", "BG"),
    ("BHR", "BH"),
    ("BHS", "BS"),
    ("BIH", "BA"),
    ("BLM", "BL"),
    ("BLR", "BY"),
    ("BLZ", "BZ"),
    ("BMU", "BM"),
    ("BOL", "BO"),
    ("BRA", "BR"),
    ("BRB", "BB"),
    ("BRN", "BN"),
    ("BTN", "BT"),
    ("BVT", "BV"),
    ("BWA", "BW"),
    ("CAF", "CF"),
    ("CAN", "CA"),
    ("CCK", "CC"),
    ("CHE", "CH"),
    ("CHL", "CL"),
    ("CHN", "CN"),
    ("CIV", "CI"),
    ("CMR", "CM"),
    ("COD", "CD"),
    ("COG", "CG"),
    ("COK", "CK"),
    ("COL", "CO"),
    ("COM", "KM"),
    ("CPV", "CV"),
    ("CRI", "CR"),
    ("CUB", "CU"),
    ("CUW", "CW"),
    ("CXR", "CX"),
    ("CYM", "KY"),
    ("CYP", "CY"),
    ("CZE", "CZ"),
    ("DEU", "DE"),
    ("DJI", "DJ"),
    ("DMA", "DM"),
    ("DNK", "DK"),
    ("DOM", "DO"),
    ("DZA", "DZ"),
    ("ECU", "EC"),
    ("EGY", "EG"),
    ("ERI", "ER"),
    ("ESH", "EH"),
    ("ESP", "ES"),
    ("EST", "EE"),
    ("ETH", "ET"),
    ("FIN", "FI"),
    ("FJI", "FJ"),
    ("FLK", "FK"),
    ("FRA", "FR"),
    ("FRO", "FO"),
    ("FSM", "FM"),
    ("GAB", "GA"),
    ("GBR", "GB"),
    ("GEO", "GE"),
    ("GGY", "GG"),
    ("GHA", "GH"),
    ("GIB", "GI"),
    ("GIN", "GN"),
    ("GLP", "GP"),
    ("GMB", "GM"),
    ("GNB", "GW"),
    ("GNQ", "GQ"),
    ("GRC", "GR"),
    ("GRD", "GD"),
    ("GRL", "GL"),
    ("GTM", "GT"),
    ("GUF", "GF"),
    ("GUM", "GU"),
    ("GUY", "GY"),
    ("HKG", "HK"),
    ("HMD", "HM"),
    ("HND", "HN"),
    ("HRV", "HR"),
    ("HTI", "HT"),
    ("HUN", "HU"),
    ("IDN", "ID"),
    ("IMN", "IM"),
    ("IND", "IN"),
    ("IOT", "IO"),
    ("IRL", "IE"),
    ("IRN", "IR"),
    ("IRQ", "IQ"),
    ("ISL", "IS"),
    ("ISR", "IL"),
    ("ITA", "IT"),
    ("JAM", "JM"),
    ("JEY", "JE"),
    ("JOR", "JO"),
    ("JPN", "JP"),
    ("KAZ", "KZ"),
    ("KEN", "KE"),
    ("KGZ", "KG"),
    ("KHM", "KH"),
    ("KIR", "KI"),
    ("KNA", "KN"),
    ("KOR", "KR"),
    ("KWT", "KW"),
    ("LAO", "LA"),
    ("LBN", "LB"),
    ("LBR", "LR"),
    ("LBY", "LY"),
    ("LCA", "LC"),
    ("LIE", "LI"),
    ("LKA", "LK"),
    ("LSO", "LS"),
    ("LTU", "LT"),
    ("LUX", "LU"),
    ("LVA", "LV"),
    ("MAC", "MO"),
    ("MAF", "MF"),
    ("MAR", "MA"),
    ("MCO", "MC"),
    ("MDA", "MD"),
    ("MDG", "MG"),
    ("MDV", "MV"),
    ("MEX", "MX"),
    ("MHL", "MH"),
    ("MKD", "MK"),
    ("MLI", "ML"),
    ("MLT", "MT"),
    ("MMR", "MM"),
    ("MNE", "ME"),
    ("MNG", "MN"),
    ("MNP", "MP"),
    ("MOZ", "MZ"),
    ("MRT", "MR"),
    ("MSR", "MS"),
    ("MTQ", "MQ"),
    ("MUS", "MU"),
    ("MWI", "MW"),
    ("MYS", "MY"),
    ("MYT", "YT"),
    ("NAM", "NA"),
    ("NCL", "NC"),
    ("NER", "NE"),
    ("NFK", "NF"),
    ("NGA", "NG"),
    ("NIC", "NI"),
    ("NIU", "NU"),
    ("NLD", "NL"),
    ("NOR", "NO"),
    ("NPL", "NP"),
    ("NRU", "NR"),
    ("NZL", "NZ"),
    ("OMN", "OM"),
    ("PAK", "PK"),
    ("PAN", "PA"),
    ("PCN", "PN"),
    ("PER", "PE"),
    ("PHL", "PH"),
    ("PLW", "PW"),
    ("PNG", "PG"),
    ("POL", "PL"),
    ("PRI", "PR"),
    ("PRK", "KP"),
    ("PRT", "PT"),
    ("PRY", "PY"),
    ("PSE", "PS"),
    ("PYF", "PF"),
    ("QAT", "QA"),
    ("REU", "RE"),
    ("ROU", "RO"),
    ("RUS", "RU"),
    ("RWA", "RW"),
    ("SAU", "SA"),
    ("SDN", "SD"),
    ("SEN", "SN"),
    ("SGP", "SG"),
    ("SGS", "GS"),
    ("SHN", "SH"),
    ("SJM", "SJ"),
    ("SLB", "SB"),
    ("SLE", "SL"),
    ("SLV", "SV"),
    ("SMR", "SM"),
    ("SOM", "SO"),
    ("SPM", "PM"),
    ("SRB", "RS"),
    ("SSD", "SS"),
    ("STP", "ST"),
    ("SUR", "SR"),
    ("SVK", "SK"),
    ("SVN", "SI"),
    ("SWE", "SE"),
    ("SWZ", "SZ"),
    ("SXM", "SX"),
    ("SYC", "SC"),
    ("SYR", "SY"),
    ("TCA", "TC"),
    ("TCD", "TD"),
    ("TGO", "TG"),
    ("THA", "TH"),
    ("TJK", "TJ"),
    ("TKL", "TK"),
    ("TKM", "TM"),
    ("TLS", "TL"),
    ("TON", "TO"),
    ("TTO", "TT"),
    ("TUN", "TN"),
    ("TUR", "TR"),
    ("TUV", "TV"),
    ("TWN", "TW"),
    ("TZA", "TZ"),
    ("UGA", "UG"),
    ("UKR", "UA"),
    ("UMI", "UM"),
    ("URY", "UY"),
    ("USA", "US"),
    ("UZB", "UZ"),
    ("VAT", "VA"),
    ("VCT", "VC"),
    ("VEN", "VE"),
    ("VGB", "VG"),
    ("VIR", "VI"),
    ("VNM", "VN"),
    ("VUT", "VU"),
    ("WLF", "WF"),
    ("WSM", "WS"),
    ("YEM", "YE"),
    ("ZAF", "ZA"),
    ("ZMB", "ZM"),
    ("ZWE", "ZW"),
];

/// Codes of Doc 9303 Part 3 §5 that are not ISO 3166-1 alpha-3 codes, with the alpha-2 code
/// their CSCA's `countryName` carries.
const ICAO_SPECIAL: &[(&str, &[&str])] = &[
    // Germany writes D, not DEU, in the MRZ.
    ("D", &["DE"]),
    // British categories: citizens, dependent territories, overseas citizens, subjects and
    // protected persons are all documents of the United Kingdom's CSCA.
    ("GBD", &["GB"]),
    ("GBN", &["GB"]),
    ("GBO", &["GB"]),
    ("GBP", &["GB"]),
    ("GBS", &["GB"]),
    // Kosovo: ICAO's RKS; certificates carry XK (user-assigned) or the older KS.
    ("RKS", &["XK", "KS"]),
    // The European Union's laissez-passer.
    ("EUE", &["EU"]),
    // The United Nations and its agencies.
    ("UNO", &["UN"]),
    ("UNA", &["UN"]),
    ("UNK", &["UN"]),
    // Specimens and ICAO itself.
    ("UTO", &["UT"]),
    ("IAO", &["IA"]),
    // Deprecated, still found in old documents.
    ("ANT", &["AN"]),
    ("NTZ", &["NT"]),
];

/// What is known about an MRZ issuing-State code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MrzCountry {
    /// The alpha-2 codes a CSCA of this State carries as countryName.
    Alpha2(&'static [&'static str]),
    /// A code Doc 9303 defines without a State (organisations such as XOM, stateless XXA,
    /// refugees XXB/XXC, unspecified XXX) or one Marty does not know.
    Unknown,
}

/// Whether `code` has the shape of an ISO 3166-1 alpha-2 code: two upper-case ASCII letters
/// (the form every country field of Marty's APIs, rows and file names takes).
pub fn is_alpha2(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// The alpha-2 codes corresponding to an issuing State as written in the MRZ (`<` filler
/// and case ignored: `D<<` is `D`).
pub fn from_mrz(code: &str) -> MrzCountry {
    let code = code.trim_end_matches('<').to_ascii_uppercase();
    if let Some((_, alpha2)) = ICAO_SPECIAL.iter().find(|(c, _)| *c == code) {
        return MrzCountry::Alpha2(alpha2);
    }
    match ISO_3166.binary_search_by(|(a3, _)| (*a3).cmp(code.as_str())) {
        Ok(i) => MrzCountry::Alpha2(std::slice::from_ref(&ISO_3166[i].1)),
        Err(_) => MrzCountry::Unknown,
    }
}

/// The code an issuer of `alpha2` writes in the MRZ (and in certificates' SAN, Part 12
/// §7.1.1.2): `D` for Germany, the ISO 3166 alpha-3 code otherwise (`UTO` for the specimen
/// State Utopia, `RKS` for Kosovo).
pub fn mrz_code_for(alpha2: &str) -> Option<&'static str> {
    if alpha2 == "DE" {
        return Some("D");
    }
    ISO_3166
        .iter()
        .find(|(_, a2)| *a2 == alpha2)
        .map(|(a3, _)| *a3)
        .or_else(|| {
            ICAO_SPECIAL
                .iter()
                .find(|(code, a2)| code.len() == 3 && a2.first() == Some(&alpha2))
                .map(|(code, _)| *code)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(ISO_3166.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(ISO_3166.len(), 249);
    }

    #[test]
    fn alpha2_maps_back_to_the_mrz_code() {
        assert_eq!(mrz_code_for("DE"), Some("D"));
        assert_eq!(mrz_code_for("GB"), Some("GBR"));
        assert_eq!(mrz_code_for("NL"), Some("NLD"));
        assert_eq!(mrz_code_for("UT"), Some("UTO"));
        assert_eq!(mrz_code_for("XK"), Some("RKS"));
        assert_eq!(mrz_code_for("QQ"), None);
        for (a3, a2) in ISO_3166 {
            match from_mrz(mrz_code_for(a2).unwrap()) {
                MrzCountry::Alpha2(codes) => assert_eq!(codes, [*a2], "{a3}"),
                MrzCountry::Unknown => panic!("{a3}"),
            }
        }
    }

    #[test]
    fn codes_map_to_alpha2() {
        assert_eq!(from_mrz("D<<"), MrzCountry::Alpha2(&["DE"]));
        assert_eq!(from_mrz("NLD"), MrzCountry::Alpha2(&["NL"]));
        assert_eq!(from_mrz("fra"), MrzCountry::Alpha2(&["FR"]));
        assert_eq!(from_mrz("GBN"), MrzCountry::Alpha2(&["GB"]));
        assert_eq!(from_mrz("GBR"), MrzCountry::Alpha2(&["GB"]));
        assert_eq!(from_mrz("UTO"), MrzCountry::Alpha2(&["UT"]));
        assert_eq!(from_mrz("HKG"), MrzCountry::Alpha2(&["HK"]));
        assert_eq!(from_mrz("XXA"), MrzCountry::Unknown);
        assert_eq!(from_mrz("XOM"), MrzCountry::Unknown);
        assert_eq!(from_mrz(""), MrzCountry::Unknown);
    }
}
