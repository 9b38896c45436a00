//! PKCS#10 certificate signing requests for CA keys: what `certkeeper ca init --csr` and
//! `certkeeper ca csr` hand to an offline root, so that it can sign an intermediate CA whose key
//! never leaves its HSM (SPEC "CA keys in an HSM").
//!
//! The request is built from `x509-cert` structures and signed through `Signer`, so a key in a
//! Secret and a key on a PKCS#11 token make the same request.

use der::Decode;
use der::asn1::SetOfVec;
use der::flagset::FlagSet;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::name::Name;
use x509_cert::request::{CertReqInfo, ExtensionReq, Version};

use super::asn1::{self, encoding};
use super::cert::{key_identifier, subject_name};
use super::key::encode_pem;
use super::{CertificateTemplate, PkiError, Signer, SubjectFields};

/// The PEM label of a PKCS#10 request (RFC 7468 §7), the one `openssl req` reads.
const PEM_CERTIFICATE_REQUEST: &str = "CERTIFICATE REQUEST";

/// RFC 5280 Appendix A upper bounds (`ub-common-name`, `ub-organization-name`), in characters.
/// Checked here because a CA's name is typed on a command line and an offline root may refuse
/// a longer one only at the ceremony.
const MAX_NAME_CHARS: usize = 64;

/// A PKCS#10 request (PEM, `CERTIFICATE REQUEST`) for a CA key: subject `CN=common_name`
/// (after `O=organization` when given, in the order certkeeper's certificates write them), the
/// signer's public key, and an extensionRequest for what the issued CA certificate must say:
/// keyUsage digitalSignature, keyCertSign, cRLSign (critical), basicConstraints CA:TRUE
/// (critical) and the subjectKeyIdentifier certkeeper computes for the key.
///
/// The subject is encoded exactly as `sign_self_signed` encodes the same names, so a root that
/// copies the request's subject gives the intermediate the DN certkeeper would have written.
/// No pathLenConstraint is asked for: how deep the hierarchy goes is the root's decision.
pub fn build_ca_csr(
    common_name: &str,
    organization: Option<&str>,
    signer: &dyn Signer,
) -> Result<String, PkiError> {
    check_name_length("common name", common_name)?;
    if let Some(organization) = organization {
        check_name_length("organization", organization)?;
    }
    let template = CertificateTemplate {
        common_name: Some(common_name.to_owned()),
        subject: SubjectFields {
            organizations: organization.map(str::to_owned).into_iter().collect(),
            ..Default::default()
        },
        ..Default::default()
    };
    // `subject_name` writes one attribute per RDN, so decoding it as a `Name` (which sorts the
    // attributes of each RDN) and encoding it again gives back the same bytes.
    let subject = Name::from_der(&subject_name(&template)?).map_err(encoding("subject name"))?;
    let public_key =
        SubjectPublicKeyInfoOwned::from_der(signer.spki()).map_err(encoding("subject public key"))?;
    let extension_request = Attribute::try_from(ExtensionReq(ca_extensions(signer.spki())?))
        .map_err(encoding("extension request"))?;
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key,
        attributes: SetOfVec::try_from(vec![extension_request]).map_err(encoding("request attributes"))?,
    };
    // A CertificationRequest is the same `SEQUENCE { info, signatureAlgorithm, signature }`
    // envelope as a certificate.
    let der = asn1::sign(&info, signer)?;
    Ok(encode_pem(PEM_CERTIFICATE_REQUEST, der))
}

/// The extensions a CA certificate for `spki` carries, in the order `sign_self_signed` writes
/// them. digitalSignature is asked for because the CA key signs OCSP responses itself.
fn ca_extensions(spki: &[u8]) -> Result<Vec<x509_cert::ext::Extension>, PkiError> {
    let key_usage: FlagSet<KeyUsages> =
        KeyUsages::DigitalSignature | KeyUsages::KeyCertSign | KeyUsages::CRLSign;
    let basic_constraints = BasicConstraints {
        ca: true,
        path_len_constraint: None,
    };
    let key_id = der::asn1::OctetString::new(key_identifier(spki)?).map_err(encoding("key identifier"))?;
    Ok(vec![
        asn1::extension(&KeyUsage(key_usage), true)?,
        asn1::extension(&basic_constraints, true)?,
        asn1::extension(&SubjectKeyIdentifier(key_id), false)?,
    ])
}

/// Refuses an empty name or one beyond the RFC 5280 upper bound.
pub(crate) fn check_name_length(what: &str, value: &str) -> Result<(), PkiError> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(PkiError::InvalidCertificate(format!(
            "{what} {value:?} must be 1 to {MAX_NAME_CHARS} characters, not {chars}"
        )));
    }
    Ok(())
}
