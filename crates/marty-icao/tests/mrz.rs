//! MRZ tests against the Doc 9303 / BSI specimens, exact error texts, name handling, and
//! property tests for the round trip and for panics.

use marty_icao::mrz::{
    self, CheckDigit, EmptyCheckDigit, Mrz, MrzBuilder, MrzError, MrzFormat, Sex, UmlautStyle,
    check_digit, name_field, parse, transliterate,
};
use proptest::prelude::*;

const SPECIMENS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/mrz/specimens.txt"
);

const TD3: &str =
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10";
const TD2: &str = "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\nD231458907UTO7408122F1204159<<<<<<<6";
const TD1: &str = "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<";
const BSI: &str =
    "P<D<<MUSTERMANN<<ERIKA<<<<<<<<<<<<<<<<<<<<<<\nC11T002JM4D<<9608122F2310314<<<<<<<<<<<<<<<4";

/// The Doc 9303 Part 5 example of a 12-character document number.
const TD1_OVERFLOW: &str = "I<UTOD23145890<7349<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<";
const TD2_OVERFLOW: &str =
    "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\nD23145890<UTO7408122F12041597349<<<2";

fn specimens() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(SPECIMENS).expect("read specimens.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (source, mrz) = l.rsplit_once('|').expect("source|MRZ");
            (source.to_owned(), mrz.to_owned())
        })
        .collect()
}

fn parsed(text: &str) -> Mrz {
    match parse(text) {
        Ok(m) => m,
        Err(e) => panic!("{text:?} does not parse: {e}"),
    }
}

fn parse_error(text: &str) -> String {
    match parse(text) {
        Ok(m) => panic!("{text:?} parsed as {m:?}"),
        Err(e) => e.to_string(),
    }
}

fn validate_error(text: &str) -> String {
    match parsed(text).validate() {
        Ok(()) => panic!("{text:?} validated"),
        Err(e) => e.to_string(),
    }
}

/// `text` with the character at 1-based (line, position) replaced.
fn with_char(text: &str, line: usize, position: usize, c: char) -> String {
    let mut lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
    lines[line - 1][position - 1] = c;
    lines
        .into_iter()
        .map(String::from_iter)
        .collect::<Vec<_>>()
        .join("\n")
}

fn build(b: &MrzBuilder) -> Mrz {
    match b.build() {
        Ok(m) => m,
        Err(e) => panic!("{b:?} does not build: {e}"),
    }
}

fn build_error(b: &MrzBuilder) -> String {
    match b.build() {
        Ok(m) => panic!("{b:?} built {m:?}"),
        Err(e) => e.to_string(),
    }
}

fn utopia(format: MrzFormat, document_number: &str) -> MrzBuilder {
    MrzBuilder {
        format,
        document_code: if format == MrzFormat::Td3 { "P" } else { "I" }.to_owned(),
        issuing_state: "UTO".to_owned(),
        document_number: document_number.to_owned(),
        primary_identifier: "Eriksson".to_owned(),
        secondary_identifier: "Anna Maria".to_owned(),
        nationality: "UTO".to_owned(),
        date_of_birth: "740812".to_owned(),
        sex: Sex::Female,
        date_of_expiry: "120415".to_owned(),
        optional_data: String::new(),
        umlauts: UmlautStyle::Expanded,
    }
}

