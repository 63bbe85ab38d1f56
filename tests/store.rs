//! The store, one suite run against SQLite and against PostgreSQL: upserts, gone-marking only in complete
//! scopes, resurrection, history across a restart, run rows; and a clear error for an unusable path.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use cloudwarden::store::{DeliveryState, RunOutcome, Store};
use collector::{Details, InventoryReport, Resource, Scope};
use rules::finding::{Finding, FindingKind};

fn resource(arn: &str, account: &str, region: &str, resource_type: &str, tags: &[(&str, &str)]) -> Resource {
    Resource {
        arn: arn.into(),
        resource_type: resource_type.into(),
        account_id: account.into(),
        region: region.into(),
        id: arn.rsplit(['/', ':']).next().unwrap().into(),
        name: None,
        state: Some("running".into()),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        created_at: None,
        details: Details::Tagged,
    }
}

fn scope(account: &str, region: Option<&str>, t: &str) -> Scope {
    Scope { account_id: account.into(), region: region.map(str::to_string), resource_type: t.into() }
}

const A: &str = "111111111111";

fn i1() -> Resource {
    resource("arn:aws:ec2:us-east-1:111111111111:instance/i-1", A, "us-east-1", "ec2:instance", &[("team", "web")])
}
fn i2() -> Resource {
    resource(
        "arn:aws:ec2:us-east-1:111111111111:instance/i-2",
        A,
        "us-east-1",
        "ec2:instance",
        &[("aws:cloudformation:stack-name", "x")],
    )
}
fn v1() -> Resource {
    resource("arn:aws:ec2:eu-west-1:111111111111:volume/vol-1", A, "eu-west-1", "ec2:volume", &[])
}
fn b1() -> Resource {
    resource("arn:aws:s3:::bucket-1", A, "eu-west-1", "s3:bucket", &[("team", "data")])
}

fn report(resources: Vec<Resource>, complete: Vec<Scope>) -> InventoryReport {
    InventoryReport {
        resources,
        complete_scopes: complete,
        failures: vec![],
        accounts: vec![("main".into(), A.into())],
        tagging_complete: vec![],
    }
}

fn all_scopes() -> Vec<Scope> {
    vec![
        scope(A, Some("us-east-1"), "ec2:instance"),
        scope(A, Some("eu-west-1"), "ec2:volume"),
        scope(A, None, "s3:bucket"),
    ]
}

