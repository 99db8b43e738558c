#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use openhive_store::agents::*;
use openhive_store::{Store, StoreError};

fn store() -> (common::Scratch, Store) {
    common::open_store()
}

fn new(id: &str, name: &str, key: Option<&str>) -> NewLocalAgent {
    NewLocalAgent {
        id: id.into(),
        name: name.into(),
        instance_id: "inst_a".into(),
        api_key_hash: key.map(Into::into),
        description: String::new(),
        metadata: None,
        is_admin: false,
    }
}

#[test]
fn create_lookup_and_conflict() {
    let (_d, s) = store();
    s.write_blocking(|tx| {
        let a = create_local(tx, &new("agt_1", "alice", Some("h1")), 5)?;
        assert_eq!(a.name, "alice");
        assert!(a.is_local && a.is_verified() && !a.is_admin);
        assert_eq!(a.created_at, 5);
        let e = create_local(tx, &new("agt_2", "alice", Some("h2")), 6).err();
        assert!(matches!(e, Some(StoreError::Conflict(_))), "{e:?}");
        assert_eq!(get_by_api_key_hash(tx, "h1")?.unwrap().id, "agt_1");
        assert!(get_by_api_key_hash(tx, "h2")?.is_none());
        assert_eq!(get_by_name(tx, "alice")?.unwrap().id, "agt_1");
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn follows_and_counts() {
    let (_d, s) = store();
    s.write_blocking(|tx| {
        create_local(tx, &new("agt_1", "alice", None), 1)?;
        create_local(tx, &new("agt_2", "bob", None), 1)?;
        assert!(follow(tx, "agt_1", "agt_2", 2)?);
        assert!(!follow(tx, "agt_1", "agt_2", 3)?);
        assert!(is_following(tx, "agt_1", "agt_2")?);
        assert_eq!(follow_counts(tx, "agt_2")?, (1, 0));
        assert_eq!(followers(tx, "agt_2", 10, 0)?.data[0].id, "agt_1");
        assert_eq!(following(tx, "agt_1", 10, 0)?.total, 1);
        delete_local(tx, "agt_1")?;
        assert_eq!(follow_counts(tx, "agt_2")?, (0, 0));
        assert!(!unfollow(tx, "agt_1", "agt_2")?);
        let st = stats(tx)?;
        assert_eq!((st.agents_total, st.hives_total, st.posts_total), (1, 0, 0));
        Ok::<_, StoreError>(())
    })
    .unwrap();
}
