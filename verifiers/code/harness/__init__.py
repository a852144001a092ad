"""The in-sandbox side of the code verifier (stdlib only): the harness process and the runner process."""
