//! `pipe rendezvous`: the standalone signalling server, which also serves the viewer app.

use std::net::{IpAddr, SocketAddr};

use tracing::info;

use crate::config::IceConfig;
use crate::signalling::server::Rendezvous;
use crate::web::{self, ApiInfo, IceServer};

pub struct Options {
    pub listen: IpAddr,
    pub port: u16,
    /// Registrations must be signed for this URL's host and port (`--public-url`).
    pub public_url: Option<url::Url>,
    /// The camera UI's registrable domain (`--ui-domain`, needs `public_url`).
    pub ui_domain: Option<String>,
    pub ice: IceConfig,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let rendezvous = Rendezvous::new(concat!("pipe-rendezvous/", env!("CARGO_PKG_VERSION")));
    if let Some(url) = &options.public_url {
        rendezvous.require_authority(crate::signalling::client::authority(url));
    }
    let public_ui = match (&options.public_url, &options.ui_domain) {
        (Some(url), Some(domain)) => {
            // Devices dial wss://HOST/signal; browsers open the viewer at https://HOST/.
            let mut viewer = url.clone();
            let _ = viewer.set_scheme(if url.scheme() == "ws" {
                "http"
            } else {
                "https"
            });
            if let Some(problem) = crate::config::ui_domain_problem(&viewer, domain) {
                anyhow::bail!("--ui-domain: {problem}");
            }
            Some(web::ui::PublicUi::new(&viewer, domain))
        }
        _ => None,
    };
    let info = ApiInfo {
        device_id: None,
        ice_servers: IceServer::from_config(&options.ice),
        signal_path: "/signal".into(),
        public_ui,
    };
    let app = web::app(info, Some(&rendezvous), None);
    let listener = super::bind(SocketAddr::new(options.listen, options.port)).await?;
    let addr = listener.local_addr()?;
    info!(%addr, "rendezvous listening");
    println!(
        "pipe rendezvous: signalling at ws://{addr}/signal, viewer at http://{addr}/#device=DEVICE_ID"
    );
    web::serve::serve(
        listener,
        app,
        web::serve::Limits::RENDEZVOUS,
        super::shutdown_signal(),
        std::time::Duration::from_secs(3),
    )
    .await;
    Ok(())
}
