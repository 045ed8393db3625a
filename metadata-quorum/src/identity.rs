//! Node identity from the environment: a StatefulSet pod's hostname ends in its ordinal
//! (`strom-broker-2`), which becomes its node id (`--node-id-from-hostname`).

/// The ordinal at the end of `hostname` (after the last `-`), ignoring any domain part.
pub fn ordinal_of(hostname: &str) -> Result<u64, String> {
    let host = hostname.trim().split('.').next().unwrap_or_default();
    let digits = host
        .rsplit_once('-')
        .map(|(_, n)| n)
        .ok_or_else(|| format!("hostname '{host}' does not end in -<ordinal>"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("hostname '{host}' does not end in -<ordinal>"));
    }
    digits
        .parse()
        .map_err(|_| format!("hostname '{host}': ordinal {digits} is too large"))
}

/// This machine's hostname (the kernel's, else `$HOSTNAME`).
pub fn hostname() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .ok_or_else(|| "cannot read the hostname".to_string())
}

/// The node id `--node-id-from-hostname` gives this process.
pub fn node_id_from_hostname() -> Result<u64, String> {
    ordinal_of(&hostname()?)
}

/// The node id a binary runs as: `--node-id` when given, else the hostname's ordinal with
/// `--node-id-from-hostname` (an env var set to false still leaves neither).
pub fn resolve(explicit: Option<u64>, from_hostname: bool) -> Result<u64, String> {
    match (explicit, from_hostname) {
        (Some(id), _) => Ok(id),
        (None, true) => {
            node_id_from_hostname().map_err(|e| format!("--node-id-from-hostname: {e}"))
        }
        (None, false) => Err("--node-id or --node-id-from-hostname is required".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statefulset_ordinals() {
        assert_eq!(ordinal_of("strom-broker-2"), Ok(2));
        assert_eq!(ordinal_of("strom-controller-0"), Ok(0));
        assert_eq!(ordinal_of("strom-broker-12.strom-broker.kafka.svc"), Ok(12));
        assert!(ordinal_of("strom-broker").is_err());
        assert!(ordinal_of("strom-broker-").is_err());
        assert!(ordinal_of("broker-2a").is_err());
        assert!(ordinal_of("nodash").is_err());
        assert!(ordinal_of("b-99999999999999999999999").is_err());
        assert_eq!(resolve(Some(7), true), Ok(7));
        assert!(resolve(None, false).is_err());
    }
}
