//! The client against a real Azurite (started by each test on a port of its own).

use thinkube_blob::azurite::Azurite;
use thinkube_blob::{BlobError, Client, Condition, Credential, LeaseState, Location};

const A: &str = "00000000-0000-4000-8000-00000000000a";
const B: &str = "00000000-0000-4000-8000-00000000000b";

fn azurite() -> (tempfile::TempDir, Azurite) {
    let dir = tempfile::tempdir().unwrap();
    let a = Azurite::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, a)
}

#[test]
fn writes_are_conditional_and_a_stale_etag_is_refused() {
    let (_dir, az) = azurite();
    let c = az.client("states");
    assert!(
        c.get("s.json").unwrap().is_none(),
        "no container yet: nothing"
    );
    c.create_container().unwrap();
    c.create_container().unwrap(); // again: it exists, fine
    let first = c.put("s.json", b"one".to_vec(), Condition::Absent).unwrap();
    assert!(matches!(
        c.put("s.json", b"again".to_vec(), Condition::Absent),
        Err(BlobError::ConditionNotMet { .. })
    ));
    let second = c
        .put("s.json", b"two".to_vec(), Condition::Match(&first))
        .unwrap();
    assert_ne!(first, second);
    // A writer holding the first ETag cannot overwrite the newer state.
    assert!(matches!(
        c.put("s.json", b"stale".to_vec(), Condition::Match(&first)),
        Err(BlobError::ConditionNotMet { .. })
    ));
    let read = c.get("s.json").unwrap().unwrap();
    assert_eq!(
        (read.bytes.as_slice(), read.etag.as_str()),
        (&b"two"[..], second.as_str())
    );
}

#[test]
fn a_lease_excludes_others_until_released_or_broken() {
    let (_dir, az) = azurite();
    let c = az.client("locks");
    c.create_container().unwrap();
    assert!(c.create_if_absent("lock", false).unwrap());
    assert!(!c.create_if_absent("lock", false).unwrap());
    c.acquire_lease("lock", 15, A).unwrap();
    assert!(matches!(
        c.acquire_lease("lock", 15, B),
        Err(BlobError::LeaseHeld { .. })
    ));
    assert!(
        !c.create_if_absent("lock", false).unwrap(),
        "a leased blob exists too"
    );
    let meta = [("holder".to_string(), "eyJwaWQiOjF9".to_string())].into();
    assert!(matches!(
        c.set_metadata("lock", &meta, Some(B)),
        Err(BlobError::LeaseLost { .. })
    ));
    c.set_metadata("lock", &meta, Some(A)).unwrap();
    let p = c.properties("lock").unwrap().unwrap();
    assert_eq!(p.lease, LeaseState::Leased);
    assert_eq!(p.metadata, meta);
    c.renew_lease("lock", A).unwrap();
    c.release_lease("lock", A).unwrap();
    assert_eq!(
        c.properties("lock").unwrap().unwrap().lease,
        LeaseState::Available
    );
    c.acquire_lease("lock", 15, B).unwrap();
    c.break_lease("lock").unwrap();
    assert_eq!(
        c.properties("lock").unwrap().unwrap().lease,
        LeaseState::Broken
    );
    assert!(matches!(
        c.renew_lease("lock", B),
        Err(BlobError::LeaseLost { .. })
    ));
    c.acquire_lease("lock", 15, A).unwrap();
    assert!(c.properties("nothing").unwrap().is_none());
}

#[test]
fn an_append_blob_keeps_every_append_in_order() {
    let (_dir, az) = azurite();
    let c = az.client("events");
    c.create_container().unwrap();
    assert!(c.create_if_absent("e.jsonl", true).unwrap());
    for i in 0..3 {
        c.append("e.jsonl", format!("{{\"seq\":{i}}}\n").into_bytes())
            .unwrap();
    }
    assert!(!c.create_if_absent("e.jsonl", true).unwrap());
    let text = String::from_utf8(c.get("e.jsonl").unwrap().unwrap().bytes).unwrap();
    assert_eq!(text, "{\"seq\":0}\n{\"seq\":1}\n{\"seq\":2}\n");
    // Listed by prefix, in order, names unescaped.
    for name in ["runs/b&1.json", "runs/a.json", "other"] {
        c.put(name, b"{}".to_vec(), Condition::Any).unwrap();
    }
    assert_eq!(c.list("runs/").unwrap(), ["runs/a.json", "runs/b&1.json"]);
    assert!(c.list("none/").unwrap().is_empty());
}

#[test]
fn a_wrong_key_is_denied_and_a_stopped_service_is_unreachable() {
    let (_dir, mut az) = azurite();
    let wrong = Client::new(
        Location {
            endpoint: az.endpoint(),
            account: thinkube_blob::DEV_ACCOUNT.into(),
            container: "ccc".into(),
        },
        Credential::shared_key("d3Jvbmcta2V5").unwrap(),
    )
    .unwrap();
    let e = wrong.create_container().unwrap_err();
    assert!(matches!(e, BlobError::Denied { status: 403, .. }), "{e:?}");
    assert!(e.to_string().contains("Check the key or SAS token"), "{e}");
    let c = az.client("ccc");
    c.create_container().unwrap();
    let etag = c.put("s", b"kept".to_vec(), Condition::Absent).unwrap();
    drop((c, wrong));
    az.kill_now();
    let c = az.client("ccc");
    let e = c.get("s").unwrap_err();
    assert!(matches!(e, BlobError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("cannot reach Azure Storage"), "{e}");
    // Back (with its data, or without what it had not saved yet: see `kill_now`):
    // the same client answers again.
    az.restart().unwrap();
    match c.get("s").unwrap() {
        Some(read) => assert_eq!((read.bytes, read.etag), (b"kept".to_vec(), etag)),
        None => assert!(c.create_container().is_ok()),
    }
}

/// A SAS token is a secret: no error names it, whether the service cannot be
/// reached or refuses it.
#[test]
fn a_sas_token_never_appears_in_an_error() {
    let (_dir, az) = azurite();
    let sas = Credential::sas("sv=2025-01-05&ss=b&srt=sco&sp=rwl&sig=SECRETSIGNATURE").unwrap();
    for endpoint in [
        az.endpoint(),
        format!("http://127.0.0.1:1/{}", thinkube_blob::DEV_ACCOUNT),
    ] {
        let c = Client::new(
            Location {
                endpoint,
                account: thinkube_blob::DEV_ACCOUNT.into(),
                container: "ccc".into(),
            },
            sas.clone(),
        )
        .unwrap();
        let e = c.get("s").unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(!text.contains("SECRETSIGNATURE"), "{text}");
        assert!(
            matches!(e, BlobError::Denied { .. } | BlobError::Unreachable { .. }),
            "{e:?}"
        );
    }
}
