"""The local status API of relay 0.6.1 (control.md §6.2) and the Prometheus metrics beside
it, served by the master on `rest_api.address`. `endpoint` and `status` are pure; `http`,
`listen` and `service` do the IO."""
