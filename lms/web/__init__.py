"""Server-rendered web pages: the member portal (at /) and the agent console (at /console)."""
