"""Which certificates https to ARI and to the CRM trusts, and what a failed
certificate check means to the admin.

By default the system's CAs, as every other OpenSSL program on the machine,
not a CA list of a package's own (such as `certifi`'s, which `requests`
trusts): a CA the admin added to the system (update-ca-certificates, or
SSL_CERT_FILE) is trusted by every connection alike. An Asterisk with a
private CA or a self-signed certificate is trusted through `[ari] ca_bundle`,
a CRM's through `[crm] ca_bundle`.

ARI's REST calls, its event WebSocket and the CRM client each make their
context with the same function (`client_tls_context`), so all trust the
same certificates and all verify the chain and the host name.
"""

from __future__ import annotations

import os
import ssl

# OpenSSL's verify codes (X509_V_ERR_*) for "no trusted CA signed this chain".
_UNTRUSTED = frozenset({2, 18, 19, 20, 21})
_EXPIRED = frozenset({9, 10})  # not yet valid, expired
_NAME_MISMATCH = frozenset({62, 64})  # host name, IP address


def system_ca() -> bool | str:
    """The system's CA file (or folder); True only on a system that has neither
    (then the ssl module's default store is all there is)."""
    paths = ssl.get_default_verify_paths()  # honours SSL_CERT_FILE / SSL_CERT_DIR
    if paths.cafile:
        return paths.cafile
    if paths.capath and os.path.isdir(paths.capath):
        return paths.capath
    return True


def client_tls_context(ca_bundle: str = "") -> ssl.SSLContext:
    """The client context for https/wss to ARI and for https to the CRM: chain
    and host name verified against `ca_bundle` (a PEM file) instead of the
    system's CAs when it is set.

    Raises ValueError, in one sentence, for a CA file that cannot be used.
    """
    if ca_bundle:
        try:
            return ssl.create_default_context(cafile=ca_bundle)
        except FileNotFoundError:
            raise ValueError(f"CA file {ca_bundle} does not exist") from None
        except ssl.SSLError:
            raise ValueError(f"CA file {ca_bundle} holds no PEM certificate") from None
        except OSError as error:
            raise ValueError(f"CA file {ca_bundle} cannot be read: {error.strerror}") from None
    where = system_ca()
    if where is True:
        return ssl.create_default_context()  # the ssl module's default CA store
    if os.path.isdir(str(where)):
        return ssl.create_default_context(capath=str(where))
    return ssl.create_default_context(cafile=str(where))


def certificate_problem(error: ssl.SSLCertVerificationError, ca_bundle: str) -> str:
    """What is wrong with ARI's certificate and what to fix, as the end of a
    sentence that starts "ARI at URL ..." (or "Asterisk ...")."""
    why = (error.verify_message or error.reason or "certificate verify failed").rstrip(".")
    code = error.verify_code
    if code in _UNTRUSTED:
        trusted = f"the CA in [ari] ca_bundle ({ca_bundle})" if ca_bundle else "a trusted CA"
        return (
            f"presented a certificate not signed by {trusted} ({why}): set [ari] ca_bundle "
            "to the PEM file of the CA that signed Asterisk's certificate (for a self-signed "
            "certificate, the certificate itself)"
        )
    if code in _NAME_MISMATCH:
        return (
            f"presented a certificate for another host name ({why}): put a host name the "
            "certificate names in [ari] url, or give Asterisk a certificate for this one "
            "(http.conf tlscertfile)"
        )
    if code in _EXPIRED:
        return (
            f"presented a certificate outside its validity dates ({why}): renew Asterisk's "
            "certificate (http.conf tlscertfile), or check this machine's clock"
        )
    return (
        f"presented a certificate that failed verification ({why}): check Asterisk's "
        "certificate (http.conf tlscertfile) and [ari] ca_bundle"
    )


def handshake_problem(error: ssl.SSLError) -> str:
    """A TLS failure other than the certificate, as the end of such a sentence."""
    why = error.reason or type(error).__name__
    if why == "WRONG_VERSION_NUMBER":
        return (
            "did not answer in TLS (wrong version number): put Asterisk's TLS port "
            "(http.conf tlsbindaddr) in [ari] url, or start the URL with http://"
        )
    return f"failed the TLS handshake ({why})"