async fn suite(url: &str) {
    let roles = BTreeMap::from([("main".to_string(), None)]);
    let t1: DateTime<Utc> = "2026-11-01T10:00:00Z".parse().unwrap();
    let store = Store::connect(url, 2).await.unwrap();

    let w = store.record_inventory(&report(vec![i1(), i2(), v1(), b1()], all_scopes()), &roles, t1).await.unwrap();
    assert_eq!((w.upserted, w.gone), (4, 0));
    let counts = store.inventory_counts().await.unwrap();
    let flat: Vec<_> =
        counts.iter().map(|c| (c.region.as_str(), c.resource_type.as_str(), c.total, c.untagged)).collect();
    // i-2 only has a system tag, so it counts as untagged.
    assert_eq!(
        flat,
        [("eu-west-1", "ec2:volume", 1, 1), ("eu-west-1", "s3:bucket", 1, 0), ("us-east-1", "ec2:instance", 2, 1)]
    );

    // Run rows.
    let run = store.begin_run("inventory", t1).await.unwrap();
    let open = store.begin_run("inventory", t1 + Duration::seconds(1)).await.unwrap();
    store.finish_run(run, t1 + Duration::seconds(3), RunOutcome::Success, 12, 4, None).await.unwrap();
    store.close().await;

    // A second process on the same database leaves the first one's open run alone while it beats...
    let second = Store::connect(url, 2).await.unwrap();
    assert_eq!(second.close_abandoned_runs(t1 + Duration::seconds(5)).await.unwrap(), 0, "the run is young");
    let beating = Store::connect(url, 2).await.unwrap();
    // (a handle of its own opens its own runs; the first process's heartbeat is what counts)
    assert_eq!(beating.heartbeat(t1 + Duration::seconds(80)).await.unwrap(), 0, "not its run");
    assert_eq!(second.close_abandoned_runs(t1 + Duration::seconds(60)).await.unwrap(), 0, "within 90 s");
    let own = second.begin_run("terraform", t1).await.unwrap();
    // ...and never closes its own, however old.
    assert_eq!(second.close_abandoned_runs(t1 + Duration::hours(1)).await.unwrap(), 1, "only the other one");
    assert_eq!(second.heartbeat(t1 + Duration::hours(1)).await.unwrap(), 1);
    second.finish_run(own, t1 + Duration::hours(1), RunOutcome::Failed, 0, 0, Some("test")).await.unwrap();
    second.close().await;
    beating.close().await;

    // A restart keeps everything; the run left open by the dead process was closed as failed.
    let store = Store::connect(url, 2).await.unwrap();
    assert_eq!(store.close_abandoned_runs(t1 + Duration::hours(2)).await.unwrap(), 0, "already closed");
    let runs = store.runs("inventory", 10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| (r.id, r.outcome)).collect::<Vec<_>>(),
        [(open, RunOutcome::Failed), (run, RunOutcome::Success)]
    );
    assert_eq!((runs[1].api_calls, runs[1].items), (12, 4));
    assert!(runs[0].error.as_deref().unwrap().starts_with("abandoned"));
    let last = store.last_successes().await.unwrap();
    assert_eq!(last, [("inventory".to_string(), t1 + Duration::seconds(3), 3.0)]);
    assert_eq!(store.resources().await.unwrap().len(), 4);

    // i-1 vanished from a complete scope: gone. v-1 is missing too, but its scope failed: kept.
    // The bucket is listed per account (no region) and still there.
    let t2 = t1 + Duration::minutes(5);
    let scopes = vec![scope(A, Some("us-east-1"), "ec2:instance"), scope(A, None, "s3:bucket")];
    let w = store.record_inventory(&report(vec![i2(), b1()], scopes), &roles, t2).await.unwrap();
    assert_eq!((w.upserted, w.gone), (2, 1));
    let by_arn: BTreeMap<String, _> =
        store.resources().await.unwrap().into_iter().map(|r| (r.arn.clone(), r)).collect();
    assert_eq!(by_arn[&i1().arn].gone_at, Some(t2));
    assert_eq!(by_arn[&v1().arn].gone_at, None);
    assert_eq!(by_arn[&v1().arn].last_seen, t1);
    assert_eq!(by_arn[&i2().arn].last_seen, t2);
    let total: i64 = store.inventory_counts().await.unwrap().iter().map(|c| c.total).sum();
    assert_eq!(total, 3);

    // It comes back: alive again, first sighting unchanged, tags refreshed.
    let t3 = t2 + Duration::minutes(5);
    let mut back = i1();
    back.tags.insert("env".into(), "prod".into());
    store.record_inventory(&report(vec![back, i2(), v1(), b1()], all_scopes()), &roles, t3).await.unwrap();
    let again = store.resources().await.unwrap().into_iter().find(|r| r.arn == i1().arn).unwrap();
    assert_eq!((again.first_seen, again.last_seen, again.gone_at), (t1, t3, None));
    assert_eq!(again.tags.get("env").map(String::as_str), Some("prod"));

    // Types only the Tagging API lists, in eu-west-2: where it answered fully, one not listed is gone, even the
    // last of its type; where it failed, nothing changes; a described type there waits for its own scope.
    let queue = resource("arn:aws:sqs:eu-west-2:111111111111:jobs", A, "eu-west-2", "sqs:queue", &[("team", "web")]);
    let machine = resource(
        "arn:aws:states:eu-west-2:111111111111:stateMachine:etl",
        A,
        "eu-west-2",
        "states:stateMachine",
        &[("team", "data")],
    );
    let volume = resource("arn:aws:ec2:eu-west-2:111111111111:volume/vol-w2", A, "eu-west-2", "ec2:volume", &[]);
    let tagged_in = |resources: Vec<Resource>, answered: bool| InventoryReport {
        tagging_complete: if answered { vec![(A.to_string(), "eu-west-2".to_string())] } else { vec![] },
        ..report(resources, vec![])
    };
    let at = |s: i64| t3 + Duration::seconds(s);
    let gone = |w: cloudwarden::store::InventoryWrite| w.gone;
    let all = [queue.clone(), machine.clone(), volume.clone()].to_vec();
    assert_eq!(gone(store.record_inventory(&tagged_in(all, true), &roles, at(10)).await.unwrap()), 0);
    assert_eq!(gone(store.record_inventory(&tagged_in(vec![machine.clone()], true), &roles, at(20)).await.unwrap()), 1);
    assert_eq!(gone(store.record_inventory(&tagged_in(vec![], false), &roles, at(30)).await.unwrap()), 0);
    assert_eq!(gone(store.record_inventory(&tagged_in(vec![], true), &roles, at(40)).await.unwrap()), 1);
    let by_arn: BTreeMap<String, _> =
        store.resources().await.unwrap().into_iter().map(|r| (r.arn.clone(), r)).collect();
    assert_eq!(by_arn[&queue.arn].gone_at, Some(at(20)));
    assert_eq!(by_arn[&machine.arn].gone_at, Some(at(40)));
    assert_eq!(by_arn[&volume.arn].gone_at, None);

    // A large write goes through in chunks.
    let many: Vec<Resource> = (0..1234)
        .map(|i| {
            resource(&format!("arn:aws:ec2:us-east-1:111111111111:volume/vol-x{i}"), A, "us-east-1", "ec2:volume", &[])
        })
        .collect();
    let w = store
        .record_inventory(
            &report(many, vec![scope(A, Some("us-east-1"), "ec2:volume")]),
            &roles,
            t3 + Duration::minutes(1),
        )
        .await
        .unwrap();
    assert_eq!(w.upserted, 1234);

    // Report deliveries: opened once per week and delivery; a delivered row never changes again.
    let t4 = t3 + Duration::hours(1);
    let rows = store
        .open_report_deliveries("weekly", "2026-W44", &[("mail", "email"), ("files", "directory")], t4)
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| (r.delivery.as_str(), r.state)).collect::<Vec<_>>(),
        [("files", DeliveryState::Pending), ("mail", DeliveryState::Pending)]
    );
    assert!(store.record_report_attempt("weekly", "2026-W44", "mail", t4, Err("relay refused")).await.unwrap());
    assert!(store.record_report_attempt("weekly", "2026-W44", "files", t4, Ok(("/srv/r", None))).await.unwrap());
    let t5 = t4 + Duration::minutes(1);
    assert!(store
        .record_report_attempt("weekly", "2026-W44", "mail", t5, Ok(("a@example.com", Some("250 OK"))))
        .await
        .unwrap());
    // Delivered: a later attempt (success or failure) changes nothing; an unknown delivery neither.
    assert!(!store.record_report_attempt("weekly", "2026-W44", "mail", t5, Err("late")).await.unwrap());
    assert!(!store.record_report_attempt("weekly", "2026-W44", "nobody", t5, Ok(("x", None))).await.unwrap());
    // Opening again (a restart, a new delivery) keeps what is there.
    let rows = store
        .open_report_deliveries(
            "weekly",
            "2026-W44",
            &[("mail", "email"), ("files", "directory"), ("chat", "webhook")],
            t5,
        )
        .await
        .unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.delivery.as_str(),
                r.state,
                r.attempts,
                r.first_seen,
                r.delivered,
                r.last_error.as_deref(),
                r.response.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("chat", DeliveryState::Pending, 0, t5, None, None, None),
            ("files", DeliveryState::Delivered, 1, t4, Some(t4), None, None),
            ("mail", DeliveryState::Delivered, 2, t4, Some(t5), None, Some("250 OK")),
        ]
    );
    store.open_report_deliveries("weekly", "2026-W45", &[("mail", "email")], t5).await.unwrap();
    let all = store.report_deliveries("weekly", None).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.period.as_str()).collect::<Vec<_>>(),
        ["2026-W45", "2026-W44", "2026-W44", "2026-W44"]
    );
    assert!(store.report_deliveries("monthly", None).await.unwrap().is_empty());

    // Cost Explorer pages that repeat a key (day, dimension, group, metric) in one fetch: each statement sends a
    // key once (PostgreSQL refuses an upsert touching one row twice), and the last one fetched wins.
    use collector::aws::costexplorer::{CostFetch, CostMetric, CostRow};
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    let row = |d: &str, key: &str, amount: &str| CostRow {
        day: day(d),
        dimension: "service".into(),
        key: key.into(),
        metric: CostMetric::Unblended,
        amount: amount.parse().unwrap(),
        unit: "USD".into(),
        estimated: false,
    };
    let fetch = CostFetch {
        rows: vec![
            row("2026-11-01", "Amazon EC2", "1.00"),
            row("2026-11-01", "Amazon S3", "2.00"),
            row("2026-11-01", "Amazon EC2", "3.00"),
            row("2026-11-02", "Amazon EC2", "4.00"),
            row("2026-11-01", "Amazon EC2", "5.00"),
        ],
        requests: 2,
        account_names: BTreeMap::new(),
    };
    store.record_costs(&fetch, &["service".into()], day("2026-11-01"), day("2026-11-03"), t5).await.unwrap();
    let stored: Vec<_> = store
        .cost_days(CostMetric::Unblended, day("2026-11-01"), day("2026-11-03"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.day.to_string(), c.key, c.amount.to_string()))
        .collect();
    let want = [
        ("2026-11-01", "Amazon EC2", "5.00"),
        ("2026-11-01", "Amazon S3", "2.00"),
        ("2026-11-02", "Amazon EC2", "4.00"),
    ];
    assert_eq!(stored, want.map(|(d, k, a)| (d.to_string(), k.to_string(), a.to_string())));

    // Findings: an evaluation that changes nothing rewrites no row, yet a finding's last sighting and its
    // evaluations in a row follow its kind's evaluations; a change rewrites the row; a row left alone (its scope
    // unreadable) stops following, with its values as they were; a resolved one keeps its last sighting.
    let kinds = [FindingKind::Cleanup];
    let volume = common::volume_finding(FindingKind::Cleanup, "1");
    let e = |n: i64| t5 + Duration::minutes(10 * n);
    let stored = || async {
        let row = sqlx::query(
            "SELECT last_seen_ms, evaluations FROM findings WHERE kind = 'cleanup' AND resolved_at_ms IS NULL",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        use sqlx::Row;
        (row.try_get::<i64, _>(0).unwrap(), row.try_get::<i64, _>(1).unwrap())
    };
    let now = || async {
        let filter = cloudwarden::store::FindingFilter { kind: Some(FindingKind::Cleanup), include_resolved: true };
        let f = store.findings(filter).await.unwrap();
        let c = store.cleanup_candidates().await.unwrap();
        let evaluations = c.iter().find(|c| c.arn == *volume.subject).map(|c| c.evaluations);
        (f.iter().map(|f| (f.last_seen, f.resolved_at)).collect::<Vec<_>>(), evaluations)
    };
    for n in 1..=3 {
        store.record_findings(&kinds, std::slice::from_ref(&volume), e(n)).await.unwrap();
    }
    assert_eq!(stored().await, (e(1).timestamp_millis(), 1), "unchanged: the row was written once");
    assert_eq!(now().await, (vec![(e(3), None)], Some(3)));
    let mut changed = volume.clone();
    changed.message = "changed".into();
    store.record_findings(&kinds, std::slice::from_ref(&changed), e(4)).await.unwrap();
    assert_eq!(stored().await, (e(4).timestamp_millis(), 4), "changed: rewritten");
    let unreadable = [(A.to_string(), "eu-west-1".to_string())];
    for n in 5..=6 {
        let w = store.record_findings_except(&kinds, &unreadable, &[], e(n)).await.unwrap();
        assert_eq!((w.opened, w.refreshed, w.resolved), (0, 0, 0));
    }
    assert_eq!(now().await, (vec![(e(4), None)], Some(4)), "left alone: as it was");
    store.record_findings(&kinds, std::slice::from_ref(&changed), e(7)).await.unwrap();
    assert_eq!(now().await, (vec![(e(7), None)], Some(5)));
    store.record_findings(&kinds, std::slice::from_ref(&changed), e(8)).await.unwrap();
    store.record_findings(&kinds, &[], e(9)).await.unwrap();
    assert_eq!(now().await, (vec![(e(8), Some(e(9)))], None), "resolved: last seen at the evaluation before");

    // Retention batches on this backend: every table's statement runs; of the runs, all but each job's newest
    // go, a batch at a time.
    let far = t1 + Duration::days(3650);
    assert_eq!(store.prune_batch(cloudwarden::store::Pruned::Runs, far, 1).await.unwrap(), 1);
    assert_eq!(store.prune_batch(cloudwarden::store::Pruned::Runs, far, 1).await.unwrap(), 0);
    assert_eq!(store.runs("inventory", 10).await.unwrap().len(), 1);
    for what in cloudwarden::store::Pruned::ALL {
        // The three Cost Explorer days above are the only other history.
        let old = match what {
            cloudwarden::store::Pruned::CostExplorerCosts => 3,
            cloudwarden::store::Pruned::Findings => 1,
            _ => 0,
        };
        assert_eq!(store.prune_batch(what, far, 1000).await.unwrap(), old, "{what:?}");
    }
    store.close().await;
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    suite(&format!("sqlite://{}", dir.path().join("cw.db").display())).await;
    // The file was created on first use, in WAL mode.
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("cw.db").display()), 1).await.unwrap();
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.unwrap();
    assert_eq!(journal, "wal");
}

