//! The gateway's admin port: the shared admin endpoints ([`edge::http`]:
//! `/healthz`, `/readyz`, `/metrics`) answered from the gateway: ready while
//! the store answers; the metrics refresh `store_up` before each scrape.

use crate::metrics::Api;
use crate::Gateway;

/// The admin endpoints of a gateway.
pub type AdminApi = edge::http::AdminApi<GatewayProbe>;

/// The admin endpoints of `gateway`.
pub fn admin_api(gateway: Gateway) -> AdminApi {
    edge::http::AdminApi::new(GatewayProbe(gateway))
}

/// What a gateway says about itself on its admin port.
pub struct GatewayProbe(Gateway);

impl edge::http::AdminProbe for GatewayProbe {
    async fn ready(&self) -> Result<(), &'static str> {
        if self.0.store_ready().await {
            Ok(())
        } else {
            Err("the store does not answer")
        }
    }

    async fn metrics(&self) -> String {
        let metrics = self.0.metrics();
        metrics.store_up.set(i64::from(self.0.store_ready().await));
        metrics.render()
    }

    fn panicked(&self) {
        self.0.metrics().panicked(Api::Admin);
    }
}
