//! LDS files against the ICAO Doc 9303 Part 10 examples, the ISO/IEC 19794-5 and 39794-5 samples
//! and the BSI TR-03105-5 reference passport (`/work/shared/vectors`), plus generated files and
//! robustness properties.

use marty_icao::lds::{
    self, BiometricDataKind, EfCom, FaceImage, ImageDimensions, ImageFormat, LdsError, LdsFile,
    TlvNode,
};
use marty_icao::mrz::{MrzFormat, Sex};
use proptest::prelude::*;

fn vector(path: &str) -> Vec<u8> {
    let full = format!(
        "{}/../../../shared/vectors/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
}

/// A JPEG header that is enough for the marker scanner: SOI, SOF0 (8-bit, height, width, one
/// component), EOI.
fn tiny_jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00]; // SOI, empty APP0
    out.extend([0xFF, 0xC0, 0x00, 0x0B, 0x08]);
    out.extend(height.to_be_bytes());
    out.extend(width.to_be_bytes());
    out.extend([0x01, 0x01, 0x11, 0x00]);
    out.extend([0xFF, 0xD9]);
    out
}

/// A JP2 file header: signature box, file type box, and a jp2h superbox holding ihdr.
fn tiny_jp2(width: u32, height: u32) -> Vec<u8> {
    let mut out = vec![
        0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A,
    ];
    out.extend([0, 0, 0, 0x14]);
    out.extend(b"ftypjp2 ");
    out.extend([0, 0, 0, 0]);
    out.extend(b"jp2 ");
    out.extend([0, 0, 0, 30]);
    out.extend(b"jp2h");
    out.extend([0, 0, 0, 22]);
    out.extend(b"ihdr");
    out.extend(height.to_be_bytes());
    out.extend(width.to_be_bytes());
    out.extend([0x00, 0x03, 0x07, 0x07, 0x00, 0x00]);
    out
}

// ---------------------------------------------------------------------------------------------
// EF.COM

#[test]
fn ef_com_doc9303_example() {
    let bytes = vector("lds-examples/EF_COM_9303p10.bin");
    let com = EfCom::parse(&bytes).expect("EF.COM parses");
    assert_eq!(com.lds_version, "0106");
    assert_eq!(com.unicode_version, "040000");
    assert_eq!(com.data_groups, vec![LdsFile::Dg(1), LdsFile::Dg(2)]);
    assert_eq!(com.lds_version_display(), "1.6");
    assert_eq!(com.unicode_version_display(), "4.0.0");
    assert_eq!(
        com.to_string(),
        "LDS 1.6, Unicode 4.0.0, data groups: DG1 DG2"
    );
    assert_eq!(com.to_der(), bytes);
    assert_eq!(lds::identify(&bytes), Ok(LdsFile::Com));
}

#[test]
fn ef_com_bsi_reference() {
    let bytes = vector("bsi-reference/EF_COM.bin");
    let com = EfCom::parse(&bytes).expect("EF.COM parses");
    assert_eq!(com.lds_version, "0107");
    assert_eq!(com.lds_version_display(), "1.7");
    assert_eq!(com.unicode_version, "040000");
    assert_eq!(
        com.data_groups,
        vec![
            LdsFile::Dg(1),
            LdsFile::Dg(2),
            LdsFile::Dg(3),
            LdsFile::Dg(4),
            LdsFile::Dg(14)
        ]
    );
    assert_eq!(com.to_der(), bytes);
}

#[test]
fn ef_com_built_round_trip() {
    let com = EfCom {
        lds_version: "0108".to_owned(),
        unicode_version: "040000".to_owned(),
        data_groups: vec![LdsFile::Dg(1), LdsFile::Dg(2), LdsFile::Dg(15)],
    };
    let der = com.to_der();
    assert_eq!(&der[..4], &[0x60, 0x15, 0x5F, 0x01]);
    assert_eq!(EfCom::parse(&der), Ok(com));
}

