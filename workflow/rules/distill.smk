# Chain A
