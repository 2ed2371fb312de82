//! A test's own NATS server (JetStream, file store in a temp dir), for tests that kill and
//! restart NATS. The shared server the other tests use is never touched.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private `nats-server -js` on a free port. Dropping it kills it.
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    /// Extra configuration (authorization, tls blocks), when started with one.
    config: Option<String>,
    child: Option<Child>,
}

fn find_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return p.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/local/bin".into(),
            "/usr/bin".into(),
        ])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .expect("nats-server is installed (`just up` installs it) or NATS_SERVER_BIN names it")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl NatsServer {
    /// Starts one and waits until it accepts connections.
    pub async fn start() -> Self {
        Self::start_configured(None).await
    }

    /// Starts one with `config` added to its configuration file (e.g. an `authorization { … }`
    /// or `tls { … }` block).
    pub async fn start_with(config: &str) -> Self {
        Self::start_configured(Some(config.to_owned())).await
    }

    async fn start_configured(config: Option<String>) -> Self {
        let mut server = Self {
            bin: find_binary(),
            port: free_port(),
            store: tempfile::tempdir().expect("tempdir"),
            config,
            child: None,
        };
        server.run().await;
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let mut command = Command::new(&self.bin);
        if let Some(extra) = &self.config {
            let file = self.store.path().join("server.conf");
            std::fs::write(
                &file,
                format!(
                    "listen: 127.0.0.1:{}\njetstream {{ store_dir: {:?} }}\n{extra}\n",
                    self.port,
                    self.store.path().join("js")
                ),
            )
            .expect("write nats-server config");
            command.arg("-c").arg(file);
        } else {
            command
                .args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(self.store.path());
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        crate::within(Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(&addr).await.ok().map(drop)
        })
        .await
        .expect("nats-server accepts connections");
    }

    /// `kill -9`: the server is gone at once, its store stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private JetStream cluster of nodes on loopback (free client and route ports, file stores
/// in temp dirs), shaped as `deploy/nats/` configures one. Dropping it kills every node.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes routed to each other and waits until each accepts connections (the
    /// JetStream meta leader is elected shortly after: callers retry their first stream
    /// creation).
    pub async fn start(n: usize) -> Self {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_list = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::with_capacity(n);
        for (i, route) in routes.iter().enumerate() {
            let config = format!(
                "server_name: n{}\ncluster {{\n  name: tenantry\n  listen: 127.0.0.1:{route}\n  routes: [ {route_list} ]\n}}\n",
                i + 1
            );
            let mut node = NatsServer {
                bin: find_binary(),
                port: free_port(),
                store: tempfile::tempdir().expect("tempdir"),
                config: Some(config),
                child: None,
            };
            node.run().await;
            nodes.push(node);
        }
        Self { nodes }
    }

    /// Every node's URL, separated by commas (what `--nats-url` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i` (0-based; its server name is `n<i+1>`).
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// The index of the node called `name` (`n1`, `n2`, …).
    pub fn index_of(name: &str) -> Option<usize> {
        name.strip_prefix('n')?
            .parse::<usize>()
            .ok()?
            .checked_sub(1)
    }
}
