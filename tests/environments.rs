//! Several environments in one session: each a catalog named after it, the first the default;
//! joins across them; clients, tokens, metadata caches and change tokens kept apart. Two
//! simulators stand for two environments.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};
use datafusion_dataverse::{Config, ConnectOptions, Dataverse};
use tempfile::TempDir;

async fn simulator(accounts: usize, seed: u64) -> SimulatorHandle {
    Simulator::start(
        SimulatorOptions::default()
            .with_seed(seed)
            .with_rows(RowCounts::accounts_only(accounts).with_contacts(50)),
    )
    .await
    .expect("simulator starts")
}

fn named(sim: &SimulatorHandle, name: &str) -> Config {
    let mut config = Config::for_simulator(sim);
    config.name = Some(name.to_string());
    config
}

fn ids(batches: &[datafusion::arrow::array::RecordBatch]) -> BTreeSet<String> {
    common::rows(batches)
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

fn token_requests(sim: &SimulatorHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.contains("oauth2"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_environments_join_and_keep_tokens_caches_and_change_tokens_apart() {
    let prod_sim = simulator(300, 42).await;
    let dev_sim = simulator(200, 42).await;
    let state = TempDir::new().unwrap();
    let options = ConnectOptions::default().with_state_dir(state.path());
    let prod = Dataverse::connect_with(named(&prod_sim, "prod"), options.clone())
        .await
        .unwrap();
    let dev = Dataverse::connect_with(named(&dev_sim, "dev"), options)
        .await
        .unwrap();
    let ctx = Dataverse::session_context_for(&[prod.clone(), dev.clone()]).unwrap();

    // Each catalog reads its own environment; the first answers unqualified names.
    let count = |sql: &'static str| {
        let ctx = ctx.clone();
        async move { common::rows(&common::query(&ctx, sql).await)[0][0].clone() }
    };
    assert_eq!(
        count("SELECT count(*) FROM prod.dataverse.account").await,
        "300"
    );
    assert_eq!(
        count("SELECT count(*) FROM dev.dataverse.account").await,
        "200"
    );
    assert_eq!(count("SELECT count(*) FROM account").await, "300");
    assert_eq!(count("SELECT count(*) FROM dataverse.account").await, "300");

    // The join across environments equals the intersection of the two key sets.
    let prod_ids = ids(&common::query(&ctx, "SELECT accountid FROM prod.dataverse.account").await);
    let dev_ids = ids(&common::query(&ctx, "SELECT accountid FROM dev.dataverse.account").await);
    let both: BTreeSet<String> = prod_ids.intersection(&dev_ids).cloned().collect();
    let joined = ids(&common::query(
        &ctx,
        "SELECT accountid FROM prod.dataverse.account p \
             JOIN dev.dataverse.account d USING (accountid)",
    )
    .await);
    assert_eq!(joined, both);
    assert!(prod_ids.len() == 300 && dev_ids.len() == 200);
    // Same seed: the environments share some accounts (not all), so the join has rows to find.
    assert!(!both.is_empty() && both.len() < 300, "{}", both.len());

    // Tokens and requests: a query on one environment touches only its simulator.
    assert!(token_requests(&prod_sim) >= 1 && token_requests(&dev_sim) >= 1);
    prod_sim.clear_requests();
    dev_sim.clear_requests();
    let (prod_before, dev_before) = (prod.stats().requests, dev.stats().requests);
    common::query(&ctx, "SELECT fullname FROM dev.dataverse.contact").await;
    assert!(common::api_requests(&prod_sim).is_empty());
    assert!(!common::api_requests(&dev_sim).is_empty());
    assert_eq!(prod.stats().requests, prod_before);
    assert!(dev.stats().requests > dev_before);

    // Metadata caches: one directory per environment, each with the tables it read.
    let cache = state.path().join("metadata");
    let prod_cache = cache.join(prod.config().environment_key());
    let dev_cache = cache.join(dev.config().environment_key());
    assert_ne!(prod_cache, dev_cache);
    assert!(prod_cache.is_dir() && dev_cache.is_dir());
    assert!(files(&dev_cache).iter().any(|f| f.contains("contact")));
    assert!(!files(&prod_cache).iter().any(|f| f.contains("contact")));

    // Change tokens: `table_changes('account')` is the first environment's, `'dev.account'`
    // dev's; each token is saved under its own environment.
    let changes = state.path().join("changes");
    prod.prepare("SELECT 1 FROM table_changes('account')")
        .await
        .unwrap();
    assert_eq!(
        count("SELECT count(*) FROM table_changes('account')").await,
        "300"
    );
    assert!(changes.join(prod.config().environment_key()).is_dir());
    assert!(!changes.join(dev.config().environment_key()).exists());
    prod_sim.clear_requests();
    prod.prepare("SELECT 1 FROM table_changes('dev.account')")
        .await
        .unwrap();
    assert_eq!(
        count("SELECT count(*) FROM table_changes('dev.account')").await,
        "200"
    );
    assert!(common::api_requests(&prod_sim).is_empty());
    let dev_tokens = changes.join(dev.config().environment_key());
    assert!(
        files(&dev_tokens).iter().any(|f| f.contains("account")),
        "{dev_tokens:?}"
    );
    // Resetting dev's token leaves prod's.
    prod.prepare("SELECT 1 FROM reset_change_token('dev.account')")
        .await
        .unwrap();
    let tokens = "SELECT count(*) FROM dataverse_change_tokens('dev') WHERE entity = 'account'";
    assert_eq!(count(tokens).await, "1");
    common::query(&ctx, "SELECT * FROM reset_change_token('dev.account')").await;
    assert!(!files(&dev_tokens).iter().any(|f| f.contains("account")));
    // `dataverse_change_tokens` lists each environment's own: dev's is gone, prod's is kept.
    assert_eq!(count(tokens).await, "0");
    assert_eq!(
        count("SELECT count(*) FROM dataverse_change_tokens() WHERE entity = 'account'").await,
        "1"
    );
    let unknown = ctx
        .sql("SELECT * FROM dataverse_change_tokens('test')")
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("the others are dev"), "{unknown}");
    assert!(
        files(&changes.join(prod.config().environment_key()))
            .iter()
            .any(|f| f.contains("account"))
    );

    // The metadata schema of each environment.
    assert_eq!(
        count("SELECT count(*) FROM dev.metadata.entity").await,
        count("SELECT count(*) FROM prod.metadata.entity").await
    );
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_need_distinct_names() {
    let a = simulator(10, 1).await;
    let b = simulator(10, 2).await;
    let first = Dataverse::connect(Config::for_simulator(&a)).await.unwrap();
    let second = Dataverse::connect(Config::for_simulator(&b)).await.unwrap();
    let Err(error) = Dataverse::session_context_for(&[first, second]) else {
        panic!("two environments named simulator were accepted");
    };
    assert!(error.to_string().contains("\"simulator\""), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dvsql_takes_config_twice_and_joins_across_environments() {
    let prod_sim = simulator(300, 42).await;
    let dev_sim = simulator(200, 42).await;
    let home = TempDir::new().unwrap();
    let write = |name: &str, sim: &SimulatorHandle| {
        let path = home.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string(&named(sim, name)).unwrap()).unwrap();
        path
    };
    let prod = write("prod", &prod_sim);
    let dev = write("dev", &dev_sim);
    let sql = "SELECT count(*) FROM prod.dataverse.account p \
               JOIN dev.dataverse.account d USING (accountid)";
    // The answer, from the library.
    let ctx = Dataverse::session_context_for(&[
        Dataverse::connect(named(&prod_sim, "prod")).await.unwrap(),
        Dataverse::connect(named(&dev_sim, "dev")).await.unwrap(),
    ])
    .unwrap();
    let want = common::rows(&common::query(&ctx, sql).await)[0][0].clone();
    let output = Command::new(env!("CARGO_BIN_EXE_dvsql"))
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env_remove("DVSQL_STATE_DIR")
        .arg("--config")
        .arg(&prod)
        .arg("--config")
        .arg(&dev)
        .args(["-q", "-t", "--format", "csv", "-c", sql])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), want);
}

/// One config file listing both environments: `\d` names each table's environment,
/// `\d dev.account` describes dev's, EXPLAIN names the environment of each request,
/// `\changes dev` reads dev's tokens; `dvsql sync` refuses a file of several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_of_two_environments_names_them_in_describe_and_explain() {
    let prod_sim = simulator(30, 42).await;
    let dev_sim = simulator(20, 43).await;
    let home = TempDir::new().unwrap();
    let both = serde_json::json!({
        "environments": [named(&prod_sim, "prod"), named(&dev_sim, "dev")]
    });
    let path = home.path().join("environments.json");
    std::fs::write(&path, both.to_string()).unwrap();
    let dvsql = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dvsql"))
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env_remove("DVSQL_STATE_DIR")
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    };
    let script = home.path().join("script.sql");
    std::fs::write(
        &script,
        "\\d\n\\d dev.account\n\\changes dev\n         EXPLAIN SELECT name FROM dev.dataverse.account WHERE name = 'x';\n",
    )
    .unwrap();
    let output = dvsql(&["-q", "--format", "csv", "-f", script.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // `\d`: every environment's tables, the default's first.
    let listing: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with(",accounts,accountid,yes,no"))
        .collect();
    assert_eq!(
        listing,
        [
            "prod,account,accounts,accountid,yes,no",
            "dev,account,accounts,accountid,yes,no"
        ],
        "{stdout}"
    );
    // `\d dev.account`: dev's columns, read from dev's metadata.
    assert!(stdout.contains("\naccountid,Uniqueidentifier,"), "{stdout}");
    assert!(stdout.contains("entity,saved_at,age_seconds"), "{stdout}");
    assert!(
        stdout.contains("DataverseScanExec: [dev] GET accounts?"),
        "{stdout}"
    );
    assert!(!stdout.contains("[prod]"), "{stdout}");
    // Where one environment is read, the file is refused by name.
    let sync = Command::new(env!("CARGO_BIN_EXE_dvsql"))
        .env("HOME", home.path())
        .args(["sync", "--to"])
        .arg(home.path().join("mirror"))
        .args(["--tables", "account", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let refusal = String::from_utf8_lossy(&sync.stderr);
    assert_eq!(sync.status.code(), Some(1), "{refusal}");
    assert!(
        refusal.contains("mirrors one environment, and 2 are configured"),
        "{refusal}"
    );
}

/// A catalog registered on its own gets what `register` installs: the aggregate / top-N rule,
/// the join-key rule and the join-key settings (so joins into another environment push keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_catalog_installs_the_pushdown_rules_and_join_key_settings() {
    let sim = simulator(10, 1).await;
    let dev = Dataverse::connect(named(&sim, "dev")).await.unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    dev.register_catalog(&ctx, "dev").unwrap();
    dev.register_catalog(&ctx, "dev2").unwrap();
    let state = ctx.state();
    let names: Vec<&str> = state
        .physical_optimizers()
        .iter()
        .map(|r| r.name())
        .collect();
    for rule in ["dataverse_pushdown", "dataverse_join_key_pushdown"] {
        assert_eq!(
            names.iter().filter(|n| **n == rule).count(),
            1,
            "{rule} once in {names:?}"
        );
    }
    let optimizer = &state.config_options().optimizer;
    assert!(optimizer.hash_join_inlist_pushdown_max_distinct_values >= 5_000);
    assert!(optimizer.hash_join_inlist_pushdown_max_size >= 5_000 * 1_024);
}
