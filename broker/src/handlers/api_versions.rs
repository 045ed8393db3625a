//! ApiVersions (0-3). The unsupported-version fallback (KIP-511) is in `handlers::handle`.

use kafka_protocol::messages::ApiVersionsResponse;

use crate::protocol::versions;

pub fn handle() -> ApiVersionsResponse {
    versions::api_versions_response(0)
}
