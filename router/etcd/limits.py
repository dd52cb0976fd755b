"""etcd's request limits, at their defaults (etcd --help: --max-txn-ops 128,
--max-request-bytes 1.5 MiB). The byte budget of a transaction leaves room for the
request's JSON and base64 around its keys and values."""

MAX_TXN_OPS = 128
MAX_TXN_BYTES = 1024 * 1024
