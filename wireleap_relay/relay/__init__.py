"""The data plane: TLS 1.3 + HTTP/2 listener, one greenlet per stream, dialing, splicing."""
