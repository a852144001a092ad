"""rewardsvc: one gRPC scoring API for reward models, judges, PRMs and sandboxed verifiers."""

import os

# The server forks while gRPC's threads run: the code sandbox's zygotes are started with a uid drop,
# which makes subprocess use fork() rather than vfork(), so gRPC's fork handlers run in the child
# between fork and exec. Those children never use gRPC (they exec bwrap), and a handler that restarts
# pollers there once killed a zygote at birth ("Epoll1Poller ... epoll_wait error: Bad file descriptor").
# Off unless the caller chose otherwise; it has to be set before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
