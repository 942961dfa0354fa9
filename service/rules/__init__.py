"""The verdict: pure rules that judge a build against the hardware, and the check that runs them."""
