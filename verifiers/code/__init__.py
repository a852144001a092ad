"""The sandboxed `code` verifier: untrusted programs against tests, isolated by the OS."""
