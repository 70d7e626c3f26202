"""DICOM TLS contexts from settings (PEM files), for the node's port and for our SCU side.

TLS 1.2 at least (BCP 195); the node asks for a client certificate signed by `dicom_tls_ca`
unless told not to, and `dicom_tls_client_aes` (checked by `dicom_node.guard`) ties each client
certificate's subject CN to the calling AE titles it may use. pynetdicom takes the server
context as `ssl_context` and the client one as `tls_args=(context, server_hostname)`.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from priorwatch.settings import Settings


class TlsConfigError(ValueError):
    """The TLS settings are incomplete or a file cannot be used."""


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    try:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load the TLS certificate/key ({cert.name}): {exc}") from exc


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load the TLS CA file ({ca.name}): {exc}") from exc


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The node's TLS context, or None when no certificate is configured (plain TCP)."""
    if settings.dicom_tls_cert is None:
        if settings.dicom_tls_client_aes:
            raise TlsConfigError("dicom_tls_client_aes ties certificates to AE titles: it needs DICOM TLS "
                                 "(dicom_tls_cert, dicom_tls_key, dicom_tls_ca)")
        return None
    if settings.dicom_tls_key is None:
        raise TlsConfigError("dicom_tls_cert is set but dicom_tls_key is not")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, settings.dicom_tls_cert, settings.dicom_tls_key)
    if settings.dicom_tls_client_aes and not settings.dicom_tls_require_client_cert:
        raise TlsConfigError("dicom_tls_client_aes needs dicom_tls_require_client_cert: a client without a "
                             "certificate would have no AE titles to check")
    if settings.dicom_tls_require_client_cert:
        if settings.dicom_tls_ca is None:
            raise TlsConfigError("dicom_tls_require_client_cert needs dicom_tls_ca to verify clients")
        ctx.verify_mode = ssl.CERT_REQUIRED
    if settings.dicom_tls_ca is not None:
        _load_ca(ctx, settings.dicom_tls_ca)
        if not settings.dicom_tls_require_client_cert:
            ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(settings: Settings) -> tuple[ssl.SSLContext, str] | None:
    """`tls_args` for associations to the PACS, or None when `pacs_tls` is off."""
    if not settings.pacs_tls:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.dicom_tls_ca is not None:
        _load_ca(ctx, settings.dicom_tls_ca)
    else:
        ctx.load_default_certs()
    if settings.dicom_tls_cert is not None:
        _load_chain(ctx, settings.dicom_tls_cert, settings.dicom_tls_key)
    return ctx, settings.pacs_tls_hostname or settings.pacs_host