#[tokio::test]
async fn postgres_store() {
    let Some(db) = common::pg::TempDatabase::create("test").await else { return };
    suite(&db.url).await;
    db.drop().await;
}

/// `n` findings of `kind`, one per subject.
fn findings(kind: FindingKind, n: usize) -> Vec<Finding> {
    (0..n).map(|i| common::volume_finding(kind, &i.to_string())).collect()
}

/// Writers at once: every write succeeds. On SQLite each writer takes the write lock when it begins and
/// waits for it; a deferred transaction that read before writing failed at once with "database is locked"
/// whenever another connection held the lock (the rules' findings and the Terraform or inventory write at a
/// daemon's start).
async fn concurrent_writers(url: &str) {
    let store = Store::connect(url, 4).await.unwrap();
    let (tagging, cleanup) = (findings(FindingKind::Tagging, 400), findings(FindingKind::Cleanup, 400));
    let start: DateTime<Utc> = "2026-11-01T10:00:00Z".parse().unwrap();
    let roles = BTreeMap::new();
    for round in 0..40 {
        let at = start + Duration::minutes(round);
        // Half of them resolved and re-opened every other round: each write reads, then writes much.
        let some = if round % 2 == 0 { 400 } else { 200 };
        let inventory = report(vec![i1(), i2(), v1(), b1()], all_scopes());
        let (a, b, c, d) = tokio::join!(
            store.record_findings(&[FindingKind::Tagging], &tagging[..some], at),
            store.record_findings_except(&[FindingKind::Cleanup], &[], &cleanup[..some], at),
            store.record_inventory(&inventory, &roles, at),
            store.record_findings(&[FindingKind::Tagging], &tagging[..some], at),
        );
        for (what, r) in [("tagging", a.map(|_| ())), ("cleanup", b.map(|_| ())), ("inventory", c.map(|_| ()))] {
            r.unwrap_or_else(|e| panic!("round {round}, {what}: {e}"));
        }
        d.unwrap_or_else(|e| panic!("round {round}, tagging again: {e}"));
    }
    let open = store.finding_counts().await.unwrap();
    assert_eq!(open.iter().map(|c| c.open).sum::<i64>(), 400, "{open:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writers_at_once_never_find_the_database_locked() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_writers(&format!("sqlite://{}", dir.path().join("cw.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writers_at_once() {
    let Some(db) = common::pg::TempDatabase::create("writers").await else { return };
    concurrent_writers(&db.url).await;
    db.drop().await;
}

#[tokio::test]
async fn an_unusable_database_gives_a_clear_error() {
    let err = Store::connect("sqlite:///nonexistent-dir/sub/cw.db", 1).await.unwrap_err().to_string();
    assert!(err.starts_with("cannot open database sqlite:///nonexistent-dir/sub/cw.db: "), "{err}");
    let err = Store::connect("mysql://x/y", 1).await.unwrap_err().to_string();
    assert!(err.contains("unsupported database URL"), "{err}");
    let err = Store::connect("postgres://nobody:secret@127.0.0.1:1/none", 1).await.unwrap_err().to_string();
    assert!(err.starts_with("cannot open database postgres://nobody:***@127.0.0.1:1/none: "), "{err}");
    assert!(!err.contains("secret"));
}

/// Processes that open a new SQLite file at once (the daemon starting while a CLI command reads): each
/// waits for the one migrating, then finds the schema in place. sqlx takes no lock around SQLite
/// migrations, so without the store's own lock the later ones failed on "table accounts already exists".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opening_a_new_sqlite_file_at_once_all_migrate_it() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cw.db").display());
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::connect(&url, 1).await })
            })
            .collect();
        for open in opens {
            let store = open.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(store.runs("inventory", 1).await.unwrap().is_empty());
            store.close().await;
        }
    }
}

