"""The facts decisions rest on (driver minimums, variants, arch lists, pairings, GPU peaks), with sources."""
