# Chain A: filled in below.
