//! Page tokens of list RPCs: the (time, id) of the last row of a page, which the next page
//! starts after. Opaque to clients; a token this service did not return is INVALID_ARGUMENT.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::ApiError;

/// The token of a page whose last row is (`at`, `id`).
pub fn token(at: OffsetDateTime, id: Uuid) -> String {
    format!("{}.{id}", at.unix_timestamp_nanos())
}

/// The (time, id) a token names; `None` for the empty token (the first page).
pub fn parse(token: &str) -> Result<Option<(OffsetDateTime, Uuid)>, ApiError> {
    let token = token.trim();
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::InvalidArgument("page_token is not one this service returned".into());
    let (nanos, id) = token.split_once('.').ok_or_else(bad)?;
    let nanos: i128 = nanos.parse().map_err(|_| bad())?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(Some((at, id)))
}

/// One page of `rows`, which were read with a limit of `size + 1`: the first `size` and the
/// token of the next page, empty when no row beyond them came back (so a list whose length is
/// a multiple of `size` ends without an empty page). `key` gives a row's (time, id).
pub fn split<T>(
    mut rows: Vec<T>,
    size: usize,
    key: impl Fn(&T) -> (OffsetDateTime, Uuid),
) -> (Vec<T>, String) {
    let more = rows.len() > size;
    rows.truncate(size);
    let next = match rows.last() {
        Some(last) if more => {
            let (at, id) = key(last);
            token(at, id)
        }
        _ => String::new(),
    };
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_ends_the_list_only_when_nothing_lies_beyond() {
        let rows: Vec<(OffsetDateTime, Uuid)> = (0..3)
            .map(|i| {
                (
                    OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(i),
                    Uuid::new_v4(),
                )
            })
            .collect();
        let (page, next) = split(rows.clone(), 2, |r| *r);
        assert_eq!(page, rows[..2]);
        assert_eq!(parse(&next).unwrap(), Some(rows[1]));
        let (page, next) = split(rows[..2].to_vec(), 2, |r| *r);
        assert_eq!(page.len(), 2);
        assert!(next.is_empty(), "exactly a page: no empty page after it");
        let (page, next) = split(Vec::<(OffsetDateTime, Uuid)>::new(), 2, |r| *r);
        assert!(page.is_empty() && next.is_empty());
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let now = OffsetDateTime::now_utc();
        let id = Uuid::new_v4();
        assert_eq!(parse(&token(now, id)).unwrap(), Some((now, id)));
        assert_eq!(parse("").unwrap(), None);
        for bad in [
            "x",
            "1.2",
            "abc.",
            &format!("99999999999999999999999999.{id}"),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
