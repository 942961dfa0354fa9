"""The repair: the plan (a pure policy and its index I/O) and the reversible fix that carries it out."""
