"""Math verifier: answer extraction + math-verify equivalence in killable worker processes."""