#[test]
fn ef_com_errors_name_the_fault() {
    let dg1 = vector("lds-examples/EF_DG1_TD2_UTO_ERIKSSON.bin");
    let err = EfCom::parse(&dg1).expect_err("DG1 is not EF.COM");
    assert_eq!(
        err.to_string(),
        "at byte 0: expected EF.COM (tag 60), found tag 61"
    );

    let mut bytes = vector("lds-examples/EF_COM_9303p10.bin");
    // LDS version "010A": not digits.
    bytes[7] = b'A';
    let err = EfCom::parse(&bytes).expect_err("bad version");
    assert!(
        matches!(&err, LdsError::InvalidField { field, .. } if field == "LDS version (5F01)"),
        "{err}"
    );

    let mut bytes = vector("lds-examples/EF_COM_9303p10.bin");
    // Tag list entry 0x77 (EF.SOD) is not a data group.
    bytes[21] = 0x77;
    let err = EfCom::parse(&bytes).expect_err("SOD in tag list");
    assert!(
        err.to_string().contains("77 is not a data group tag"),
        "{err}"
    );

    // Padding after the file is accepted; other trailing bytes are not.
    let mut padded = vector("lds-examples/EF_COM_9303p10.bin");
    padded.extend([0xFF; 8]);
    assert!(EfCom::parse(&padded).is_ok());
    let mut trailing = vector("lds-examples/EF_COM_9303p10.bin");
    trailing.extend([0x01, 0x02]);
    assert!(matches!(
        EfCom::parse(&trailing),
        Err(LdsError::TrailingData { count: 2, .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// DG1

#[test]
fn dg1_td2_eriksson() {
    let bytes = vector("lds-examples/EF_DG1_TD2_UTO_ERIKSSON.bin");
    let mrz = lds::parse_dg1(&bytes).expect("DG1 parses");
    assert_eq!(mrz.format, MrzFormat::Td2);
    assert_eq!(mrz.document_code, "I");
    assert_eq!(mrz.issuing_state, "UTO");
    assert_eq!(mrz.primary_identifier, "ERIKSSON");
    assert_eq!(mrz.secondary_identifier, "ANNA MARIA");
    assert_eq!(mrz.document_number, "D23145890");
    assert_eq!(mrz.nationality, "UTO");
    assert_eq!(mrz.date_of_birth, "740812");
    assert_eq!(mrz.sex, Sex::Female);
    assert_eq!(mrz.date_of_expiry, "120415");
    mrz.validate().expect("check digits hold");
    assert_eq!(lds::build_dg1(&mrz), bytes);
    assert_eq!(lds::identify(&bytes), Ok(LdsFile::Dg(1)));
}

#[test]
fn dg1_bsi_mustermann() {
    let bytes = vector("bsi-reference/Datagroup1.bin");
    let mrz = lds::parse_dg1(&bytes).expect("DG1 parses");
    assert_eq!(mrz.format, MrzFormat::Td3);
    assert_eq!(mrz.document_code, "P");
    assert_eq!(mrz.issuing_state, "D");
    assert_eq!(mrz.primary_identifier, "MUSTERMANN");
    assert_eq!(mrz.secondary_identifier, "ERIKA");
    assert_eq!(mrz.document_number, "C11T002JM");
    assert_eq!(mrz.nationality, "D");
    assert_eq!(mrz.date_of_birth, "960812");
    assert_eq!(mrz.sex, Sex::Female);
    assert_eq!(mrz.date_of_expiry, "231031");
    mrz.validate().expect("check digits hold");
    assert_eq!(lds::build_dg1(&mrz), bytes);
}

#[test]
fn dg1_errors() {
    let mut bytes = vector("bsi-reference/Datagroup1.bin");
    bytes[10] = 0xC4; // 'Ä' in Latin-1: not ASCII
    let err = lds::parse_dg1(&bytes).expect_err("non-ASCII MRZ");
    assert!(err.to_string().contains("not ASCII"), "{err}");

    // Shorten the MRZ by one character (fixing both lengths): no MRZ layout has 87 characters.
    let mut bytes = vector("bsi-reference/Datagroup1.bin");
    bytes.pop();
    bytes[1] -= 1;
    bytes[4] -= 1;
    let err = lds::parse_dg1(&bytes).expect_err("87 characters");
    assert!(matches!(err, LdsError::Mrz(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// DG2

#[test]
fn dg2_doc9303_example_is_19794_jpeg() {
    let bytes = vector("lds-examples/EF_DG2_ISO19794_9303p10_example.bin");
    let dg2 = lds::parse_dg2(&bytes).expect("DG2 parses");
    assert_eq!(dg2.faces.len(), 1);
    let face = &dg2.faces[0];
    assert_eq!(face.kind, BiometricDataKind::Iso19794_5);
    assert_eq!(face.format_owner, 0x0101);
    assert_eq!(face.format_type, 0x0008);
    assert_eq!(face.header_version.as_deref(), Some("0101"));
    assert_eq!(face.biometric_type, None);
    assert_eq!(face.block_offset, 0x24);
    assert_eq!(face.block_length, 5145);
    let record = face.iso19794_5.as_ref().expect("19794-5 record");
    assert_eq!(record.version, "010");
    assert_eq!(record.record_length, 5145);
    assert_eq!(record.image_count, 1);
    let image = &record.images[0];
    assert_eq!(image.block_length, 5131);
    assert_eq!((image.width, image.height), (148, 70));
    // The sample declares a token frontal JPEG 2000 image, but the data is a JPEG of the size
    // the record states: both facts are reported.
    assert_eq!(image.face_image_type, 2);
    assert_eq!(image.image_data_type, 1);
    assert_eq!(image.declared_format(), Some(ImageFormat::Jpeg2000));
    assert_eq!(image.image.detected_format, Some(ImageFormat::Jpeg));
    assert_eq!(
        image.image.header_dimensions,
        Some(ImageDimensions {
            width: 148,
            height: 70
        })
    );
    assert_eq!(image.image.offset, 0x24 + 46);
    assert_eq!(image.image.length, 5145 - 46);
    assert_eq!(image.image.data, &bytes[0x24 + 46..]);
    assert!(image.image.data.ends_with(&[0xFF, 0xD9]));
    assert_eq!(lds::identify(&bytes), Ok(LdsFile::Dg(2)));
}

#[test]
fn bare_19794_record() {
    let bytes = vector("lds-examples/ISO19794_Test1_Data.bin");
    assert!(bytes.starts_with(b"FAC\0"));
    let record = lds::parse_iso19794_5(&bytes).expect("record parses");
    assert_eq!(record.record_length as usize, bytes.len());
    assert_eq!(record.images.len(), 1);
    let image = &record.images[0];
    assert_eq!((image.width, image.height), (148, 70));
    assert!(image.feature_points.is_empty());
    assert_eq!(image.image.offset, 46);
    assert_eq!(image.image.data, &bytes[46..]);
    // The Doc 9303 example DG2 carries this very record.
    let dg2 = vector("lds-examples/EF_DG2_ISO19794_9303p10_example.bin");
    assert_eq!(&dg2[0x24..], &bytes[..]);
}

#[test]
fn dg2_bsi_reference_is_19794_jpeg2000() {
    let bytes = vector("bsi-reference/Datagroup2.bin");
    let dg2 = lds::parse_dg2(&bytes).expect("DG2 parses");
    assert_eq!(dg2.faces.len(), 1);
    let face = &dg2.faces[0];
    assert_eq!(face.kind, BiometricDataKind::Iso19794_5);
    assert_eq!((face.format_owner, face.format_type), (0x0101, 0x0008));
    assert_eq!(face.biometric_type, Some(2));
    assert_eq!(face.biometric_subtype, Some(0));
    let record = face.iso19794_5.as_ref().expect("19794-5 record");
    assert_eq!(record.record_length, 0x3AC5);
    let image = &record.images[0];
    assert_eq!(image.face_image_type, 1);
    assert_eq!(image.declared_format(), Some(ImageFormat::Jpeg2000));
    assert_eq!(image.image.detected_format, Some(ImageFormat::Jpeg2000));
    assert_eq!((image.width, image.height), (337, 449));
    // The JP2 header itself says 413 × 531: the record's declared size is not the image's.
    assert_eq!(
        image.image.header_dimensions,
        Some(ImageDimensions {
            width: 413,
            height: 531
        })
    );
    assert_eq!(image.image.length, 0x3AC5 - 46);
    assert_eq!(dg2.images().len(), 1);
}

#[test]
fn dg2_39794_all_fields() {
    let bytes = vector("lds-examples/ICAO_39794_5_AP_DG2_AllFields.dat");
    let dg2 = lds::parse_dg2(&bytes).expect("DG2 parses");
    assert_eq!(dg2.faces.len(), 1);
    let face = &dg2.faces[0];
    assert_eq!(face.kind, BiometricDataKind::Iso39794_5);
    assert_eq!((face.format_owner, face.format_type), (0x0101, 0x002A));
    assert_eq!(face.header_version.as_deref(), Some("0101"));
    assert_eq!(face.biometric_type, Some(2));
    assert_eq!(face.creation_date.as_deref(), Some("21240105112345"));
    assert_eq!(face.validity_period.as_deref(), Some("2124010521290105"));
    assert_eq!(face.creator.as_deref(), Some("01030001"));
    assert_eq!(face.block_length, 15620);
    assert!(face.iso19794_5.is_none());
    let block = face.iso39794_5.as_ref().expect("39794-5 summary");
    assert_eq!(block.block_length, 15620);
    assert_eq!(block.note, None);
    assert_eq!((block.generation, block.year), (Some(3), Some(2019)));
    assert_eq!(block.representations.len(), 1);
    let rep = &block.representations[0];
    assert_eq!(rep.representation_id, Some(0));
    assert_eq!(rep.image_data_format, Some(3));
    assert_eq!(rep.declared_format(), Some(ImageFormat::Jpeg2000));
    assert_eq!((rep.width, rep.height), (Some(572), Some(731)));
    let image = rep.image.as_ref().expect("image data");
    assert_eq!(image.offset, 111);
    assert_eq!(image.length, 15000);
    assert_eq!(image.detected_format, Some(ImageFormat::Jpeg2000));
    assert_eq!(image.data, &bytes[111..111 + 15000]);
}

#[test]
fn dg2_39794_mandatory_fields() {
    let bytes = vector("lds-examples/ICAO_39794_5_AP_DG2_MandFields.dat");
    let dg2 = lds::parse_dg2(&bytes).expect("DG2 parses");
    let face = &dg2.faces[0];
    assert_eq!(face.kind, BiometricDataKind::Iso39794_5);
    assert_eq!((face.format_owner, face.format_type), (0x0101, 0x002A));
    assert_eq!(face.header_version, None);
    assert_eq!(face.biometric_type, None);
    let block = face.iso39794_5.as_ref().expect("39794-5 summary");
    assert_eq!(block.block_length, 15051);
    assert_eq!(block.note, None);
    let rep = &block.representations[0];
    assert_eq!(rep.image_data_format, Some(3));
    assert_eq!((rep.width, rep.height), (None, None));
    let image = rep.image.as_ref().expect("image data");
    assert_eq!((image.offset, image.length), (76, 15000));
    assert_eq!(image.detected_format, Some(ImageFormat::Jpeg2000));
    // Same image as in the AllFields sample and in the BSI DG2.
    let all = vector("lds-examples/ICAO_39794_5_AP_DG2_AllFields.dat");
    assert_eq!(image.data, &all[111..111 + 15000]);
    assert_eq!(dg2.images().len(), 1);
}

#[test]
fn dg2_several_instances() {
    // Two templates taken from two generated DG2s, regrouped under 02 01 02.
    let a =
        lds::build_dg2(&FaceImage::from_image(tiny_jpeg(10, 20)).expect("jpeg")).expect("build");
    let b = lds::build_dg2(&FaceImage::from_image(tiny_jp2(30, 40)).expect("jp2")).expect("build");
    let template = |dg2: &[u8]| {
        let at = dg2
            .windows(2)
            .position(|w| w == [0x7F, 0x60])
            .expect("7F60 present");
        dg2[at..].to_vec()
    };
    let build = |count: u8| {
        let group = [vec![0x02, 0x01, count], template(&a), template(&b)].concat();
        tlv(&[0x75], &tlv(&[0x7F, 0x61], &group))
    };

    let parsed = lds::parse_dg2(&build(2)).expect("two instances");
    assert_eq!(parsed.faces.len(), 2);
    let images = parsed.images();
    assert_eq!(images[0].detected_format, Some(ImageFormat::Jpeg));
    assert_eq!(images[1].detected_format, Some(ImageFormat::Jpeg2000));
    assert_eq!(images[0].data, tiny_jpeg(10, 20));
    assert_eq!(images[1].data, tiny_jp2(30, 40));

    // Declaring 3 instances for 2 templates is an error.
    assert!(matches!(
        lds::parse_dg2(&build(3)),
        Err(LdsError::InstanceCount {
            declared: 3,
            found: 2,
            ..
        })
    ));
}

/// A DER element with a definite length.
fn tlv(tag: &[u8], content: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    match content.len() {
        n @ 0..=0x7F => out.push(n as u8),
        n @ 0x80..=0xFF => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

#[test]
fn build_dg2_jpeg_round_trip() {
    let jpeg = tiny_jpeg(640, 480);
    let face = FaceImage {
        format: ImageFormat::Jpeg,
        width: 0,
        height: 0,
        data: jpeg.clone(),
    };
    let dg2 = lds::build_dg2(&face).expect("DG2 builds");
    // The exact nesting of Part 10 §4.7.2.1.
    let record_len = 14 + 32 + jpeg.len();
    let mut expected = vec![
        0xA1,
        0x0F,
        0x80,
        0x02,
        0x01,
        0x01,
        0x81,
        0x01,
        0x02,
        0x87,
        0x02,
        0x01,
        0x01,
        0x88,
        0x02,
        0x00,
        0x08,
        0x5F,
        0x2E,
        record_len as u8,
    ];
    expected.extend(b"FAC\x00010\x00");
    expected.extend((record_len as u32).to_be_bytes());
    expected.extend([0x00, 0x01]);
    expected.extend(((32 + jpeg.len()) as u32).to_be_bytes());
    expected.extend([0u8; 16]);
    expected.extend([0x01, 0x00, 0x02, 0x80, 0x01, 0xE0, 0x01, 0x00, 0, 0, 0, 0]);
    expected.extend(&jpeg);
    let bit_len = expected.len();
    let mut bit = vec![0x02, 0x01, 0x01, 0x7F, 0x60, bit_len as u8];
    bit.extend(expected);
    let mut group = vec![0x7F, 0x61, bit.len() as u8];
    group.extend(bit);
    let mut file = vec![0x75, group.len() as u8];
    file.extend(group);
    assert_eq!(dg2, file);

    let parsed = lds::parse_dg2(&dg2).expect("DG2 parses");
    let face_info = &parsed.faces[0];
    assert_eq!(face_info.kind, BiometricDataKind::Iso19794_5);
    assert_eq!(
        (face_info.format_owner, face_info.format_type),
        (0x0101, 0x0008)
    );
    let record = face_info.iso19794_5.as_ref().expect("record");
    assert_eq!(record.record_length as usize, face_info.block_length);
    assert_eq!(record.images[0].block_length as usize, 32 + jpeg.len());
    let image = &record.images[0];
    assert_eq!(image.declared_format(), Some(ImageFormat::Jpeg));
    assert_eq!((image.width, image.height), (640, 480));
    assert_eq!(image.face_image_type, 1);
    assert_eq!(image.colour_space, 1);
    assert_eq!(image.image.data, jpeg);
    assert_eq!(&dg2[image.image.offset..], &jpeg[..]);
    assert_eq!(lds::identify(&dg2), Ok(LdsFile::Dg(2)));
}

#[test]
fn build_dg2_large_image_uses_long_lengths() {
    let mut jpeg = tiny_jpeg(100, 200);
    // Pad with an APP1 segment-sized payload after EOI: only the header is scanned.
    jpeg.extend(vec![0xAB; 70_000]);
    let face = FaceImage::from_image(jpeg.clone()).expect("face");
    assert_eq!((face.width, face.height), (100, 200));
    let dg2 = lds::build_dg2(&face).expect("builds");
    let parsed = lds::parse_dg2(&dg2).expect("parses");
    assert_eq!(parsed.images()[0].data, jpeg);
    assert_eq!(&dg2[..2], &[0x75, 0x83]);
}

#[test]
fn build_dg2_jpeg2000() {
    let jp2 = tiny_jp2(413, 531);
    let face = FaceImage {
        format: ImageFormat::Jpeg2000,
        width: 0,
        height: 0,
        data: jp2.clone(),
    };
    let dg2 = lds::build_dg2(&face).expect("DG2 builds");
    let parsed = lds::parse_dg2(&dg2).expect("parses");
    let image = &parsed.faces[0].iso19794_5.as_ref().expect("record").images[0];
    assert_eq!(image.image_data_type, 1);
    assert_eq!((image.width, image.height), (413, 531));
    assert_eq!(image.image.data, jp2);

    // A bare codestream: SOC, SIZ with Xsiz 120, Ysiz 90, offsets 20 and 10.
    let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
    for v in [120u32, 90, 20, 10] {
        j2k.extend(v.to_be_bytes());
    }
    assert_eq!(lds::detect_image_format(&j2k), Some(ImageFormat::Jpeg2000));
    assert_eq!(
        lds::image_dimensions(&j2k),
        Some(ImageDimensions {
            width: 100,
            height: 80
        })
    );
}

#[test]
fn build_dg2_rejects_bad_images() {
    let not_an_image = FaceImage {
        format: ImageFormat::Jpeg,
        width: 10,
        height: 10,
        data: b"GIF89a....".to_vec(),
    };
    assert!(matches!(
        lds::build_dg2(&not_an_image),
        Err(LdsError::UnsupportedImage(_))
    ));
    let mislabelled = FaceImage {
        format: ImageFormat::Jpeg2000,
        width: 0,
        height: 0,
        data: tiny_jpeg(1, 1),
    };
    assert_eq!(
        lds::build_dg2(&mislabelled),
        Err(LdsError::InvalidImage(
            "declared JPEG 2000, but the data is JPEG".to_owned()
        ))
    );
    // Width given but contradicting the header.
    let contradicting = FaceImage {
        format: ImageFormat::Jpeg,
        width: 99,
        height: 0,
        data: tiny_jpeg(100, 50),
    };
    assert_eq!(
        lds::build_dg2(&contradicting),
        Err(LdsError::InvalidImage(
            "width 99 given, but the JPEG header says 100".to_owned()
        ))
    );
    // No SOF segment and no size given: the caller must say.
    let headerless = FaceImage {
        format: ImageFormat::Jpeg,
        width: 0,
        height: 0,
        data: vec![0xFF, 0xD8, 0xFF, 0xD9],
    };
    assert!(matches!(
        lds::build_dg2(&headerless),
        Err(LdsError::InvalidImage(msg)) if msg.contains("cannot be read")
    ));
    // …and when it is given, the image is accepted.
    let sized = FaceImage {
        width: 320,
        height: 240,
        ..headerless
    };
    assert!(lds::build_dg2(&sized).is_ok());
}

#[test]
fn detect_formats() {
    assert_eq!(
        lds::detect_image_format(&tiny_jpeg(1, 1)),
        Some(ImageFormat::Jpeg)
    );
    assert_eq!(
        lds::detect_image_format(&tiny_jp2(1, 1)),
        Some(ImageFormat::Jpeg2000)
    );
    assert_eq!(lds::detect_image_format(&[0xFF, 0xD8]), None);
    assert_eq!(lds::detect_image_format(b"\x89PNG\r\n"), None);
    assert_eq!(lds::detect_image_format(&[]), None);
}

#[test]
fn record_errors_are_precise() {
    let good = vector("lds-examples/ISO19794_Test1_Data.bin");
    let field_of = |bytes: &[u8]| match lds::parse_iso19794_5(bytes) {
        Err(LdsError::InvalidBiometric { field, .. }) => field,
        other => panic!("expected an InvalidBiometric error, got {other:?}"),
    };

    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(field_of(&bad), "format identifier");

    let mut bad = good.clone();
    bad[4..8].copy_from_slice(b"030\0");
    assert_eq!(field_of(&bad), "version");

    let mut bad = good.clone();
    bad.push(0);
    assert_eq!(field_of(&bad), "record length");

    let mut bad = good.clone();
    bad[12..14].copy_from_slice(&[0, 0]);
    assert_eq!(field_of(&bad), "number of face images");

    // Two images declared, room for one.
    let mut bad = good.clone();
    bad[13] = 2;
    assert_eq!(field_of(&bad), "image 2: facial record data length");

    // Block length larger than the record.
    let mut bad = good.clone();
    bad[17] += 1;
    let err = lds::parse_iso19794_5(&bad).expect_err("block too long");
    assert_eq!(
        err.to_string(),
        "at byte 14: ISO/IEC 19794-5 record, image 1: facial record data length: 5132 bytes \
         from here run past the end of the record (5131 bytes remain)"
    );

    // Block length shorter than its fixed fields.
    let mut bad = good.clone();
    bad[14..18].copy_from_slice(&20u32.to_be_bytes());
    assert_eq!(field_of(&bad), "image 1: facial record data length");

    // Block shorter than the record: bytes left over.
    let mut bad = good.clone();
    bad[17] -= 1;
    assert_eq!(field_of(&bad), "record length");

    // Too short for the header.
    assert_eq!(field_of(&good[..10]), "record length");

    // Inside a DG2 the offsets are those of the file.
    let mut dg2 = vector("lds-examples/EF_DG2_ISO19794_9303p10_example.bin");
    dg2[0x24 + 4] = b'2';
    match lds::parse_dg2(&dg2) {
        Err(LdsError::InvalidBiometric { offset, field, .. }) => {
            assert_eq!((offset, field.as_str()), (0x28, "version"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn dg2_structure_errors() {
    // Missing format type (88) in the BHT: rewrite A1 0C 80 02 01 01 87 02 01 01 88 02 00 08
    // so that 88 becomes 89 (an unknown element).
    let mut bytes = vector("lds-examples/EF_DG2_ISO19794_9303p10_example.bin");
    assert_eq!(bytes[0x1B], 0x88);
    bytes[0x1B] = 0x89;
    match lds::parse_dg2(&bytes) {
        Err(LdsError::Missing { what, .. }) => assert!(what.contains("format type (88)")),
        other => panic!("unexpected {other:?}"),
    }
    // Not DG2 at all.
    let com = vector("lds-examples/EF_COM_9303p10.bin");
    assert_eq!(
        lds::parse_dg2(&com).map_err(|e| e.to_string()),
        Err("at byte 0: expected DG2 (tag 75), found tag 60".to_owned())
    );
    // A data block that is neither 5F2E nor 7F2E.
    let mut bytes = vector("lds-examples/EF_DG2_ISO19794_9303p10_example.bin");
    bytes[0x1F] = 0x5F;
    bytes[0x20] = 0x2F;
    assert!(matches!(
        lds::parse_dg2(&bytes),
        Err(LdsError::UnexpectedTag { found, .. }) if found == "5F2F"
    ));
}

// ---------------------------------------------------------------------------------------------
// Identification and describe

#[test]
fn identify_bsi_files() {
    for n in [1u8, 2, 3, 4, 14, 15] {
        let bytes = vector(&format!("bsi-reference/Datagroup{n}.bin"));
        assert_eq!(
            lds::identify(&bytes),
            Ok(LdsFile::Dg(n)),
            "Datagroup{n}.bin"
        );
    }
    assert_eq!(
        lds::identify(&vector("bsi-reference/EF_SOD.bin")),
        Ok(LdsFile::Sod)
    );
    assert_eq!(
        lds::identify(&vector("bsi-reference/EF_COM.bin")),
        Ok(LdsFile::Com)
    );
    assert_eq!(LdsFile::Sod.name(), "EF.SOD");
    assert_eq!(LdsFile::Dg(14).to_string(), "DG14");
}

#[test]
fn identify_and_describe_dg11_dg16() {
    let dg11 = vector("lds-examples/EF_DG11_9303p10_A5_fixed.bin");
    assert_eq!(lds::identify(&dg11), Ok(LdsFile::Dg(11)));
    let tree = lds::describe(&dg11).expect("describe DG11");
    assert_eq!(tree.len(), 1);
    assert_eq!(tree[0].tag, "6B");
    assert_eq!(tree[0].length, 0x60);
    let tags: Vec<&str> = tree[0].children.iter().map(|n| n.tag.as_str()).collect();
    assert_eq!(tags, ["5C", "5F0E", "5F11", "5F42", "5F12", "5F13"]);
    assert_eq!(
        tree[0].children[0].value_preview.as_deref(),
        Some("5f0e5f115f425f125f13")
    );

    let dg16 = vector("lds-examples/EF_DG16_9303p10_A6.bin");
    assert_eq!(lds::identify(&dg16), Ok(LdsFile::Dg(16)));
    let tree = lds::describe(&dg16).expect("describe DG16");
    assert_eq!(tree[0].tag, "70");
    let tags: Vec<&str> = tree[0].children.iter().map(|n| n.tag.as_str()).collect();
    assert_eq!(tags, ["02", "A1", "A2"]);
    assert_eq!(tree[0].children[1].children.len(), 4);
    assert_eq!(tree[0].children[1].children[0].tag, "5F50");
}

#[test]
fn ef_dir_is_not_an_lds_file() {
    let dir = vector("lds-examples/EF_DIR_9303p10_table31.bin");
    let err = lds::identify(&dir).expect_err("EF.DIR has no LDS tag");
    let text = err.to_string();
    assert!(text.contains("tag 61"), "{text}");
    assert!(text.contains("4F"), "{text}");
    assert!(text.contains("EF.DIR"), "{text}");
    assert!(lds::parse_dg1(&dir).is_err());

    let tree = lds::describe(&dir).expect("describe EF.DIR");
    assert_eq!(tree.len(), 4);
    let aids: Vec<&str> = tree
        .iter()
        .map(|n| n.children[0].value_preview.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        aids,
        [
            "a0000002471001",
            "a0000002472001",
            "a0000002472002",
            "a0000002472003"
        ]
    );
    assert_eq!(tree[3].offset, 33);

    // A tag that is no LDS file at all.
    let err = lds::identify(&[0x30, 0x00]).expect_err("SEQUENCE");
    assert_eq!(
        err,
        LdsError::UnknownFile {
            offset: 0,
            found: "30".to_owned()
        }
    );
}

#[test]
fn describe_dg2_and_sod() {
    let dg2 = vector("bsi-reference/Datagroup2.bin");
    let tree = lds::describe(&dg2).expect("describe DG2");
    let bit = &tree[0].children[0].children[1];
    assert_eq!(bit.tag, "7F60");
    assert_eq!(bit.children[1].tag, "5F2E");
    assert_eq!(bit.children[1].length, 0x3AC5);
    assert_eq!(
        bit.children[1].value_preview.as_deref(),
        Some("464143003031300000003ac500010000")
    );
    assert!(lds::describe(&vector("bsi-reference/EF_SOD.bin")).is_ok());
    let deep = lds::describe(&vector("lds-examples/ICAO_39794_5_AP_DG2_AllFields.dat"))
        .expect("describe 39794-5 DG2");
    assert_eq!(deep[0].children[0].children[1].children[1].tag, "7F2E");
    // Padding at the end is skipped, not described.
    let mut padded = vector("lds-examples/EF_COM_9303p10.bin");
    padded.extend([0; 5]);
    assert_eq!(lds::describe(&padded).expect("padded").len(), 1);
    // Serializes for reports.
    fn count(nodes: &[TlvNode]) -> usize {
        nodes.iter().map(|n| 1 + count(&n.children)).sum()
    }
    assert!(count(&tree) > 8);
}

#[test]
fn describe_depth_is_bounded() {
    // 40 nested SEQUENCEs.
    let mut bytes = vec![0x05, 0x00];
    for _ in 0..40 {
        let mut outer = vec![0x30, bytes.len() as u8];
        outer.extend(bytes);
        bytes = outer;
    }
    assert!(matches!(
        lds::describe(&bytes),
        Err(LdsError::TooDeep { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Robustness

fn samples() -> Vec<Vec<u8>> {
    [
        "lds-examples/EF_COM_9303p10.bin",
        "lds-examples/EF_DG1_TD2_UTO_ERIKSSON.bin",
        "lds-examples/EF_DG2_ISO19794_9303p10_example.bin",
        "lds-examples/ICAO_39794_5_AP_DG2_AllFields.dat",
        "lds-examples/ICAO_39794_5_AP_DG2_MandFields.dat",
        "lds-examples/ISO19794_Test1_Data.bin",
        "lds-examples/EF_DG11_9303p10_A5_fixed.bin",
        "lds-examples/EF_DG16_9303p10_A6.bin",
        "lds-examples/EF_DIR_9303p10_table31.bin",
        "bsi-reference/EF_COM.bin",
        "bsi-reference/Datagroup1.bin",
        "bsi-reference/Datagroup2.bin",
    ]
    .iter()
    .map(|p| vector(p))
    .collect()
}

fn exercise(bytes: &[u8]) {
    let _ = lds::identify(bytes);
    let _ = EfCom::parse(bytes);
    let _ = lds::parse_dg1(bytes);
    let _ = lds::parse_dg2(bytes);
    let _ = lds::parse_iso19794_5(bytes);
    let _ = lds::describe(bytes);
    let _ = lds::image_dimensions(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_files_never_panic(
        index in 0usize..12,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = samples()[index].clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            let len = cut.index(bytes.len() + 1);
            bytes.truncate(len);
        }
        exercise(&bytes);
    }

    #[test]
    fn header_flips_in_dg2_never_panic(
        index in 0usize..3,
        at in 0usize..120,
        value in any::<u8>(),
    ) {
        // Concentrate mutations on the headers, where the parsers make their decisions.
        let files = [
            "lds-examples/EF_DG2_ISO19794_9303p10_example.bin",
            "bsi-reference/Datagroup2.bin",
            "lds-examples/ICAO_39794_5_AP_DG2_AllFields.dat",
        ];
        let mut bytes = vector(files[index]);
        bytes[at] = value;
        exercise(&bytes);
        // The same file cut right after the mutation.
        exercise(&bytes[..at + 1]);
    }

    #[test]
    fn jpeg_headers_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF];
        jpeg.extend(tail);
        let _ = lds::image_dimensions(&jpeg);
        let _ = FaceImage::from_image(jpeg.clone());
        let mut jp2 = vec![0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20];
        jp2.extend(jpeg.iter().skip(3));
        let _ = lds::image_dimensions(&jp2);
    }
}
