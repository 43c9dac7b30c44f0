"""Rate limits: recognising a provider's "slow down" in an exception, a JSON body
or a line of text, and when it resets."""
