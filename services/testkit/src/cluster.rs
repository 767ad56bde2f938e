//! A JetStream cluster of `nats-server` processes on loopback: each node
//! its own client port, route port and store, routes to every other, so a
//! test can kill one (SIGKILL) and bring it back on the same port and store.

use std::{fmt::Write as _, time::Duration};

use anyhow::Context as _;

use crate::{NatsConfig, NatsServer, eventually, free_port, jetstream_ready};

/// Nodes of one cluster, named `n1`, `n2`, … (the JetStream server names).
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes side by side (a JetStream cluster elects its
    /// meta leader only once a quorum is up) and waits until each answers
    /// JetStream's API.
    pub async fn start(size: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(size > 0, "a cluster of no nodes");
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let mut nodes = Vec::with_capacity(size);
        for (index, route) in routes.iter().enumerate() {
            let mut node = NatsServer {
                port: free_port(),
                store: tempfile::tempdir().context("create a JetStream store folder")?,
                child: None,
                configured: None,
            };
            let file = node.store.path().join("node.conf");
            std::fs::write(&file, node_config(index, &node, *route, &routes))
                .context("write a cluster node's configuration")?;
            node.configured = Some(NatsConfig {
                file,
                env: Vec::new(),
                probe: Box::new(async_nats::ConnectOptions::new),
            });
            nodes.push(node);
        }
        let mut cluster = Self { nodes };
        // A node takes clients before its peers answer, so each start
        // returns at once; JetStream waits for the quorum.
        for node in &mut cluster.nodes {
            node.spawn().await.context("start a cluster node")?;
        }
        for index in 0..size {
            cluster.wait_ready(index).await?;
        }
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated: what a service is given
    /// as its seed list.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client given every node as a seed.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        let urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        async_nats::connect(urls.as_slice())
            .await
            .context("connect to the cluster")
    }

    pub fn node(&self, index: usize) -> &NatsServer {
        &self.nodes[index]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node called `name` (`n1`, …), as JetStream names a leader.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        let index: usize = name.strip_prefix('n')?.parse().ok()?;
        (1..=self.nodes.len()).contains(&index).then(|| index - 1)
    }

    /// Kills node `index` (SIGKILL): no goodbye to its peers or clients.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again on its ports and store, and waits until
    /// it answers JetStream's API.
    pub async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.nodes[index].restart().await?;
        self.wait_ready(index).await
    }

    async fn wait_ready(&self, index: usize) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        let url = node.url();
        eventually(Duration::from_secs(30), || jetstream_ready(&url))
            .await
            .with_context(|| {
                let log = std::fs::read_to_string(node.log_file()).unwrap_or_default();
                format!("wait for cluster node n{}; its log:\n{log}", index + 1)
            })
    }
}

fn node_config(index: usize, node: &NatsServer, route: u16, routes: &[u16]) -> String {
    let mut config = String::new();
    let store = node.store.path().join("jetstream");
    let _ = writeln!(config, "server_name: n{}", index + 1);
    let _ = writeln!(
        config,
        "jetstream {{ store_dir: {:?} }}",
        store.display().to_string()
    );
    let _ = writeln!(config, "cluster {{");
    let _ = writeln!(config, "  name: motcua-test");
    let _ = writeln!(config, "  listen: 127.0.0.1:{route}");
    let _ = writeln!(config, "  routes: [");
    for other in routes.iter().filter(|other| **other != route) {
        let _ = writeln!(config, "    nats-route://127.0.0.1:{other}");
    }
    let _ = writeln!(config, "  ]\n}}");
    config
}