fn field(s: &str, width: usize) -> String {
    match name_field(s, "", width, UmlautStyle::Expanded) {
        Ok(f) => f,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

fn name(primary: &str, secondary: &str, width: usize) -> String {
    match name_field(primary, secondary, width, UmlautStyle::Expanded) {
        Ok(f) => f,
        Err(e) => panic!("{primary:?} {secondary:?}: {e}"),
    }
}

fn translit(s: &str, style: UmlautStyle) -> String {
    match transliterate(s, style) {
        Ok(t) => t,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Specimens

#[test]
fn every_specimen_parses_validates_and_round_trips() {
    let specimens = specimens();
    assert_eq!(
        specimens.len(),
        7,
        "specimens.txt changed; review this test"
    );
    for (source, text) in specimens {
        let m = match parse(&text) {
            Ok(m) => m,
            Err(e) => panic!("{source}: {e}"),
        };
        if let Err(e) = m.validate() {
            panic!("{source}: {e}");
        }
        assert!(m.check_digits().iter().all(|cd| cd.valid), "{source}");
        assert_eq!(m.to_lines().concat(), text, "{source}");
        assert_eq!(m.lines.concat(), text, "{source}");
        assert_eq!(m.dg1_bytes(), text.as_bytes(), "{source}");
        // The same document given as lines, with CRLF and surrounding whitespace.
        let as_lines = format!("  \r\n{}\r\n", m.lines.join("\r\n"));
        assert_eq!(parsed(&as_lines), m, "{source}");
        assert_eq!(parsed(&m.to_string()), m, "{source}");
    }
}

#[test]
fn td3_specimen_fields() {
    let m = parsed(TD3);
    assert_eq!(m.format, MrzFormat::Td3);
    assert_eq!(m.document_code, "P");
    assert_eq!(m.issuing_state, "UTO");
    assert_eq!(m.primary_identifier, "ERIKSSON");
    assert_eq!(m.secondary_identifier, "ANNA MARIA");
    assert_eq!(m.document_number, "L898902C3");
    assert_eq!(m.nationality, "UTO");
    assert_eq!(m.date_of_birth, "740812");
    assert_eq!(m.sex, Sex::Female);
    assert_eq!(m.date_of_expiry, "120415");
    assert_eq!(m.optional_data, "ZE184226B");
    assert_eq!(m.lines, TD3.lines().collect::<Vec<_>>());
    assert_eq!(m.to_string(), TD3);

    let digits: Vec<_> = m
        .check_digits()
        .into_iter()
        .map(|cd| (cd.field, cd.line, cd.position, cd.found, cd.valid))
        .collect();
    assert_eq!(
        digits,
        [
            ("document number", 2, 10, '6', true),
            ("date of birth", 2, 20, '2', true),
            ("date of expiry", 2, 28, '9', true),
            ("optional data", 2, 43, '1', true),
            ("composite", 2, 44, '0', true),
        ]
    );
}

#[test]
fn td1_specimen_fields() {
    let m = parsed(TD1);
    assert_eq!(m.format, MrzFormat::Td1);
    assert_eq!(m.document_code, "I");
    assert_eq!(m.issuing_state, "UTO");
    assert_eq!(m.document_number, "D23145890");
    assert_eq!(m.date_of_birth, "740812");
    assert_eq!(m.sex, Sex::Female);
    assert_eq!(m.date_of_expiry, "120415");
    assert_eq!(m.nationality, "UTO");
    assert_eq!(m.optional_data, "");
    assert_eq!(m.primary_identifier, "ERIKSSON");
    assert_eq!(m.secondary_identifier, "ANNA MARIA");
    let positions: Vec<_> = m
        .check_digits()
        .iter()
        .map(|cd| (cd.field, cd.line, cd.position, cd.expected))
        .collect();
    assert_eq!(
        positions,
        [
            ("document number", 1, 15, '7'),
            ("date of birth", 2, 7, '2'),
            ("date of expiry", 2, 15, '9'),
            ("composite", 2, 30, '6'),
        ]
    );
}

#[test]
fn td2_specimen_fields() {
    let m = parsed(TD2);
    assert_eq!(m.format, MrzFormat::Td2);
    assert_eq!(m.document_code, "I");
    assert_eq!(m.issuing_state, "UTO");
    assert_eq!(m.primary_identifier, "ERIKSSON");
    assert_eq!(m.secondary_identifier, "ANNA MARIA");
    assert_eq!(m.document_number, "D23145890");
    assert_eq!(m.nationality, "UTO");
    assert_eq!(m.date_of_birth, "740812");
    assert_eq!(m.sex, Sex::Female);
    assert_eq!(m.date_of_expiry, "120415");
    assert_eq!(m.optional_data, "");
    assert_eq!(m.check_digits().len(), 4);
}

#[test]
fn single_letter_issuer_is_stored_without_filler() {
    let m = parsed(BSI);
    assert_eq!(m.issuing_state, "D");
    assert_eq!(m.nationality, "D");
    assert_eq!(m.document_number, "C11T002JM");
    assert_eq!(m.primary_identifier, "MUSTERMANN");
    assert_eq!(m.secondary_identifier, "ERIKA");
    assert_eq!(m.optional_data, "");
    assert_eq!(m.empty_optional_check, EmptyCheckDigit::Filler);
    assert_eq!(
        m.to_lines()[1],
        "C11T002JM4D<<9608122F2310314<<<<<<<<<<<<<<<4"
    );
}

#[test]
fn empty_td3_optional_data_accepts_zero_or_filler_as_check_digit() {
    let zero = with_char(BSI, 2, 43, '0');
    let m = parsed(&zero);
    assert_eq!(m.empty_optional_check, EmptyCheckDigit::Zero);
    assert_eq!(m.validate(), Ok(()));
    assert_eq!(m.to_lines().join("\n"), zero);
    let filler = parsed(BSI).check_digits()[3];
    assert_eq!(
        filler,
        CheckDigit {
            field: "optional data",
            line: 2,
            position: 43,
            expected: '<',
            found: '<',
            valid: true,
        }
    );
    // Anything else over empty data is wrong; '<' is only valid there when the data is empty.
    assert_eq!(
        validate_error(&with_char(BSI, 2, 43, '1')),
        "line 2, field \"optional data\", check digit at position 43: expected '0', found '1'"
    );
    assert_eq!(
        validate_error(&with_char(TD3, 2, 43, '<')),
        "line 2, field \"optional data\", check digit at position 43: expected '1', found '<'"
    );
}

#[test]
fn builder_reproduces_the_specimens() {
    let mut td3 = utopia(MrzFormat::Td3, "L898902C3");
    td3.optional_data = "ZE184226B".to_owned();
    assert_eq!(build(&td3).to_string(), TD3);
    assert_eq!(build(&utopia(MrzFormat::Td2, "D23145890")).to_string(), TD2);
    assert_eq!(build(&utopia(MrzFormat::Td1, "D23145890")).to_string(), TD1);

    let bsi = MrzBuilder {
        format: MrzFormat::Td3,
        document_code: "P<".to_owned(),
        issuing_state: "D".to_owned(),
        document_number: "C11T002JM".to_owned(),
        primary_identifier: "Mustermann".to_owned(),
        secondary_identifier: "Erika".to_owned(),
        nationality: "D<<".to_owned(),
        date_of_birth: "960812".to_owned(),
        sex: Sex::Female,
        date_of_expiry: "231031".to_owned(),
        optional_data: String::new(),
        umlauts: UmlautStyle::Expanded,
    };
    let m = build(&bsi);
    assert_eq!(m.to_string(), BSI);
    assert_eq!(m.document_code, "P");
    assert_eq!(m.issuing_state, "D");
}

#[test]
fn builder_transliterates_names_and_computes_digits() {
    let mut b = utopia(MrzFormat::Td3, "X1234567");
    b.primary_identifier = "Müller-Lüdenscheidt".to_owned();
    b.secondary_identifier = "Jürgen".to_owned();
    b.sex = Sex::Unspecified;
    b.date_of_birth = "74<<<<".to_owned();
    let m = build(&b);
    assert_eq!(m.lines[0], "P<UTOMUELLER<LUEDENSCHEIDT<<JUERGEN<<<<<<<<<");
    assert_eq!(m.primary_identifier, "MUELLER LUEDENSCHEIDT");
    assert_eq!(m.secondary_identifier, "JUERGEN");
    assert_eq!(m.date_of_birth, "74<<<<");
    assert_eq!(m.sex, Sex::Unspecified);
    assert_eq!(m.validate(), Ok(()));
    assert_eq!(&m.lines[1][20..21], "<");

    b.umlauts = UmlautStyle::Base;
    assert_eq!(
        build(&b).lines[0],
        "P<UTOMULLER<LUDENSCHEIDT<<JURGEN<<<<<<<<<<<<"
    );
}

// ---------------------------------------------------------------------------------------------
// Long document numbers

#[test]
fn td1_overflow_layout() {
    let m = build(&utopia(MrzFormat::Td1, "D23145890734"));
    assert_eq!(m.lines[0], "I<UTOD23145890<7349<<<<<<<<<<<");
    assert_eq!(m.to_string(), TD1_OVERFLOW);
    assert_eq!(m.document_number, "D23145890734");
    assert_eq!(m.optional_data, "");
    assert_eq!(m.validate(), Ok(()));
    let number = m.check_digits()[0];
    assert_eq!(
        (number.field, number.line, number.position, number.found),
        ("document number", 1, 19, '9')
    );
    assert!(
        m.check_digits()[3].valid,
        "composite over the printed fields"
    );

    let back = parsed(TD1_OVERFLOW);
    assert_eq!(back, m);
    assert_eq!(back.to_lines(), back.lines);
    assert_eq!(check_digit("D23145890734"), Ok('9'));
}

#[test]
fn td1_overflow_with_optional_data_on_both_lines() {
    let mut b = utopia(MrzFormat::Td1, "D23145890734");
    b.optional_data = "ABCDEFGHIJKLMN".to_owned();
    let m = build(&b);
    // 10 characters remain on line 1 after "7349<"; the rest goes to line 2.
    assert_eq!(m.lines[0], "I<UTOD23145890<7349<ABCDEFGHIJ");
    assert_eq!(m.lines[1], "7408122F1204159UTOKLMN<<<<<<<9");
    assert_eq!(m.optional_data, "ABCDEFGHIJKLMN");
    assert_eq!(m.validate(), Ok(()));
    assert_eq!(parsed(&m.to_string()), m);
}

#[test]
fn td1_overflow_filling_the_field_leaves_no_filler() {
    let m = build(&utopia(MrzFormat::Td1, "12345678901234567890123"));
    assert_eq!(&m.lines[0][5..], "123456789<012345678901238");
    assert_eq!(m.lines[0].len(), 30);
    assert_eq!(m.document_number, "12345678901234567890123");
    assert_eq!(m.validate(), Ok(()));
}

#[test]
fn td2_overflow_layout() {
    let m = build(&utopia(MrzFormat::Td2, "D23145890734"));
    assert_eq!(m.to_string(), TD2_OVERFLOW);
    assert_eq!(m.document_number, "D23145890734");
    assert_eq!(m.validate(), Ok(()));
    let back = parsed(TD2_OVERFLOW);
    assert_eq!(back, m);
    assert_eq!(back.to_lines(), back.lines);
    let digits = back.check_digits();
    assert_eq!((digits[0].line, digits[0].position), (2, 32));
    assert_eq!((digits[3].field, digits[3].position), ("composite", 36));
    assert!(digits.iter().all(|cd| cd.valid));
}

#[test]
fn overflow_check_digit_errors_point_into_the_optional_field() {
    assert_eq!(
        validate_error(&with_char(TD1_OVERFLOW, 1, 19, '8')),
        "line 1, field \"document number\", check digit at position 19: expected '9', found '8'"
    );
    assert_eq!(
        validate_error(&with_char(TD2_OVERFLOW, 2, 32, '0')),
        "line 2, field \"document number\", check digit at position 32: expected '9', found '0'"
    );
}

#[test]
fn filler_check_digit_without_overflow_is_reported_not_guessed() {
    // The number field is not full, so '<' cannot mark an overflow: it is a wrong digit.
    let text = "I<UTOD2314589<<ABC<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<";
    let m = parsed(text);
    assert_eq!(m.document_number, "D2314589");
    assert_eq!(m.optional_data, "ABC");
    assert_eq!(
        m.validate().map_err(|e| e.to_string()),
        Err(
            "line 1, field \"document number\", check digit at position 15: expected '7', found '<'"
                .to_owned()
        )
    );
}

#[test]
fn td3_numbers_cannot_overflow() {
    assert_eq!(
        build_error(&utopia(MrzFormat::Td3, "L898902C31")),
        "field \"document number\": expected 1 to 9 letters or digits (TD3 has no overflow rule for longer numbers), found \"L898902C31\""
    );
    assert_eq!(
        build_error(&utopia(MrzFormat::Td2, "1234567890123456")),
        "field \"document number\": expected 1 to 15 letters or digits (9 in the number field, the rest in the optional data), found \"1234567890123456\""
    );
}

#[test]
fn optional_data_must_fit_beside_the_overflow() {
    let mut b = utopia(MrzFormat::Td2, "D23145890734");
    b.optional_data = "AB".to_owned();
    let m = build(&b);
    assert_eq!(&m.lines[1][28..35], "7349<AB");
    assert_eq!(m.optional_data, "AB");
    b.optional_data = "ABC".to_owned();
    assert_eq!(
        build_error(&b),
        "field \"optional data\": expected at most 2 characters of A-Z, 0-9 and '<' (the document number overflow takes 5), found \"ABC\""
    );
}

// ---------------------------------------------------------------------------------------------
// Check-digit errors

#[test]
fn td3_check_digit_errors_name_line_field_position_and_digits() {
    let cases = [
        // Document number L898902C3 → L898902C4.
        (
            with_char(TD3, 2, 9, '4'),
            "line 2, field \"document number\", check digit at position 10: expected '7', found '6'",
        ),
        // Date of birth 740812 → 740813.
        (
            with_char(TD3, 2, 19, '3'),
            "line 2, field \"date of birth\", check digit at position 20: expected '3', found '2'",
        ),
        // Date of expiry 120415 → 120416.
        (
            with_char(TD3, 2, 27, '6'),
            "line 2, field \"date of expiry\", check digit at position 28: expected '0', found '9'",
        ),
        // Personal number ZE184226B → ZE184226C.
        (
            with_char(TD3, 2, 37, 'C'),
            "line 2, field \"optional data\", check digit at position 43: expected '2', found '1'",
        ),
        // The composite digit itself.
        (
            with_char(TD3, 2, 44, '1'),
            "line 2, field \"composite\", check digit at position 44: expected '0', found '1'",
        ),
        // A field's own digit changed: the composite catches the changed digit too, but the
        // field's digit comes first.
        (
            with_char(TD3, 2, 20, '5'),
            "line 2, field \"date of birth\", check digit at position 20: expected '2', found '5'",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(validate_error(&text), message, "{text}");
    }
}

#[test]
fn composite_catches_a_field_changed_with_its_digit() {
    // Expiry 120415/9 → 120416/0: the field's digit is right, only the composite is wrong.
    let text = with_char(&with_char(TD3, 2, 27, '6'), 2, 28, '0');
    assert_eq!(
        validate_error(&text),
        "line 2, field \"composite\", check digit at position 44: expected '4', found '0'"
    );
}

#[test]
fn names_nationality_and_sex_are_not_covered_by_check_digits() {
    let text = with_char(&with_char(TD3, 1, 6, 'A'), 2, 21, 'M');
    assert_eq!(parsed(&text).validate(), Ok(()));
}

#[test]
fn td1_and_td2_check_digit_errors() {
    let cases = [
        (
            with_char(TD1, 1, 15, '1'),
            "line 1, field \"document number\", check digit at position 15: expected '7', found '1'",
        ),
        (
            with_char(TD1, 2, 1, '8'),
            "line 2, field \"date of birth\", check digit at position 7: expected '9', found '2'",
        ),
        (
            with_char(TD1, 2, 14, '6'),
            "line 2, field \"date of expiry\", check digit at position 15: expected '0', found '9'",
        ),
        (
            with_char(TD1, 1, 16, 'X'),
            "line 2, field \"composite\", check digit at position 30: expected '5', found '6'",
        ),
        (
            with_char(TD2, 2, 1, 'E'),
            "line 2, field \"document number\", check digit at position 10: expected '4', found '7'",
        ),
        (
            with_char(TD2, 2, 36, '<'),
            "line 2, field \"composite\", check digit at position 36: expected '6', found '<'",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(validate_error(&text), message, "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Parse errors

#[test]
fn layout_errors() {
    assert_eq!(parse_error(""), "empty MRZ");
    assert_eq!(parse_error(" \n\r\n "), "empty MRZ");
    assert_eq!(
        parse_error(&TD3.replace('\n', "")[1..]),
        "expected 90 (TD1), 72 (TD2) or 88 (TD3) characters without line separators, found 87"
    );
    assert_eq!(
        parse_error(&TD3[..TD3.len() - 1]),
        "line 2: expected 44 characters (TD3), found 43"
    );
    assert_eq!(
        parse_error(&format!("{TD1}<")),
        "line 3: expected 30 characters (TD1), found 31"
    );
    assert_eq!(
        parse_error("ABC\nDEF"),
        "expected 2 lines of 44 (TD3) or 36 (TD2) characters, or 3 lines of 30 (TD1); found 2 lines of 3 and 3 characters"
    );
    assert_eq!(
        parse_error(&format!("{TD1}\n{}", "<".repeat(30))),
        "expected 2 lines (TD2, TD3) or 3 lines (TD1), or the lines concatenated without separators; found 4 lines"
    );
}

#[test]
fn concatenated_input_is_split_by_length() {
    for text in [TD1, TD2, TD3] {
        let m = parsed(&text.replace('\n', ""));
        assert_eq!(m.lines.join("\n"), text);
    }
}

#[test]
fn lower_case_is_rejected_with_a_reason() {
    assert_eq!(
        parse_error(&TD3.to_lowercase()),
        "line 1, position 1: lower-case letter 'p'; the MRZ is upper case only (A-Z, 0-9 and '<')"
    );
    assert_eq!(
        parse_error(&with_char(TD1, 3, 5, 'k')),
        "line 3, position 5: lower-case letter 'k'; the MRZ is upper case only (A-Z, 0-9 and '<')"
    );
}

#[test]
fn characters_outside_the_set_are_rejected() {
    assert_eq!(
        parse_error(&with_char(TD3, 1, 10, 'É')),
        "line 1, position 10: character 'É' is not in the MRZ character set (A-Z, 0-9 and '<')"
    );
    assert_eq!(
        parse_error(&with_char(TD2, 2, 5, ' ')),
        "line 2, position 5: character ' ' is not in the MRZ character set (A-Z, 0-9 and '<')"
    );
}

#[test]
fn field_errors_name_line_field_positions_and_content() {
    let cases = [
        (
            with_char(TD3, 2, 16, 'O'),
            "line 2, field \"date of birth\" (positions 14-19): expected 6 digits or '<', found \"74O812\"",
        ),
        (
            with_char(TD3, 2, 21, 'X'),
            "line 2, field \"sex\" (position 21): expected 'F', 'M' or '<', found \"X\"",
        ),
        (
            with_char(TD3, 2, 22, '<'),
            "line 2, field \"date of expiry\" (positions 22-27): expected 6 digits, found \"<20415\"",
        ),
        (
            with_char(TD3, 1, 4, '1'),
            "line 1, field \"issuing state\" (positions 3-5): expected 1 to 3 letters padded with '<', found \"U1O\"",
        ),
        (
            with_char(TD3, 2, 11, '<'),
            "line 2, field \"nationality\" (positions 11-13): expected 1 to 3 letters padded with '<', found \"<TO\"",
        ),
        (
            with_char(TD3, 1, 1, 'V'),
            "line 1, field \"document code\" (positions 1-2): expected 'P' followed by a letter or '<', found \"V<\"",
        ),
        (
            with_char(TD3, 1, 8, '1'),
            "line 1, field \"name\" (positions 6-44): expected letters and '<', found \"ER1KSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\"",
        ),
        (
            with_char(TD1, 1, 1, 'P'),
            "line 1, field \"document code\" (positions 1-2): expected 'A', 'C' or 'I' followed by a letter or '<', found \"P<\"",
        ),
        (
            with_char(TD1, 2, 17, '9'),
            "line 2, field \"nationality\" (positions 16-18): expected 1 to 3 letters padded with '<', found \"U9O\"",
        ),
        (
            with_char(TD1, 3, 1, '0'),
            "line 3, field \"name\" (positions 1-30): expected letters and '<', found \"0RIKSSON<<ANNA<MARIA<<<<<<<<<<\"",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(parse_error(&text), message, "{text}");
    }
}

#[test]
fn first_bad_field_in_reading_order_is_reported() {
    // TD3 nationality (positions 11-13) comes before the date of birth.
    let text = with_char(&with_char(TD3, 2, 16, 'O'), 2, 12, '1');
    assert!(parse_error(&text).contains("\"nationality\""));
    // TD1 date of birth (line 2) comes before the nationality on the same line.
    let text = with_char(&with_char(TD1, 2, 17, '9'), 2, 2, 'X');
    assert!(parse_error(&text).contains("\"date of birth\""));
}

// ---------------------------------------------------------------------------------------------
// Names

#[test]
fn name_field_layout() {
    assert_eq!(
        name("Eriksson", "Anna Maria", 39),
        "ERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<"
    );
    assert_eq!(name("  Van der Berg ", "", 20), "VAN<DER<BERG<<<<<<<<");
    // Separator runs collapse: "<<" inside the primary identifier would end it early.
    assert_eq!(name("de - la Cruz", "Ana", 20), "DE<LA<CRUZ<<ANA<<<<<");
}

#[test]
fn long_primary_identifier_is_cut_first_but_keeps_the_secondary_initial() {
    let primary = "Wolfeschlegelsteinhausenbergerdorffwelchevoralternwaren";
    let f = name(primary, "Hubert Blaine", 39);
    assert_eq!(f, "WOLFESCHLEGELSTEINHAUSENBERGERDORFFW<<H");
    assert_eq!(f.len(), 39);
    assert_eq!(
        name(primary, "Hubert Blaine", 30),
        "WOLFESCHLEGELSTEINHAUSENBER<<H"
    );
    // A cut that lands on a separator moves back to the last letter, leaving room for more of
    // the secondary identifier.
    assert_eq!(
        name("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHI JKLMN", "Anna", 39),
        "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHI<<AN"
    );
    assert_eq!(
        name("ABCDEFGHIJ KLMNOPQRSTUVWXYZ ABCDEFGHIJ", "Anna", 39),
        "ABCDEFGHIJ<KLMNOPQRSTUVWXYZ<ABCDEFGH<<A"
    );
}

#[test]
fn secondary_identifier_is_cut_after_the_primary_fits() {
    let secondary = "Anna Maria Elisabeth Katharina";
    assert_eq!(
        name("Eriksson", secondary, 30),
        "ERIKSSON<<ANNA<MARIA<ELISABETH"
    );
    // Cut on a separator: back to the last letter, then padding.
    assert_eq!(
        name("Eriksson", secondary, 31),
        "ERIKSSON<<ANNA<MARIA<ELISABETH<"
    );
    assert_eq!(
        name("Eriksson", secondary, 33),
        "ERIKSSON<<ANNA<MARIA<ELISABETH<KA"
    );
}

#[test]
fn primary_only_name_is_cut_to_end_with_a_letter() {
    assert_eq!(field("Wolfeschlegel Steinhausen", 14), "WOLFESCHLEGEL<");
    assert_eq!(field("Wolfeschlegel Steinhausen", 15), "WOLFESCHLEGEL<S");
    assert_eq!(field("Wolfeschlegel Steinhausen", 13), "WOLFESCHLEGEL");
}

#[test]
fn transliteration_of_latin_letters() {
    use UmlautStyle::{Base, Expanded};
    let cases = [
        ("Müller", "MUELLER", "MULLER"),
        ("Ärzte", "AERZTE", "ARZTE"),
        ("Ångström", "AANGSTROEM", "ANGSTROM"),
        ("Núñez", "NUNEZ", "NUNEZ"),
        ("Øster", "OESTER", "OESTER"),
        ("Straße", "STRASSE", "STRASSE"),
        ("STRAẞE", "STRASSE", "STRASSE"),
        ("Þór", "THOR", "THOR"),
        ("Łukasz", "LUKASZ", "LUKASZ"),
        ("Æsir", "AESIR", "AESIR"),
        ("Œuvre", "OEUVRE", "OEUVRE"),
        ("Ĳsselmeer", "IJSSELMEER", "IJSSELMEER"),
        ("Đorđe Ðaði", "DORDE<DADI", "DORDE<DADI"),
        ("İstanbul ılık", "ISTANBUL<ILIK", "ISTANBUL<ILIK"),
        ("Ősz Űr", "OSZ<UR", "OSZ<UR"),
        (
            "Čapek Řehoř Šťastný Žižka",
            "CAPEK<REHOR<STASTNY<ZIZKA",
            "CAPEK<REHOR<STASTNY<ZIZKA",
        ),
        (
            "François Hélène Ÿves",
            "FRANCOIS<HELENE<YVES",
            "FRANCOIS<HELENE<YVES",
        ),
        ("D'Artagnan", "DARTAGNAN", "DARTAGNAN"),
        ("O’Brien", "OBRIEN", "OBRIEN"),
        ("Jean-Pierre", "JEAN<PIERRE", "JEAN<PIERRE"),
        ("Smith, John", "SMITH<<JOHN", "SMITH<<JOHN"),
        ("St. John", "ST<JOHN", "ST<JOHN"),
        // Decomposed input behaves like the precomposed letters.
        (
            "Mu\u{308}ller A\u{30A}sa Jose\u{301}",
            "MUELLER<AASA<JOSE",
            "MULLER<ASA<JOSE",
        ),
    ];
    for (input, expanded, base) in cases {
        assert_eq!(translit(input, Expanded), expanded, "{input}");
        assert_eq!(translit(input, Base), base, "{input}");
    }
}

#[test]
fn every_latin1_and_extended_a_letter_transliterates() {
    for c in '\u{C0}'..='\u{17F}' {
        if c == '×' || c == '÷' {
            continue;
        }
        let out = translit(&c.to_string(), UmlautStyle::Expanded);
        assert!(
            !out.is_empty() && out.chars().all(|c| c.is_ascii_uppercase()),
            "{c:?} → {out:?}"
        );
    }
}

#[test]
fn untransliterable_characters_are_errors() {
    let message = |s: &str| transliterate(s, UmlautStyle::Expanded).map_err(|e| e.to_string());
    assert_eq!(
        message("Иван"),
        Err("cannot transliterate 'И' (U+0418) in \"Иван\": only Latin letters, spaces, hyphens and punctuation can be written in an MRZ name".to_owned())
    );
    assert_eq!(
        message("John 3rd"),
        Err("cannot transliterate '3' (U+0033) in \"John 3rd\": only Latin letters, spaces, hyphens and punctuation can be written in an MRZ name".to_owned())
    );
    assert!(message("×").is_err());
    assert!(name_field("Ərdoğan", "", 39, UmlautStyle::Expanded).is_err());

    let mut b = utopia(MrzFormat::Td3, "L898902C3");
    b.secondary_identifier = "Άννα".to_owned();
    assert!(matches!(
        b.build(),
        Err(MrzError::Transliteration { found: 'Ά', .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Builder validation

#[test]
fn builder_rejects_invalid_fields() {
    let base = utopia(MrzFormat::Td3, "L898902C3");
    type Edit = fn(&mut MrzBuilder);
    let cases: [(Edit, &str); 8] = [
        (
            |b| b.issuing_state = "uto".to_owned(),
            "field \"issuing state\": expected 1 to 3 upper-case letters, found \"uto\"",
        ),
        (
            |b| b.nationality = "UTOP".to_owned(),
            "field \"nationality\": expected 1 to 3 upper-case letters, found \"UTOP\"",
        ),
        (
            |b| b.document_code = "I".to_owned(),
            "field \"document code\": expected 'P', optionally followed by a letter, found \"I\"",
        ),
        (
            |b| b.date_of_birth = "74-08-12".to_owned(),
            "field \"date of birth\": expected YYMMDD (6 digits, '<' for unknown parts), found \"74-08-12\"",
        ),
        (
            |b| b.date_of_expiry = "12<<<<".to_owned(),
            "field \"date of expiry\": expected YYMMDD (6 digits), found \"12<<<<\"",
        ),
        (
            |b| b.optional_data = "ZE184226B123456".to_owned(),
            "field \"optional data\": expected at most 14 characters of A-Z, 0-9 and '<', found \"ZE184226B123456\"",
        ),
        (
            |b| b.primary_identifier = " - ".to_owned(),
            "field \"primary identifier\": expected at least one Latin letter, found \" - \"",
        ),
        (
            |b| b.document_number = "L898 902".to_owned(),
            "field \"document number\": expected 1 to 9 letters or digits (TD3 has no overflow rule for longer numbers), found \"L898 902\"",
        ),
    ];
    for (edit, message) in cases {
        let mut b = base.clone();
        edit(&mut b);
        assert_eq!(build_error(&b), message);
    }
    let mut td1 = utopia(MrzFormat::Td1, "D23145890");
    td1.document_code = "IV".to_owned();
    assert_eq!(
        build_error(&td1),
        "field \"document code\": expected 'A', 'C' or 'I', optionally followed by a letter other than 'V', found \"IV\""
    );
}

#[test]
fn td1_optional_data_spans_both_lines() {
    let mut b = utopia(MrzFormat::Td1, "D23145890");
    b.optional_data = format!("{}XYZ", "<".repeat(15));
    let m = build(&b);
    assert_eq!(m.lines[0], "I<UTOD231458907<<<<<<<<<<<<<<<");
    assert_eq!(&m.lines[1][18..29], "XYZ<<<<<<<<");
    assert_eq!(m.optional_data, b.optional_data);
    b.optional_data = "A".repeat(27);
    assert!(build_error(&b).starts_with("field \"optional data\": expected at most 26 characters"));
}

#[test]
fn to_lines_never_fails_on_edited_fields() {
    let mut m = parsed(TD3);
    m.primary_identifier = "Ñandú 3".to_owned();
    m.issuing_state = "u-t".to_owned();
    m.document_number = "L898902C3999".to_owned();
    let lines = m.to_lines();
    assert_eq!(lines[0], "P<U<TNANDU<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<<<<");
    assert_eq!(&lines[1][..9], "L898902C3");
    assert!(lines.iter().all(|l| l.len() == 44));

    m.lines = vec!["garbage".to_owned()];
    assert!(m.check_digits().is_empty());
    assert_eq!(
        m.validate().map_err(|e| e.to_string()),
        Err(
            "expected 90 (TD1), 72 (TD2) or 88 (TD3) characters without line separators, found 7"
                .to_owned()
        )
    );
}

#[test]
fn mrz_serializes_enums_in_snake_case() {
    let m = parsed(BSI);
    let cd = m.check_digits()[0];
    assert_eq!(
        (cd.field, cd.expected, cd.found, cd.valid),
        ("document number", '4', '4', true)
    );
    // serde's derive output is checked through the enum names only; the crate has no JSON
    // serializer as a dependency.
    assert_eq!(format!("{:?}", m.format), "Td3");
    assert_eq!(MrzFormat::Td1.to_string(), "TD1");
    assert_eq!(mrz::MrzFormat::Td2.line_len(), 36);
}

// ---------------------------------------------------------------------------------------------
// Properties

/// The optional data that fits beside a document number of `len` characters.
fn optional_room(format: MrzFormat, len: usize) -> usize {
    let (width, extra) = match format {
        MrzFormat::Td1 => (15, 11),
        MrzFormat::Td2 => (7, 0),
        MrzFormat::Td3 => (14, 0),
    };
    let overflow = if format != MrzFormat::Td3 && len > 9 {
        (len - 9 + 2).min(width)
    } else {
        0
    };
    width - overflow + extra
}

fn words(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec("[A-Za-z]{1,9}", 0..=max).prop_map(|w| w.join(" "))
}

fn builder() -> impl Strategy<Value = MrzBuilder> {
    prop_oneof![
        Just(MrzFormat::Td1),
        Just(MrzFormat::Td2),
        Just(MrzFormat::Td3)
    ]
    .prop_flat_map(|format| {
        let (code, max_number) = match format {
            MrzFormat::Td1 => ("[ACI][A-UW-Z]?", 23),
            MrzFormat::Td2 => ("[ACI][A-UW-Z]?", 15),
            MrzFormat::Td3 => ("P[A-Z]?", 9),
        };
        (
            Just(format),
            code,
            "[A-Z]{1,3}",
            proptest::string::string_regex(&format!("[A-Z0-9]{{1,{max_number}}}")).expect("regex"),
            "[A-Za-z]{1,9}( [A-Za-z]{1,9}){0,2}",
            words(3),
            "[A-Z]{1,3}",
            // Calendar dates (day ≤ 28 exists in every month); a date of birth may have
            // unknown parts, written with '<'.
            (
                0u32..100,
                1u32..13,
                1u32..29,
                proptest::array::uniform3(proptest::bool::weighted(0.2)),
            )
                .prop_map(|(y, m, d, unknown)| {
                    [y, m, d]
                        .iter()
                        .zip(unknown)
                        .map(|(v, u)| {
                            if u {
                                "<<".to_owned()
                            } else {
                                format!("{v:02}")
                            }
                        })
                        .collect::<String>()
                }),
            prop_oneof![Just(Sex::Female), Just(Sex::Male), Just(Sex::Unspecified)],
            (0u32..100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y:02}{m:02}{d:02}")),
            "[A-Z0-9<]{0,26}",
            prop_oneof![Just(UmlautStyle::Expanded), Just(UmlautStyle::Base)],
        )
    })
    .prop_map(
        |(format, code, state, number, primary, secondary, nat, dob, sex, doe, opt, umlauts)| {
            let room = optional_room(format, number.len());
            let optional: String = opt.chars().take(room).collect();
            MrzBuilder {
                format,
                document_code: code,
                issuing_state: state,
                document_number: number,
                primary_identifier: primary,
                secondary_identifier: secondary,
                nationality: nat,
                date_of_birth: dob,
                sex,
                date_of_expiry: doe,
                optional_data: optional.trim_end_matches('<').to_owned(),
                umlauts,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn built_mrz_round_trips(b in builder()) {
        let m = b.build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(m.validate(), Ok(()));
        prop_assert_eq!(m.lines.len(), b.format.line_count());
        prop_assert!(m.lines.iter().all(|l| l.len() == b.format.line_len()));

        let back = parse(&m.lines.join("\n")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(parse(&m.lines.concat()), Ok(m.clone()));
        prop_assert_eq!(back.to_lines(), m.lines.clone());

        prop_assert_eq!(back.format, b.format);
        prop_assert_eq!(&back.document_code, &b.document_code);
        prop_assert_eq!(&back.issuing_state, &b.issuing_state);
        prop_assert_eq!(&back.document_number, &b.document_number);
        prop_assert_eq!(&back.nationality, &b.nationality);
        prop_assert_eq!(&back.date_of_birth, &b.date_of_birth);
        prop_assert_eq!(back.sex, b.sex);
        prop_assert_eq!(&back.date_of_expiry, &b.date_of_expiry);
        prop_assert_eq!(&back.optional_data, &b.optional_data);

        let name_line = if b.format == MrzFormat::Td1 { 2 } else { 0 };
        let expected_name = name_field(
            &b.primary_identifier,
            &b.secondary_identifier,
            b.format.name_width(),
            b.umlauts,
        ).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(m.lines[name_line].ends_with(&expected_name));
        let primary = b.primary_identifier.to_uppercase();
        let secondary = b.secondary_identifier.to_uppercase();
        if primary.len() + 2 + secondary.len() <= b.format.name_width() {
            prop_assert_eq!(&back.primary_identifier, &primary);
            prop_assert_eq!(&back.secondary_identifier, &secondary);
        }
    }

    #[test]
    fn name_field_is_exact_width_and_never_ends_in_a_separator(
        primary in "[A-Za-z]{1,20}( [A-Za-z]{1,20}){0,3}",
        secondary in words(4),
        width in 0usize..45,
    ) {
        let f = name_field(&primary, &secondary, width, UmlautStyle::Expanded)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(f.len(), width);
        let content = f.trim_end_matches('<');
        // Either padded, or full with a letter at the end.
        prop_assert!(
            f.is_empty() || f.len() > content.len() || f.ends_with(|c: char| c.is_ascii_uppercase())
        );
        // From 4 characters on, the secondary identifier keeps at least its initial.
        if let Some(initial) = secondary.chars().next().filter(|_| width >= 4) {
            let initial = initial.to_ascii_uppercase();
            prop_assert!(content.contains(&format!("<<{initial}")), "{}", f);
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in proptest::collection::vec(any::<char>(), 0..100)) {
        let text: String = text.into_iter().collect();
        if let Ok(m) = parse(&text) {
            let _ = m.validate();
            let _ = m.check_digits();
            let _ = m.to_lines();
        }
    }

    #[test]
    fn parse_never_panics_on_mrz_sized_text(
        text in prop_oneof![
            "[A-Z0-9<a-zÉ\\- \n]{88}",
            "[A-Z0-9<a-zÉ\\- \n]{90}",
            "[A-Z0-9<a-zÉ\\- \n]{72}",
            "[A-Z0-9<]{88}",
            "[A-Z0-9<]{90}",
            "[A-Z0-9<]{72}",
        ]
    ) {
        if let Ok(m) = parse(&text) {
            let _ = m.validate();
            let _ = m.check_digits();
            let _ = m.to_lines();
        }
    }

    #[test]
    fn parse_never_panics_on_mangled_number_and_optional_fields(
        td1 in "[A-Z0-9<]{25}",
        td2_number in "[A-Z0-9<]{10}",
        td2_optional in "[A-Z0-9<]{8}",
    ) {
        let text = format!("I<UTO{td1}\n{}", &TD1[31..]);
        let m = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(m.check_digits().len(), 4);
        let lines = m.to_lines();
        prop_assert!(lines.iter().all(|l| l.len() == 30));

        let text = format!("{}\n{td2_number}UTO7408122F1204159{td2_optional}", &TD2[..36]);
        let m = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(m.check_digits().len(), 4);
        let lines = m.to_lines();
        prop_assert!(lines.iter().all(|l| l.len() == 36));
    }
}
