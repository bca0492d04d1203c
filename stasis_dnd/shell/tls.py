"""Which certificates https to ARI and to the CRM trusts by default: the
system's, as websocket-client (the ARI event socket) and every other OpenSSL
program on the machine do.

`requests` by itself trusts only the CA list of the `certifi` package, so a CA
the admin added to the system (update-ca-certificates, or SSL_CERT_FILE) would
be trusted by the event socket and refused by the REST calls and the CRM.
"""

from __future__ import annotations

import os
import ssl


def system_ca() -> bool | str:
    """The system's CA file (or folder) for requests' `verify`; True (certifi's
    list) only on a system that has neither."""
    paths = ssl.get_default_verify_paths()  # honours SSL_CERT_FILE / SSL_CERT_DIR
    if paths.cafile:
        return paths.cafile
    if paths.capath and os.path.isdir(paths.capath):
        return paths.capath
    return True
