# Chain F: students trained from the compressed logits (SPEC 2.F). Being built.

STUDENT = config["student"]
