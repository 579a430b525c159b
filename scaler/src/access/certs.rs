//! The names a client certificate carries: its subject CN and its SANs (DNS names,
//! URIs such as SPIFFE IDs, e-mail addresses). rustls has already verified the chain
//! against the client CA by the time a certificate gets here; this only reads names.

use x509_parser::extensions::GeneralName;

/// Every name in a DER certificate, CN first. A certificate that does not parse names
/// nothing (the caller is then anonymous).
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) | GeneralName::RFC822Name(n) => {
                    names.push((*n).to_owned());
                }
                _ => {}
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::ExtendedKeyUsagePurpose;

    #[test]
    fn the_cn_and_the_sans_are_read_and_garbage_names_nothing() {
        let ca = spillway_tests::tls::Ca::new("client CA");
        let keda = ca.issue_for(
            "keda-operator",
            None,
            &[
                "keda-operator.keda.svc",
                "spiffe://cluster.local/ns/keda/sa/keda-operator",
            ],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        );
        assert_eq!(
            certificate_names(&keda.cert_der),
            vec![
                "keda-operator".to_string(),
                "keda-operator.keda.svc".into(),
                "spiffe://cluster.local/ns/keda/sa/keda-operator".into()
            ]
        );
        assert!(certificate_names(b"not a certificate").is_empty());
        assert!(certificate_names(&[]).is_empty());
    }
}
