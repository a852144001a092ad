"""The in-sandbox side of the code verifier (stdlib only): the judge process and the runner process."""
