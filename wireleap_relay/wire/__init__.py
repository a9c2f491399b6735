"""Pure protocol values of the data plane: encodings, status objects, init payloads and
sharetokens. Nothing in this package does IO or imports gevent, socket, ssl or requests."""
