"""Missing-flight claims: a member asks for a flight the feed has not credited yet."""
