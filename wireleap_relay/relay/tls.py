"""The listener's TLS: 1.3 only, ALPN h2 only, no SNI needed, no client certificates."""

import ssl


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    ctx.load_cert_chain(cert_file, key_file)
    # Long-lived tunnels: no session tickets to rotate, and RFC 7540 forbids renegotiation.
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_RENEGOTIATION
    return ctx
