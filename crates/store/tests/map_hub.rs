#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use openhive_store::map_hub::*;
use openhive_store::sync_state::{self, PeerSource};
use openhive_store::{Conn, StoreError};

fn swarm_of(n: u8) -> NewSwarm {
    NewSwarm {
        name: format!("s{n}"),
        description: String::new(),
        instance_id: format!("inst_{n:012}"),
        signing_key: format!("key{n}"),
        sync_endpoint: format!("http://s{n}/sync/v1"),
        map_endpoint: None,
        capabilities: r#"{"hive_sync":true}"#.into(),
        token_hash: format!("hash{n}"),
    }
}

fn reg(c: &Conn<'_>, n: u8, now: i64) -> SwarmRow {
    register(c, &swarm_of(n), now).unwrap().0
}

#[test]
fn preauth_keys_are_spent_once_and_expire() {
    let (_d, s) = common::open_store();
    s.write_blocking(|c| {
        let k = create_preauth_key(c, "h1", 2, 1000, 10)?;
        assert_eq!(k.uses_left, 2);
        assert!(spend_preauth_key(c, "h1", 20)?.is_ok());
        assert!(spend_preauth_key(c, "h1", 21)?.is_ok());
        assert_eq!(spend_preauth_key(c, "h1", 22)?, Err(PreauthRefusal::UsedUp));
        assert_eq!(
            spend_preauth_key(c, "nope", 22)?,
            Err(PreauthRefusal::Unknown)
        );
        create_preauth_key(c, "h2", 5, 100, 10)?;
        assert_eq!(
            spend_preauth_key(c, "h2", 100)?,
            Err(PreauthRefusal::Expired)
        );
        let listed = list_preauth_keys(c)?;
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed.iter().find(|r| r.id == k.id).unwrap().last_used_at,
            Some(21)
        );
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn registration_is_one_swarm_per_instance_and_endpoint() {
    let (_d, s) = common::open_store();
    s.write_blocking(|c| {
        let (a, created) = register(c, &swarm_of(1), 10)?;
        assert!(created);
        assert_eq!(a.status, ONLINE);
        assert_eq!(a.capabilities, r#"{"hive_sync":true}"#);
        // Same instance again: same swarm, new token.
        let mut again = swarm_of(1);
        again.token_hash = "hash1b".into();
        let (a2, created) = register(c, &again, 11)?;
        assert!(!created);
        assert_eq!(a2.id, a.id);
        assert!(swarm_by_token(c, "hash1")?.is_none());
        assert_eq!(swarm_by_token(c, "hash1b")?.unwrap().id, a.id);
        // Another instance on the same endpoint, or the same instance with another key.
        let mut thief = swarm_of(2);
        thief.sync_endpoint = a.sync_endpoint.clone();
        assert!(matches!(
            register(c, &thief, 12),
            Err(StoreError::Conflict(_))
        ));
        let mut rekeyed = swarm_of(1);
        rekeyed.signing_key = "other".into();
        assert!(matches!(
            register(c, &rekeyed, 12),
            Err(StoreError::Conflict(_))
        ));
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn peers_share_hives_and_events_reach_the_swarms_concerned() {
    let (_d, s) = common::open_store();
    s.write_blocking(|c| {
        let a = reg(c, 1, 10);
        let b = reg(c, 2, 10);
        let x = reg(c, 3, 10);
        assert!(join_hive(c, &a.id, "eng", 11)?);
        assert!(!join_hive(c, &a.id, "eng", 11)?);
        join_hive(c, &a.id, "lab", 11)?;
        join_hive(c, &x.id, "other", 11)?;
        assert!(peers_of(c, &a.id)?.is_empty());
        let (_, since_b) = events_for(c, &b.id, 0, 100)?;
        join_hive(c, &b.id, "eng", 12)?;
        join_hive(c, &b.id, "lab", 12)?;
        let peers = peers_of(c, &a.id)?;
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].swarm.id, b.id);
        assert_eq!(peers[0].shared_hives, vec!["eng", "lab"]);
        // A hears of B's joins; B hears nothing of its own; X, sharing nothing, nothing.
        let (ev, next) = events_for(c, &a.id, 0, 100)?;
        assert_eq!(
            ev.iter()
                .map(|e| (e.kind.as_str(), e.swarm_id.as_str(), e.hive_name.as_deref()))
                .collect::<Vec<_>>(),
            vec![
                (JOINED, b.id.as_str(), Some("eng")),
                (JOINED, b.id.as_str(), Some("lab"))
            ]
        );
        assert_eq!(next, last_event_id(c)?);
        assert!(events_for(c, &b.id, since_b, 100)?.0.is_empty());
        assert!(events_for(c, &x.id, 0, 100)?.0.is_empty());
        // Paging: a limit stops at the last event returned.
        let (one, n1) = events_for(c, &a.id, 0, 1)?;
        assert_eq!((one.len(), n1), (1, one[0].id));
        // Leave, stale, back online.
        assert!(leave_hive(c, &b.id, "lab", 13)?);
        let (ev, next2) = events_for(c, &a.id, next, 100)?;
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, LEFT);
        assert_eq!(peers_of(c, &a.id)?[0].shared_hives, vec!["eng"]);
        assert!(heartbeat(c, &a.id, 100)?);
        let mut stale = vec![b.id.clone(), x.id.clone()];
        stale.sort(); // by id, as `mark_stale` answers (two ids of one millisecond)
        assert_eq!(mark_stale(c, 50, 101)?, stale);
        assert_eq!(swarm(c, &b.id)?.unwrap().status, OFFLINE);
        assert_eq!(swarm(c, &a.id)?.unwrap().status, ONLINE);
        assert!(mark_stale(c, 50, 102)?.is_empty(), "marked once");
        heartbeat(c, &b.id, 103)?;
        let kinds: Vec<String> = events_for(c, &a.id, next2, 100)?
            .0
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, vec![SWARM_OFFLINE, SWARM_ONLINE]);
        // Pruning keeps the newest event, so ids never go back.
        let last = last_event_id(c)?;
        prune_events(c, i64::MAX)?;
        assert_eq!(last_event_id(c)?, last);
        assert!(delete_swarm(c, &b.id, 104)?);
        assert!(peers_of(c, &a.id)?.is_empty());
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn registration_of_the_client_keeps_the_token_and_the_pin() {
    let (_d, s) = common::open_store();
    s.write_blocking(|c| {
        assert!(registration(c, "http://hub")?.is_none());
        let r = Registration {
            hub_url: "http://hub".into(),
            swarm_id: "swarm_1".into(),
            token: "ohmap_secret".into(),
            hub_instance_id: "inst_hub".into(),
            hub_key: "k".into(),
            registered_at: 5,
        };
        put_registration(c, &r)?;
        assert_eq!(registration(c, "http://hub")?, Some(r.clone()));
        assert!(!format!("{r:?}").contains("ohmap_secret"));
        clear_registration_token(c, "http://hub")?;
        let got = registration(c, "http://hub")?.unwrap();
        assert!(got.token.is_empty());
        assert_eq!(got.hub_key, "k");
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn peer_sources_never_downgrade() {
    let (_d, s) = common::open_store();
    s.write_blocking(|c| {
        let (p, _) =
            sync_state::upsert_configured_peer(c, "b", "http://b/sync/v1", PeerSource::Gossip, 1)?;
        assert!(sync_state::raise_source(c, &p.id, PeerSource::Hub)?);
        assert!(!sync_state::raise_source(c, &p.id, PeerSource::Gossip)?);
        assert!(!sync_state::raise_source(c, &p.id, PeerSource::Handshake)?);
        sync_state::upsert_configured_peer(c, "b", "http://b/sync/v1", PeerSource::Api, 2)?;
        assert!(!sync_state::raise_source(c, &p.id, PeerSource::Hub)?);
        assert_eq!(
            sync_state::peer_by_id(c, &p.id)?.unwrap().source,
            PeerSource::Api
        );
        Ok::<_, StoreError>(())
    })
    .unwrap();
}