/// A configured SQLite file that is missing (deleted, moved, mistyped) is an error that says so and how to
/// create one on purpose; the default path of a new deployment, or a configured one with `create_if_missing`,
/// is created. Nothing is created by the refusal.
#[tokio::test]
async fn a_configured_database_file_that_vanished_is_an_error_not_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cw.db");
    let configured = format!("[database]\nurl = \"sqlite://{}\"\n", path.display());
    let config = cloudwarden::config::parse("cw.toml", &configured, &|_| None).unwrap();
    assert!(!config.database.create_if_missing);
    let err = cloudwarden::daemon::Daemon::new(config).await.err().expect("a missing configured file is refused");
    let err = format!("{err:#}");
    assert!(err.contains(&format!("the SQLite database {} does not exist", path.display())), "{err}");
    assert!(err.contains("create_if_missing = true"), "{err}");
    assert!(!path.exists(), "nothing was created");

    // Told to create it: created, migrated; from then on the configuration without the flag opens it.
    let creating = format!("{configured}create_if_missing = true\n");
    let config = cloudwarden::config::parse("cw.toml", &creating, &|_| None).unwrap();
    assert!(config.database.create_if_missing);
    let store = Store::open_configured(&config.database, 1).await.unwrap();
    store.close().await;
    assert!(path.exists());
    let config = cloudwarden::config::parse("cw.toml", &configured, &|_| None).unwrap();
    let store = Store::open_configured(&config.database, 1).await.unwrap();
    assert!(store.runs("inventory", 1).await.unwrap().is_empty());
    store.close().await;

    // The file vanishes under a configuration that worked: an error again, not a fresh empty database.
    std::fs::remove_file(&path).unwrap();
    let err = Store::open_configured(&config.database, 1).await.unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(!path.exists());

    // The default path (no `url`) is a new deployment's: created when missing.
    let config = cloudwarden::config::parse("cw.toml", "[database]\nmax_connections = 2\n", &|_| None).unwrap();
    assert_eq!(config.database.url, "sqlite://cloudwarden.db");
    assert!(config.database.create_if_missing);
    let written = "[database]\nurl = \"sqlite://cloudwarden.db\"\n";
    assert!(cloudwarden::config::parse("cw.toml", written, &|_| None).unwrap().database.create_if_missing);
    // PostgreSQL URLs are opened as they are: the flag only concerns SQLite files.
    let pg =
        cloudwarden::config::parse("cw.toml", "[database]\nurl = \"postgres://cw@127.0.0.1/cw\"\n", &|_| None).unwrap();
    assert!(!pg.database.create_if_missing);
}

