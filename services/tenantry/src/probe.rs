//! `tenantry probe <url>`: a container health check without curl in the image. One plain
//! HTTP/1.0 GET to a service's admin port (`/readyz`, `/healthz`); exit 0 on a 2xx answer,
//! 1 otherwise, with the reason on stderr.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Flags of `tenantry probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// `http://host:port/path` of an admin port, e.g. `http://127.0.0.1:9464/readyz`.
    pub url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// `(host:port, path)` of a plain `http://` URL.
pub fn split(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs (the admin port speaks plain HTTP)")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let well_formed = authority.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p != 0)
    });
    if !well_formed || path.contains(char::is_whitespace) {
        bail!("{url:?} is not http://host:port/path");
    }
    Ok((authority.to_owned(), path.to_owned()))
}

/// The status code `url` answers.
pub async fn status(url: &str, timeout: Duration) -> anyhow::Result<u16> {
    let (authority, path) = split(url)?;
    let work = async {
        let mut stream = TcpStream::connect(&authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).await?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .with_context(|| format!("{authority} did not answer HTTP"))
    };
    tokio::time::timeout(timeout, work)
        .await
        .with_context(|| format!("{url} did not answer within {timeout:?}"))?
}

/// Runs the probe: 2xx is success.
pub async fn run(args: ProbeArgs) -> anyhow::Result<std::process::ExitCode> {
    let code = status(&args.url, Duration::from_millis(args.timeout_ms)).await?;
    if (200..300).contains(&code) {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!("{} answered {code}", args.url);
        Ok(std::process::ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_port() {
        assert_eq!(
            split("http://127.0.0.1:9464/readyz").unwrap(),
            ("127.0.0.1:9464".to_owned(), "/readyz".to_owned())
        );
        assert_eq!(split("http://localhost:9464").unwrap().1, "/");
        for bad in [
            "https://a:1/",
            "http://a/readyz",
            "http://:1/",
            "http://a:1/x y",
            "ftp://a:1",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_ready_port_passes_and_a_closed_one_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for code in [200, 503] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let url = format!("http://{addr}/readyz");
        assert_eq!(status(&url, Duration::from_secs(2)).await.unwrap(), 200);
        assert_eq!(status(&url, Duration::from_secs(2)).await.unwrap(), 503);
        assert!(status(&url, Duration::from_millis(300)).await.is_err());
    }
}
