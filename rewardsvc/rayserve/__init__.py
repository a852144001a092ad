"""Scale-out on Ray Serve: the scorers of one YAML config as Ray Serve deployments behind a gRPC ingress.

`options` (the config's `ray:` section) imports nothing from Ray; `app` needs the `rewardsvc[ray]` extra.
"""
