"""The background check loop: one check cycle, the state it leaves, what changed, who hears of it."""