/// Retention through the daemon: the FOCUS sample (September 2024) loaded by the billing files job, then the
/// retention job at two times: within `retention_days` nothing goes, past it every billing day does, along
/// with the resolved findings and the finished runs; open findings and each job's newest run stay.
#[tokio::test]
async fn retention_prunes_old_history_and_keeps_what_is_current() {
    use cloudwarden::daemon::Daemon;
    use cloudwarden::jobs::retention::RetentionRun;
    use cloudwarden::runtime::Clock;

    common::aws_test_env();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\nretention_days = 60\n\n[collectors.billing_files]\nsources = [\"{}\"]\n",
        dir.path().join("cw.db").display(),
        common::repo_root().join("tests/data/focus/focus_sample_1000.csv").display()
    );
    let config = cloudwarden::config::parse("cw.toml", &text, &|_| None).unwrap();
    assert_eq!(config.database.retention_days, 60);
    let t0: DateTime<Utc> = "2024-10-15T08:00:00Z".parse().unwrap();
    let clock = Clock::manual(t0);
    let daemon = Daemon::with_clock(config, clock.clone()).await.unwrap();
    assert!(daemon.runtime.names().contains(&"retention"));
    let cancel = tokio_util::sync::CancellationToken::new();
    assert_eq!(daemon.run_job("billing_files", t0, &cancel).await.outcome, RunOutcome::Success);
    let store = &daemon.store;
    // A resolved finding (resolved at t0) and an open one.
    let kinds = [FindingKind::Tagging];
    store.record_findings(&kinds, &findings(FindingKind::Tagging, 2), t0 - Duration::days(1)).await.unwrap();
    store.record_findings(&kinds, &findings(FindingKind::Tagging, 1), t0).await.unwrap();
    let first_day = store.oldest_billing_day().await.unwrap();
    assert_eq!(first_day.map(|d| d.to_string()).as_deref(), Some("2024-09-01"));

    // Within 60 days of September: nothing goes.
    let run = daemon.run_job("retention", t0, &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{run:?}");
    assert_eq!(run.items, 0, "{:?}", run.detail::<RetentionRun>());
    // Four months later: every billing day of September and the finding resolved at t0; the runs of
    // October, except each job's newest.
    let later = t0 + Duration::days(120);
    store.record_findings(&kinds, &findings(FindingKind::Tagging, 1), later).await.unwrap();
    let run = daemon.run_job("retention", later, &cancel).await;
    let detail = run.detail::<RetentionRun>().unwrap().clone();
    assert_eq!(run.outcome, RunOutcome::Success, "{run:?}");
    assert_eq!(store.oldest_billing_day().await.unwrap(), None);
    assert!(detail.deleted["billing_costs"] > 0, "{detail:?}");
    assert_eq!(detail.deleted["findings"], 1, "{detail:?}");
    let open = store.findings(cloudwarden::store::FindingFilter::default()).await.unwrap();
    assert_eq!(open.len(), 1, "the open finding stays");
    // The billing job's only run is its newest: kept. The first retention run is older and not the newest.
    assert_eq!(store.runs("billing_files", 10).await.unwrap().len(), 1);
    assert_eq!(detail.deleted["collection_runs"], 1, "{detail:?}");
    let metrics = daemon.state.metrics();
    assert!(metrics.contains("cloudwarden_retention_deleted_rows_total{table=\"findings\"} 1"), "{metrics}");
    assert!(metrics.contains("cloudwarden_retention_deleted_rows_total{table=\"compliance_days\"} 0"));
}
