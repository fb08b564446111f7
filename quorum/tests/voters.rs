//! The `--controller-voters` syntax: `id@host:port,...`.

use quorum::{parse_voters, Voter, VotersParseError};

#[test]
fn parses_ids_and_addresses_in_order() {
    let voters = parse_voters("1@127.0.0.1:9093, 2@127.0.0.2:9093,3@[::1]:9094").unwrap();
    assert_eq!(
        voters,
        vec![
            Voter {
                id: 1,
                address: "127.0.0.1:9093".parse().unwrap()
            },
            Voter {
                id: 2,
                address: "127.0.0.2:9093".parse().unwrap()
            },
            Voter {
                id: 3,
                address: "[::1]:9094".parse().unwrap()
            },
        ]
    );
    assert_eq!(parse_voters("7@localhost:9093").unwrap()[0].id, 7);
}

#[test]
fn refuses_malformed_lists() {
    assert_eq!(parse_voters(""), Err(VotersParseError::Empty));
    assert_eq!(parse_voters(" , "), Err(VotersParseError::Empty));
    assert_eq!(
        parse_voters("127.0.0.1:9093"),
        Err(VotersParseError::Syntax("127.0.0.1:9093".into()))
    );
    assert_eq!(
        parse_voters("1@"),
        Err(VotersParseError::Syntax("1@".into()))
    );
    assert_eq!(
        parse_voters("1@127.0.0.1"),
        Err(VotersParseError::Syntax("1@127.0.0.1".into()))
    );
    assert_eq!(
        parse_voters("0@127.0.0.1:1"),
        Err(VotersParseError::BadId("0@127.0.0.1:1".into()))
    );
    assert_eq!(
        parse_voters("x@127.0.0.1:1"),
        Err(VotersParseError::BadId("x@127.0.0.1:1".into()))
    );
    assert_eq!(
        parse_voters("-1@127.0.0.1:1"),
        Err(VotersParseError::BadId("-1@127.0.0.1:1".into()))
    );
    assert_eq!(
        parse_voters("1@127.0.0.1:99999"),
        Err(VotersParseError::BadAddress("1@127.0.0.1:99999".into()))
    );
    assert_eq!(
        parse_voters("1@127.0.0.1:1,1@127.0.0.2:1"),
        Err(VotersParseError::DuplicateId(1))
    );
    assert_eq!(
        parse_voters("1@127.0.0.1:1,2@127.0.0.1:1"),
        Err(VotersParseError::DuplicateAddress(
            "127.0.0.1:1".parse().unwrap()
        ))
    );
    let sixteen: Vec<String> = (1..=16)
        .map(|id| format!("{id}@127.0.0.1:{}", 9000 + id))
        .collect();
    assert_eq!(
        parse_voters(&sixteen.join(",")),
        Err(VotersParseError::TooMany)
    );
}
