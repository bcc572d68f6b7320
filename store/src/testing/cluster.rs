//! Three cluster masters ([`RedisCluster`]).

use super::*;

/// Three cluster masters, every slot assigned; with
/// [`RedisCluster::start_with_replicas`] one replica each.
pub struct RedisCluster {
    /// The masters, in the order `redis-cli --cluster create` was given them
    /// (after [`RedisCluster::fail_over`], the promoted replica takes its
    /// master's place).
    pub nodes: Vec<RedisServer>,
    /// `replicas[i]` replicates `nodes[i]` (empty without replicas).
    pub replicas: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with `redis-cli
    /// --cluster create` and waits for `cluster_state:ok` on every node.
    pub async fn start() -> Result<RedisCluster> {
        RedisCluster::start_with(None).await
    }

    /// The same on TLS only (clients and the cluster bus; [`ServerTls`]).
    pub async fn start_tls(tls: &ServerTls) -> Result<RedisCluster> {
        RedisCluster::start_with(Some(Arc::new(tls.clone()))).await
    }

    async fn start_with(tls: Option<Arc<ServerTls>>) -> Result<RedisCluster> {
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            nodes.push(RedisServer::start_kind(true, tls.clone()).await?);
        }
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let tls_args: Vec<String> = match &tls {
            None => Vec::new(),
            Some(tls) => vec![
                "--tls".to_string(),
                "--cacert".to_string(),
                tls.ca.to_string_lossy().into_owned(),
                "--cert".to_string(),
                tls.client_cert.to_string_lossy().into_owned(),
                "--key".to_string(),
                tls.client_key.to_string_lossy().into_owned(),
            ],
        };
        let output = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .args(&tls_args)
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
        })
        .await
        .map_err(fail)?
        .map_err(|e| fail(format!("redis-cli does not start (is it on PATH?): {e}")))?;
        if !output.status.success() {
            return Err(fail(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let cluster = RedisCluster {
            nodes,
            replicas: Vec::new(),
        };
        cluster.wait_ok().await?;
        Ok(cluster)
    }

    /// One master holding every slot (`CLUSTER ADDSLOTSRANGE 0 16383`): a
    /// node that never met another, which lists itself in `CLUSTER SLOTS`
    /// without a host.
    pub async fn start_one_master() -> Result<RedisCluster> {
        let node = RedisServer::start_kind(true, None).await?;
        node.command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
            .await?;
        let cluster = RedisCluster {
            nodes: vec![node],
            replicas: Vec::new(),
        };
        cluster.wait_ok().await?;
        Ok(cluster)
    }

    /// Three masters with one replica each (`CLUSTER MEET`, `CLUSTER
    /// REPLICATE`); waits until every replica's link to its master is up and
    /// every node sees all six.
    pub async fn start_with_replicas() -> Result<RedisCluster> {
        let mut cluster = RedisCluster::start().await?;
        let seed = cluster.nodes[0].port().to_string();
        for i in 0..cluster.nodes.len() {
            let master_id = cluster.node_id(i).await?;
            let replica = RedisServer::start_kind(true, None).await?;
            replica
                .command(&["CLUSTER", "MEET", "127.0.0.1", &seed])
                .await?;
            let deadline = Instant::now() + CLUSTER_DEADLINE;
            // REPLICATE needs the master known to the replica first.
            while replica
                .command(&["CLUSTER", "REPLICATE", &master_id])
                .await
                .is_err()
            {
                if Instant::now() > deadline {
                    return Err(fail("a replica never learnt of its master"));
                }
                tokio::time::sleep(POLL).await;
            }
            cluster.replicas.push(replica);
        }
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        for replica in &cluster.replicas {
            loop {
                let info = text(replica.command(&["INFO", "replication"]).await?)?;
                if info.contains("master_link_status:up") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(fail(format!(
                        "replica {} not in sync: {info}",
                        replica.addr()
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        cluster.wait_ok().await?;
        Ok(cluster)
    }

    /// A manual failover of master `i` (`CLUSTER FAILOVER` on its replica,
    /// which first catches up with the master): waits until the replica
    /// says it is master and every node is `ok` again, then swaps the two
    /// in [`nodes`](Self::nodes) and [`replicas`](Self::replicas).
    pub async fn fail_over(&mut self, i: usize) -> Result<()> {
        let replica = self
            .replicas
            .get(i)
            .ok_or_else(|| fail(format!("master {i} has no replica")))?;
        replica.command(&["CLUSTER", "FAILOVER"]).await?;
        self.promoted(i).await?;
        self.wait_ok().await
    }

    /// Kills master `i` (SIGKILL, as a crashed pod): the others mark it
    /// failed after the node timeout and its replica wins the election.
    /// Then the killed node starts again, empty (a restarted pod), and
    /// rejoins as the new master's replica. Waits until every node is `ok`,
    /// then swaps the two as [`fail_over`](Self::fail_over) does.
    pub async fn kill_master(&mut self, i: usize) -> Result<()> {
        if self.replicas.get(i).is_none() {
            return Err(fail(format!("master {i} has no replica")));
        }
        self.nodes[i].stop();
        self.promoted(i).await?;
        self.replicas[i].restart().await?;
        self.wait_ok().await
    }

    /// Waits until the replica of master `i` says it is master, swaps the
    /// two in [`nodes`](Self::nodes) and [`replicas`](Self::replicas).
    async fn promoted(&mut self, i: usize) -> Result<()> {
        let replica = &self.replicas[i];
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        loop {
            let role = text(replica.command(&["INFO", "replication"]).await?)?;
            if role.contains("role:master") {
                break;
            }
            if Instant::now() > deadline {
                return Err(fail(format!("the replica of master {i} was not promoted")));
            }
            tokio::time::sleep(POLL).await;
        }
        std::mem::swap(&mut self.nodes[i], &mut self.replicas[i]);
        Ok(())
    }

    /// Waits until every node reports `cluster_state:ok` and sees all three
    /// masters with their slots.
    pub async fn wait_ok(&self) -> Result<()> {
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        let known = format!(
            "cluster_known_nodes:{}",
            self.nodes.len() + self.replicas.len()
        );
        'poll: loop {
            for node in self.nodes.iter().chain(&self.replicas) {
                let info: String = node
                    .command(&["CLUSTER", "INFO"])
                    .await
                    .and_then(text)
                    .unwrap_or_default();
                let ok = info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains(&known);
                if !ok {
                    if Instant::now() > deadline {
                        return Err(fail(format!(
                            "cluster not ok on {} within {CLUSTER_DEADLINE:?}: {info}",
                            node.addr()
                        )));
                    }
                    tokio::time::sleep(POLL).await;
                    continue 'poll;
                }
            }
            return Ok(());
        }
    }

    /// The seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `CLIENT KILL TYPE pubsub` on every node; returns the total killed.
    pub async fn kill_pubsub_clients(&self) -> Result<i64> {
        let mut n = 0;
        for node in &self.nodes {
            n += node.kill_pubsub_clients().await?;
        }
        Ok(n)
    }

    /// Drops every client connection on every node.
    pub async fn kill_all_clients(&self) -> Result<i64> {
        let mut n = 0;
        for node in &self.nodes {
            n += node.kill_all_clients().await?;
        }
        Ok(n)
    }

    /// Every key of every node with its contents (see [`RedisServer::dump`]).
    pub async fn dump(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut all = Vec::new();
        for node in &self.nodes {
            all.extend(node.dump().await?);
        }
        Ok(all)
    }

    /// The hash slot of a key (or channel).
    pub async fn slot_of(&self, key: &str) -> Result<u16> {
        let v = self.nodes[0].command(&["CLUSTER", "KEYSLOT", key]).await?;
        u16::try_from(as_int(&v)?).map_err(fail)
    }

    async fn node_id(&self, index: usize) -> Result<String> {
        text(self.nodes[index].command(&["CLUSTER", "MYID"]).await?)
    }

    /// The index in [`nodes`](Self::nodes) of the master serving `slot`, as
    /// every node sees it (an error until they agree).
    pub async fn owner_of_slot(&self, slot: u16) -> Result<usize> {
        let mut ids = Vec::with_capacity(self.nodes.len());
        for i in 0..self.nodes.len() {
            ids.push(self.node_id(i).await?);
        }
        let mut owner = None;
        for node in &self.nodes {
            let nodes = text(node.command(&["CLUSTER", "NODES"]).await?)?;
            let seen = nodes.lines().find_map(|line| {
                let mut fields = line.split_whitespace();
                let id = fields.next()?;
                let owns = fields.skip(7).any(|range| {
                    let mut bounds = range.splitn(2, '-');
                    let lo = bounds.next().and_then(|s| s.parse::<u16>().ok());
                    let hi = bounds.next().map_or(lo, |s| s.parse::<u16>().ok());
                    matches!((lo, hi), (Some(lo), Some(hi)) if lo <= slot && slot <= hi)
                });
                owns.then(|| ids.iter().position(|x| x == id))?
            });
            match (owner, seen) {
                (_, None) => return Err(fail(format!("{} sees no owner of {slot}", node.addr()))),
                (None, Some(i)) => owner = Some(i),
                (Some(o), Some(i)) if o != i => {
                    return Err(fail(format!("nodes disagree on the owner of {slot}")))
                }
                _ => {}
            }
        }
        owner.ok_or_else(|| fail("no nodes"))
    }

    /// Moves the slot of `key` (a room's channel `arthas:{R}` or any of its
    /// keys) to the next master: SETSLOT IMPORTING/MIGRATING, MIGRATE of its
    /// keys, SETSLOT NODE on every master. Returns (from, to) node indexes.
    pub async fn migrate_slot_of(&self, key: &str) -> Result<(usize, usize)> {
        let slot = self.slot_of(key).await?;
        let from = self.owner_of_slot(slot).await?;
        let to = (from + 1) % self.nodes.len();
        self.migrate_slot(slot, from, to).await?;
        Ok((from, to))
    }

    /// Moves `slot` from master `from` to master `to`.
    pub async fn migrate_slot(&self, slot: u16, from: usize, to: usize) -> Result<()> {
        let slot_s = slot.to_string();
        let from_id = self.node_id(from).await?;
        let to_id = self.node_id(to).await?;
        let (src, dst) = (&self.nodes[from], &self.nodes[to]);
        dst.command(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id])
            .await?;
        src.command(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id])
            .await?;
        loop {
            let keys = src
                .command(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"])
                .await?;
            let keys: Vec<String> = match keys {
                Value::Array(items) => items.into_iter().map(text).collect::<Result<_>>()?,
                other => return Err(fail(format!("GETKEYSINSLOT: {other:?}"))),
            };
            if keys.is_empty() {
                break;
            }
            let port = dst.port().to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            src.command(&args).await?;
        }
        // The new owner first, then the old one, then the rest.
        let mut order = vec![to, from];
        order.extend((0..self.nodes.len()).filter(|i| *i != to && *i != from));
        for i in order {
            self.nodes[i]
                .command(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id])
                .await?;
        }
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        loop {
            if matches!(self.owner_of_slot(slot).await, Ok(o) if o == to) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(fail(format!("slot {slot} did not settle on node {to}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
